/**
 * The service's live events: the engine's typed events, renamed for the wire,
 * stamped with the server time, progress throttled per download, serialized
 * once and handed to every subscriber (WebSocket and SSE clients).
 */
import type { Downloader } from '../engine/downloader.js'
import type { CidgetEvents, ProgressEvent, StatusEvent } from '../core/events.js'
import { FINAL_STATUSES } from '../core/types.js'

/** The event types of `/api/events`, each with its engine event. */
export const SERVICE_EVENT_TYPES = {
  'download:added': 'cidget:download:added',
  status: 'cidget:download:status',
  progress: 'cidget:download:progress',
  gateway: 'cidget:gateway',
  retry: 'cidget:download:retry',
  repaired: 'cidget:download:repaired',
  resolved: 'cidget:download:resolved'
} as const

export type ServiceEventType = keyof typeof SERVICE_EVENT_TYPES

/** One message of `/api/events`: `data` is the engine event's payload, `at` the server's clock (ms since the epoch). */
export interface ServiceEvent {
  type: ServiceEventType
  data: unknown
  at: number
}

/** Receives each event, already serialized (`json`), with its type (SSE's `event:` line). */
export type Subscriber = (json: string, type: ServiceEventType) => void

/** Least time between two progress events of one download on the wire: at most 4 a second. */
export const DEFAULT_EVENT_PROGRESS_INTERVAL_MS = 250

interface Throttle {
  lastSent: number
  pending?: ProgressEvent
  timer?: NodeJS.Timeout
}

export class EventHub {
  readonly #subscribers = new Set<Subscriber>()
  readonly #throttles = new Map<number, Throttle>()
  readonly #intervalMs: number
  readonly #now: () => number
  readonly #detach: Array<() => void> = []

  constructor (dl: Downloader, opts: { progressIntervalMs?: number, now?: () => number } = {}) {
    this.#intervalMs = opts.progressIntervalMs ?? DEFAULT_EVENT_PROGRESS_INTERVAL_MS
    this.#now = opts.now ?? Date.now
    const on = <K extends keyof CidgetEvents>(name: K, listener: (...args: CidgetEvents[K]) => void): void => {
      dl.on(name, listener)
      this.#detach.push(() => { dl.off(name, listener) })
    }
    on('cidget:download:added', (rec) => { this.#send('download:added', rec) })
    on('cidget:download:status', (e) => { this.#status(e) })
    on('cidget:download:progress', (e) => { this.#progress(e) })
    on('cidget:gateway', (e) => { this.#send('gateway', e) })
    on('cidget:download:retry', (e) => { this.#send('retry', e) })
    on('cidget:download:repaired', (e) => { this.#send('repaired', e) })
    on('cidget:download:resolved', (e) => { this.#send('resolved', e) })
  }

  /** Adds a subscriber; returns the function that removes it. */
  subscribe (fn: Subscriber): () => void {
    this.#subscribers.add(fn)
    return () => { this.#subscribers.delete(fn) }
  }

  get subscriberCount (): number {
    return this.#subscribers.size
  }

  /** Stops listening to the engine and drops pending progress. */
  close (): void {
    for (const d of this.#detach.splice(0)) d()
    for (const t of this.#throttles.values()) if (t.timer !== undefined) clearTimeout(t.timer)
    this.#throttles.clear()
    this.#subscribers.clear()
  }

  /** A status change: the download's last progress goes out first, so a client never sees progress after `success`. */
  #status (e: StatusEvent): void {
    this.#flush(e.id)
    if (FINAL_STATUSES.includes(e.status) || e.status === 'paused') this.#throttles.delete(e.id)
    this.#send('status', e)
  }

  /** At most one progress event per interval and download; the latest value waits for the next slot, never lost. */
  #progress (e: ProgressEvent): void {
    const now = performance.now()
    let t = this.#throttles.get(e.id)
    if (t === undefined) {
      t = { lastSent: -Infinity }
      this.#throttles.set(e.id, t)
    }
    t.pending = e
    if (now - t.lastSent >= this.#intervalMs) {
      this.#flush(e.id)
    } else if (t.timer === undefined) {
      t.timer = setTimeout(() => { this.#flush(e.id) }, this.#intervalMs - (now - t.lastSent))
      t.timer.unref()
    }
  }

  #flush (id: number): void {
    const t = this.#throttles.get(id)
    if (t === undefined) return
    if (t.timer !== undefined) clearTimeout(t.timer)
    t.timer = undefined
    const e = t.pending
    if (e === undefined) return
    t.pending = undefined
    t.lastSent = performance.now()
    this.#send('progress', e)
  }

  #send (type: ServiceEventType, data: unknown): void {
    if (this.#subscribers.size === 0) return
    const event: ServiceEvent = { type, data, at: this.#now() }
    const json = JSON.stringify(event)
    for (const fn of this.#subscribers) {
      try {
        fn(json, type)
      } catch {
        // a subscriber that throws (a socket closing under it) must not starve the others
      }
    }
  }
}
