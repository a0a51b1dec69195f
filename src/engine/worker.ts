/**
 * A fleet worker: drains the shared queue of a state store (PostgreSQL for
 * many machines, SQLite for many processes on one) through one Downloader.
 *
 * It claims the next download (`Downloader.claimNext`, which takes its lease
 * atomically: `FOR UPDATE SKIP LOCKED` on PostgreSQL) whenever it has room,
 * runs it, and asks again; with nothing to claim it waits `pollMs` or until
 * one of its downloads ends. While the state cannot be reached it stops
 * claiming and asks again with backoff; the downloads it runs meanwhile stop
 * on their own before their leases can lapse (see the Downloader's
 * heartbeat), so a download is never worked on by two workers at once, and
 * one whose worker died is claimed again once its lease has run out.
 *
 * @module
 */

import { toCidgetError } from '../core/errors.js'
import { retryDelay, type BackoffOptions } from '../core/retry.js'
import { abortableSleep } from '../core/async.js'
import type { DownloadRecord } from '../core/types.js'
import type { Downloader } from './downloader.js'

export type WorkerEvent =
  | { type: 'claimed', id: number, target: string, output: string, status: DownloadRecord['status'] }
  | { type: 'finished', record: DownloadRecord }
  | { type: 'idle' }
  | { type: 'state-unavailable', message: string, retryInMs: number }
  | { type: 'state-restored' }

export interface WorkerOptions {
  /** Stops claiming; the caller then closes the Downloader (what runs is paused as interrupted, claimable again). */
  signal: AbortSignal
  /** Only downloads whose output is inside this directory. @default every download */
  dir?: string
  /** Wait before asking an empty queue again. @default 1000 */
  pollMs?: number
  /** Backoff while the state cannot be reached. @default 500 ms, ×2, at most 15 s, ±20 % */
  backoff?: BackoffOptions
  /** Every wait goes through this; it must reject with `signal.reason` when aborted. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  onEvent?: (e: WorkerEvent) => void
}

export interface WorkerSummary {
  claimed: number
  /** Final statuses of the downloads this worker ran, by status. */
  finished: Partial<Record<DownloadRecord['status'], number>>
}

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, multiplier: 2, maxMs: 15_000, jitter: 0.2 }

/** Runs until `opts.signal` aborts, then resolves with what it did (downloads still running are left to the caller). */
export async function runWorker (dl: Downloader, opts: WorkerOptions): Promise<WorkerSummary> {
  const { signal } = opts
  const pollMs = opts.pollMs ?? 1000
  const backoff = { ...DEFAULT_BACKOFF, ...opts.backoff }
  const sleep = opts.sleep ?? abortableSleep
  const emit = (e: WorkerEvent): void => {
    try {
      opts.onEvent?.(e)
    } catch {
      // a listener's failure must not stop the worker
    }
  }
  const summary: WorkerSummary = { claimed: 0, finished: {} }
  const running = new Set<Promise<void>>()
  /** Resolves when a download ends (room for another) or the signal aborts. */
  let ended: (() => void) | undefined
  const onAbort = (): void => ended?.()
  signal.addEventListener('abort', onAbort, { once: true })
  let failures = 0
  let idle = false
  try {
    while (!signal.aborted) {
      if (running.size >= dl.concurrency) {
        await new Promise<void>((resolve) => { ended = resolve })
        continue
      }
      let job
      try {
        job = await dl.claimNext(opts.dir === undefined ? {} : { under: opts.dir })
      } catch (err) {
        const e = toCidgetError(err)
        if (!e.retryable || signal.aborted) throw e
        failures++
        const wait = retryDelay(failures, backoff)
        emit({ type: 'state-unavailable', message: e.message, retryInMs: wait })
        await sleep(wait, signal).catch(() => {})
        continue
      }
      if (failures > 0) {
        failures = 0
        emit({ type: 'state-restored' })
      }
      if (job === undefined) {
        if (!idle) emit({ type: 'idle' })
        idle = true
        // ask again after pollMs, or as soon as one of ours ends (it may have freed a slot for a waiting one)
        const wake = new AbortController()
        const stop = (): void => wake.abort()
        signal.addEventListener('abort', stop, { once: true })
        ended = stop
        await sleep(pollMs, wake.signal).catch(() => {})
        signal.removeEventListener('abort', stop)
        continue
      }
      idle = false
      summary.claimed++
      emit({ type: 'claimed', id: job.id, target: job.record.target, output: job.record.output, status: job.record.status })
      const tracked: Promise<void> = job.done.then((record) => {
        summary.finished[record.status] = (summary.finished[record.status] ?? 0) + 1
        emit({ type: 'finished', record })
      }).catch(() => {
        // done never rejects; should it, the slot is still freed below
      }).finally(() => {
        running.delete(tracked)
        ended?.()
      })
      running.add(tracked)
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
  return summary
}
