import { basename } from 'node:path'
import cliProgress from 'cli-progress'
import type { Downloader } from '../engine/downloader.js'
import type { ProgressEvent, RepairEvent, RetryEvent, StatusEvent } from '../core/events.js'
import type { DownloadRecord } from '../core/types.js'
import { humanBytes, humanDuration, printable } from './format.js'

export interface ProgressViewOptions {
  /** Draw bars (a terminal); otherwise recovery events are printed as lines. */
  tty: boolean
  /** Print nothing. */
  quiet: boolean
  stream?: NodeJS.WriteStream
}

/** System codes that mean the gateway was never reached: its name did not resolve, or nothing answered at its address. */
const UNREACHED: Record<string, string> = {
  ENOTFOUND: 'could not resolve',
  EAI_AGAIN: 'could not resolve',
  ECONNREFUSED: 'connection refused by',
  ENETUNREACH: 'no route to',
  EHOSTUNREACH: 'no route to',
  UND_ERR_CONNECT_TIMEOUT: 'no answer to a connection from'
}

function retryLine (e: RetryEvent, label: string): string {
  const what = {
    resume: `resuming at ${humanBytes(e.offset)}`,
    restart: 'restarting from 0',
    switch: 'switching gateway',
    wait: 'waiting'
  }[e.action]
  const wait = e.delayMs > 0 ? ` in ${humanDuration(e.delayMs)}` : ''
  return `${label}: ${printable(e.message)} [${e.code}] → ${what}${wait}`
}

/** What one download's lines and bar are prefixed with: its id and its output's name. */
function labelOf (rec: Pick<DownloadRecord, 'id' | 'output'>): string {
  const name = printable(basename(rec.output))
  return `${rec.id} ${name.length > 24 ? name.slice(0, 23) + '…' : name}`
}

/** What the view knows of one download. */
interface Seen {
  label: string
  bar?: cliProgress.SingleBar
  /** Retries by gateway, code and action: the first is printed, the repeats counted. */
  repeats: Map<string, { count: number, gateway: string | null }>
  /** Gateways never reached (name not resolved, connection refused): host → why. */
  unreached: Map<string, string>
  /** A gateway answered (bytes, or an error from it). */
  reached: boolean
}

/** Columns a line takes (code points: the bar's blocks and the arrows take one each). */
const columns = (text: string): number => [...text].length

/** The widest and narrowest bar drawn. */
const BAR = { max: 24, min: 8 }

/**
 * The bar's line, fitted to the terminal's width (`cols`): a bar, a percentage
 * and an ETA only when the total is known (a tree's is not, and shows what
 * its root declares as an estimate, `~`). Where the width is short, the
 * gateway goes first, then the bar narrows, then goes.
 */
export function barLine (cols: number, params: { total: number, progress: number }, payload: Record<string, string | undefined>): string {
  const { label = '', done = '', size = '', filesText = '', speed = '', gateway = '-', etaText = '?' } = payload
  const gw = ` | ${gateway}`
  if (params.total <= 0) {
    const line = ` ${label}  ${done}${size === '?' ? '' : ` of ${size}`}${filesText} | ${speed}`
    return columns(line + gw) <= cols ? line + gw : line
  }
  const head = ` ${label} `
  const tail = ` ${Math.floor(params.progress * 100)}% | ${done} of ${size}${filesText} | ${speed} | ETA ${etaText}`
  const room = cols - columns(head) - columns(tail)
  const width = room >= BAR.max + columns(gw) ? BAR.max : Math.min(BAR.max, room)
  if (width < BAR.min) return ` ${label}${tail}`
  const full = Math.max(0, Math.min(width, Math.round(params.progress * width)))
  return head + '█'.repeat(full) + '░'.repeat(width - full) + tail + (room >= width + columns(gw) ? gw : '')
}

/** Shows the Downloader's events: a bar per download on a terminal, lines otherwise; each prefixed with the download's id and name. */
export class ProgressView {
  readonly #dl: Downloader
  readonly #opts: ProgressViewOptions
  readonly #multi: cliProgress.MultiBar | undefined
  readonly #seen = new Map<number, Seen>()
  readonly #onProgress = (e: ProgressEvent): void => { this.#progress(e) }
  readonly #onRetry = (e: RetryEvent): void => { this.#retry(e) }
  readonly #onRepair = (e: RepairEvent): void => {
    this.#log(`${this.#of(e.id).label}: ${e.blocks} block(s), ${humanBytes(e.bytes)}, did not match the CID and were fetched again`)
  }

  readonly #onStatus = (e: StatusEvent): void => {
    if (e.status === 'in_progress' || e.status === 'resuming' || e.status === 'pending') return
    const seen = this.#of(e.id)
    this.#foldRepeats(seen)
    if (e.error !== null) {
      const unreached = this.#unreachedLine(seen)
      if (unreached !== undefined) this.#log(unreached)
    }
    if (e.status === 'paused' && e.error !== null) this.#log(`${seen.label} paused: ${printable(e.error)}`)
  }

  constructor (dl: Downloader, opts: ProgressViewOptions) {
    this.#dl = dl
    this.#opts = opts
    if (opts.tty && !opts.quiet) {
      const stream = opts.stream ?? process.stderr
      this.#multi = new cliProgress.MultiBar({
        stream,
        // one column left free: a line that fills the last one leaves some terminals' cursor past it
        format: (_options, params, payload: Record<string, string | undefined>) => barLine((stream.columns > 0 ? stream.columns : 80) - 1, params, payload),
        // the terminal's own wrapping stays on: a line printed above the bars wraps whole (with wrapping off, as
        // cli-progress sets by default, its end was cut at the terminal's width); the bars are cut to it instead
        linewrap: true,
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

  /** Names a download before its first event: its bar and lines then carry its id and name. */
  name (rec: DownloadRecord): void {
    this.#of(rec.id).label = labelOf(rec)
  }

  /** Names a download and says that it started, with its id, for a `cidget pause ID` from elsewhere. */
  started (rec: DownloadRecord, verb = 'downloading'): void {
    this.name(rec)
    const what = rec.cid === '' ? printable(rec.target) : `/ipfs/${rec.cid}${printable(rec.path)}`
    this.#log(`download ${rec.id}: ${verb} ${what} to ${printable(rec.output)} (cidget pause ${rec.id} from another terminal)`)
  }

  #of (id: number): Seen {
    let seen = this.#seen.get(id)
    if (seen === undefined) {
      const unnamed = `download ${id}`
      seen = { label: unnamed, repeats: new Map(), unreached: new Map(), reached: false }
      this.#seen.set(id, seen)
      // a download the command did not name itself: its name as soon as the state tells it
      void this.#dl.get(id).then((rec) => { if (rec !== undefined && seen !== undefined && seen.label === unnamed) seen.label = labelOf(rec) }, () => {})
    }
    return seen
  }

  #log (line: string): void {
    if (this.#opts.quiet) return
    // while bars are drawn, a line goes above them at their next redraw; before the first bar and after
    // the last, straight to the terminal (cli-progress writes its buffer only when it redraws)
    if (this.#multi?.isActive === true) this.#multi.log(line + '\n')
    else (this.#opts.stream ?? process.stderr).write(line + '\n')
  }

  #retry (e: RetryEvent): void {
    const seen = this.#of(e.id)
    const why = e.systemCode === null ? undefined : UNREACHED[e.systemCode]
    if (e.gateway !== null) {
      if (why !== undefined) seen.unreached.set(hostOf(e.gateway), why)
      else seen.reached = true
    }
    const key = `${e.gateway ?? ''}|${e.code}|${e.systemCode ?? ''}|${e.action}`
    const repeat = seen.repeats.get(key)
    if (repeat !== undefined) {
      repeat.count++
      return
    }
    seen.repeats.set(key, { count: 1, gateway: e.gateway })
    this.#log(retryLine(e, seen.label))
  }

  /** One line for the repeats of each retry line shown, then forgets them. */
  #foldRepeats (seen: Seen): void {
    for (const { count, gateway } of seen.repeats.values()) {
      if (count > 1) this.#log(`${seen.label}: the same from ${printable(gateway ?? 'the gateway')} ${count - 1} more time${count === 2 ? '' : 's'}`)
    }
    seen.repeats.clear()
  }

  /** When no gateway was ever reached, a line that says so (as curl's "Could not resolve host"), instead of blaming the content. */
  #unreachedLine (seen: Seen): string | undefined {
    if (seen.reached || seen.unreached.size === 0) return undefined
    const byWhy = new Map<string, string[]>()
    for (const [host, why] of seen.unreached) byWhy.set(why, [...(byWhy.get(why) ?? []), host])
    const parts = [...byWhy].map(([why, hosts]) => `${why} ${hosts.slice(0, 4).map(printable).join(', ')}${hosts.length > 4 ? ` and ${hosts.length - 4} more` : ''}`)
    return `${seen.label}: no gateway could be reached (${parts.join('; ')}): is the network up? (a proxy: --proxy or HTTPS_PROXY)`
  }

  #progress (e: ProgressEvent): void {
    const seen = this.#of(e.id)
    if (e.bytes > 0) seen.reached = true
    if (this.#multi === undefined) return
    const total = e.total ?? 0
    const payload = {
      label: seen.label,
      done: humanBytes(e.bytes),
      size: e.total === null && e.estimate !== null ? `~${humanBytes(e.estimate)}` : humanBytes(e.total),
      speed: `${humanBytes(Math.round(e.speed))}/s`,
      etaText: e.total !== null && e.speed > 0 ? humanDuration((e.total - e.bytes) * 1000 / e.speed) : '?',
      gateway: printable(e.gateway ?? '-'),
      filesText: e.files === null ? '' : `, ${e.files} files`
    }
    if (seen.bar === undefined) seen.bar = this.#multi.create(total, e.bytes, payload)
    if (total !== 0) seen.bar.setTotal(total)
    seen.bar.update(e.bytes, payload)
  }

  stop (): void {
    for (const seen of this.#seen.values()) this.#foldRepeats(seen)
    // the lines still waiting for a redraw, and the bars' last state
    if (this.#multi?.isActive === true) this.#multi.update()
    this.#dl.off('cidget:download:progress', this.#onProgress)
    this.#dl.off('cidget:download:retry', this.#onRetry)
    this.#dl.off('cidget:download:status', this.#onStatus)
    this.#dl.off('cidget:download:repaired', this.#onRepair)
    this.#multi?.stop()
  }
}

/** The host of a gateway URL (the whole text when it is not one). */
function hostOf (gateway: string): string {
  try {
    return new URL(gateway).host
  } catch {
    return gateway
  }
}
