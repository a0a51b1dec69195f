/**
 * The events of a download's life: progress (a smoothed speed, events
 * throttled on the wall clock with a trailing one, so the last value is never
 * lost) and status changes.
 *
 * @module
 */

import type { CidgetEvents, ProgressEvent, TypedEmitter } from '../core/events.js'
import type { DownloadStatus } from '../core/types.js'
import type { Outcome } from './outcome.js'

/** Announces that download `id` went from `previous` to the outcome's status. */
export function emitStatus (events: TypedEmitter<CidgetEvents>, id: number, previous: DownloadStatus | null, outcome: Outcome): void {
  events.emit('cidget:download:status', { id, status: outcome.status, previous, error: outcome.error, errorCode: outcome.errorCode })
}

/** How long a speed sample spans at least. */
const SPEED_SAMPLE_MS = 250

export interface ProgressThrottleInit {
  id: number
  /** Least time between two events. */
  intervalMs: number
  emit: (event: ProgressEvent) => void
  /** Bytes done when the run starts (a resume's): the first speed sample counts only bytes beyond them. @default 0 */
  startBytes?: number
  /** Monotonic milliseconds. @default performance.now */
  clock?: () => number
}

/** Progress is for people: throttled on the wall clock, not the injected one. */
export class ProgressThrottle {
  readonly #id: number
  readonly #intervalMs: number
  readonly #emit: (event: ProgressEvent) => void
  readonly #clock: () => number
  #lastEmit = 0
  #lastBytes = -1
  #lastFiles: number | null = null
  #speed = 0
  #speedAt: number
  #speedBytes = 0
  #pending: ProgressEvent | undefined
  #timer: NodeJS.Timeout | undefined

  constructor (init: ProgressThrottleInit) {
    this.#id = init.id
    this.#intervalMs = init.intervalMs
    this.#emit = init.emit
    this.#clock = init.clock ?? (() => performance.now())
    this.#speedAt = this.#clock()
    this.#speedBytes = init.startBytes ?? 0
  }

  /** Bytes written so far, the total when known, the gateway in use, and for a directory the files complete and its declared size. */
  update (bytes: number, total: number | null, gateway: string, files?: number, estimate?: number): void {
    const now = this.#clock()
    if (bytes < this.#speedBytes) { this.#speedBytes = bytes; this.#speedAt = now }
    const dt = now - this.#speedAt
    if (dt >= SPEED_SAMPLE_MS) {
      const inst = (bytes - this.#speedBytes) * 1000 / dt
      this.#speed = this.#speed === 0 ? inst : this.#speed * 0.7 + inst * 0.3
      this.#speedAt = now
      this.#speedBytes = bytes
    }
    if (bytes === this.#lastBytes && (files ?? null) === this.#lastFiles) return
    this.#lastBytes = bytes
    this.#lastFiles = files ?? null
    this.#pending = { id: this.#id, bytes, total, estimate: total === null ? estimate ?? null : null, speed: this.#speed, gateway, files: files ?? null }
    const done = total !== null && bytes >= total
    if (done || now - this.#lastEmit >= this.#intervalMs) {
      this.flush()
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => { this.flush() }, this.#intervalMs - (now - this.#lastEmit))
      this.#timer.unref()
    }
  }

  /** Emits the event held back, if any, and stops the timer. */
  flush (): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#pending === undefined) return
    const e = this.#pending
    this.#pending = undefined
    this.#lastEmit = this.#clock()
    this.#emit(e)
  }
}
