import cliProgress from 'cli-progress'
import type { Downloader } from '../engine/downloader.js'
import type { ProgressEvent, RepairEvent, RetryEvent, StatusEvent } from '../core/events.js'
import { humanBytes, humanDuration, printable } from './format.js'

export interface ProgressViewOptions {
  /** Draw bars (a terminal); otherwise recovery events are printed as lines. */
  tty: boolean
  /** Print nothing. */
  quiet: boolean
  stream?: NodeJS.WriteStream
}

function retryLine (e: RetryEvent): string {
  const what = {
    resume: `resuming at ${humanBytes(e.offset)}`,
    restart: 'restarting from 0',
    switch: 'switching gateway',
    wait: 'waiting'
  }[e.action]
  const wait = e.delayMs > 0 ? ` in ${humanDuration(e.delayMs)}` : ''
  return `download ${e.id}: ${printable(e.message)} [${e.code}] → ${what}${wait}`
}

/** Shows the Downloader's events: a bar per download on a terminal, lines otherwise. */
export class ProgressView {
  readonly #dl: Downloader
  readonly #opts: ProgressViewOptions
  readonly #multi: cliProgress.MultiBar | undefined
  readonly #bars = new Map<number, cliProgress.SingleBar>()
  readonly #onProgress = (e: ProgressEvent): void => { this.#progress(e) }
  readonly #onRetry = (e: RetryEvent): void => { this.#log(retryLine(e)) }
  readonly #onRepair = (e: RepairEvent): void => {
    this.#log(`download ${e.id}: ${e.blocks} block(s), ${humanBytes(e.bytes)}, did not match the CID and were fetched again`)
  }

  readonly #onStatus = (e: StatusEvent): void => {
    if (e.status === 'paused' && e.error !== null) this.#log(`download ${e.id} paused: ${printable(e.error)}`)
  }

  constructor (dl: Downloader, opts: ProgressViewOptions) {
    this.#dl = dl
    this.#opts = opts
    if (opts.tty && !opts.quiet) {
      this.#multi = new cliProgress.MultiBar({
        stream: opts.stream ?? process.stderr,
        format: ' {bar} {percentage}% | {done} of {size}{filesText} | {speed} | ETA {etaText} | {gateway}',
        barCompleteChar: '█',
        barIncompleteChar: '░',
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        fps: 8
      })
    }
    if (!opts.quiet) {
      dl.on('cidget:download:progress', this.#onProgress)
      dl.on('cidget:download:retry', this.#onRetry)
      dl.on('cidget:download:status', this.#onStatus)
      dl.on('cidget:download:repaired', this.#onRepair)
    }
  }

  #log (line: string): void {
    if (this.#opts.quiet) return
    if (this.#multi !== undefined) this.#multi.log(line + '\n')
    else (this.#opts.stream ?? process.stderr).write(line + '\n')
  }

  #progress (e: ProgressEvent): void {
    if (this.#multi === undefined) return
    const total = e.total ?? 0
    const payload = {
      done: humanBytes(e.bytes),
      size: humanBytes(e.total),
      speed: `${humanBytes(Math.round(e.speed))}/s`,
      etaText: e.total !== null && e.speed > 0 ? humanDuration((e.total - e.bytes) * 1000 / e.speed) : '?',
      gateway: e.gateway ?? '-',
      filesText: e.files === null ? '' : `, ${e.files} files`
    }
    let bar = this.#bars.get(e.id)
    if (bar === undefined) {
      bar = this.#multi.create(total, e.bytes, payload)
      this.#bars.set(e.id, bar)
    }
    if (total !== 0) bar.setTotal(total)
    bar.update(e.bytes, payload)
  }

  stop (): void {
    this.#dl.off('cidget:download:progress', this.#onProgress)
    this.#dl.off('cidget:download:retry', this.#onRetry)
    this.#dl.off('cidget:download:status', this.#onStatus)
    this.#dl.off('cidget:download:repaired', this.#onRepair)
    this.#multi?.stop()
  }
}
