/**
 * `cidget get <file> -o -`: the verified bytes to standard output, in order,
 * for a pipe (`| tar x`, `| sha256sum`); progress and errors on standard
 * error. Verified mode only; nothing on disk, nothing in the state.
 *
 * @module
 */
import cliProgress from 'cli-progress'
import { CidgetError } from '../../core/errors.js'
import { openDownloader, EXIT, type NameFlags, type LimitFlags } from '../context.js'
import { humanBytes, humanDuration, printable } from '../format.js'
import type { ExitCode } from '../exit.js'

export interface StdoutFlags extends LimitFlags, NameFlags {
  car?: string
  gateway?: string[]
  mode?: string
  sha256?: string
  timeout?: number
  json?: boolean
  quiet?: boolean
}

/** The flags `-o -` cannot go with: a usage error each. */
export function checkStdoutFlags (flags: StdoutFlags): void {
  const refuse = (why: string): never => { throw new CidgetError('CIDGET_ERR_BAD_OPTION', `-o - (standard output) ${why}`) }
  if (flags.car !== undefined) refuse('cannot go with --car (a CAR file is written with --car FILE)')
  if (flags.json === true) refuse('cannot go with --json: standard output carries the file')
  if (flags.mode !== undefined && flags.mode !== 'verified') {
    refuse(`is verified mode only (path mode could not check bytes before they are written); got --mode ${flags.mode}`)
  }
}

/**
 * Writes to standard output with its backpressure; a reader that went away
 * (EPIPE) aborts `stop` instead of raising an error event nobody handles.
 */
function stdoutWriter (stop: AbortController): { write: (bytes: Uint8Array) => Promise<void>, closed: () => boolean } {
  let closed = false
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    // the reader went away (EPIPE): nothing to say to anyone; another error (a full disk behind `>`) is said
    if (err.code === 'EPIPE') closed = true
    stop.abort(err.code === 'EPIPE'
      ? new CidgetError('CIDGET_ERR_CANCELLED', 'standard output was closed by its reader')
      : new CidgetError(err.code === 'ENOSPC' ? 'CIDGET_ERR_DISK_FULL' : 'CIDGET_ERR_FS', `Cannot write to standard output: ${err.message}`, { cause: err }))
  })
  return {
    closed: () => closed,
    write: async (bytes) => {
      if (stop.signal.aborted) throw stop.signal.reason
      if (process.stdout.write(bytes)) return
      await new Promise<void>((resolve) => {
        const done = (): void => {
          process.stdout.off('drain', done)
          stop.signal.removeEventListener('abort', done)
          resolve()
        }
        process.stdout.once('drain', done)
        stop.signal.addEventListener('abort', done, { once: true })
      })
      if (stop.signal.aborted) throw stop.signal.reason
    }
  }
}

/** Runs `cidget get TARGET -o -` (see the module). */
export async function getToStdout (target: string, flags: StdoutFlags, downloaderFlags: Parameters<typeof openDownloader>[0]): Promise<ExitCode> {
  checkStdoutFlags(flags)
  const quiet = flags.quiet === true
  // nothing in the state: an in-memory store that the process forgets
  const dl = await openDownloader({ ...downloaderFlags, state: ':memory:', recover: false })
  const stop = new AbortController()
  // a stream is not resumable: the first signal ends it, a second the process
  const onSignal = (): void => {
    if (stop.signal.aborted) process.exit(130)
    stop.abort(new CidgetError('CIDGET_ERR_CANCELLED', 'interrupted; a stream to standard output is not resumable'))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const out = stdoutWriter(stop)
  const bar = !quiet && process.stderr.isTTY
    ? new cliProgress.SingleBar({ stream: process.stderr, format: ' {bar} {percentage}% | {done} of {size} to standard output | {speed}', hideCursor: true, fps: 8, barCompleteChar: '█', barIncompleteChar: '░' })
    : undefined
  const started = Date.now()
  try {
    const outcome = await dl.stream(target, {
      write: out.write,
      signal: stop.signal,
      ...(flags.gateway === undefined ? {} : { gateways: flags.gateway }),
      ...(flags.sha256 === undefined ? {} : { sha256: flags.sha256 }),
      onProgress: (written, total) => {
        if (bar === undefined) return
        const s = (Date.now() - started) / 1000
        if (written === 0 || bar.getTotal() !== total) bar.start(total, 0, { done: humanBytes(0), size: humanBytes(total), speed: '' })
        bar.update(written, { done: humanBytes(written), size: humanBytes(total), speed: s > 0 ? `${humanBytes(written / s)}/s` : '' })
      },
      onRetry: (e) => {
        if (quiet) return
        process.stderr.write(`${printable(e.message)} [${e.code}] → another gateway${e.delayMs > 0 ? ` in ${humanDuration(e.delayMs)}` : ''}\n`)
      }
    })
    bar?.stop()
    if (!quiet) {
      process.stderr.write(`wrote ${humanBytes(outcome.size)} of ${outcome.name === null ? '' : `${printable(outcome.name)} → `}/ipfs/${outcome.root}${printable(outcome.path)} ` +
        `to standard output (sha256 ${outcome.sha256}, every block verified against the CID)\n`)
    }
    return EXIT.SUCCESS
  } catch (err) {
    bar?.stop()
    // the reader went away: nothing more to say to it, and no stack trace for the one who ended the pipe
    if (out.closed()) return EXIT.FAILED
    throw err
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await dl.close()
  }
}
