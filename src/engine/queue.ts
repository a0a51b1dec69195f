/**
 * Claiming downloads, and the ones this Downloader has claimed: at most `concurrency` run at
 * once, the others wait in order of priority (then id) for a slot.
 *
 * @module
 */

import { CidgetError } from '../core/errors.js'
import type { DownloadRecord, DownloadStatus } from '../core/types.js'
import type { Store } from '../store/store.js'
import type { LeaseInit } from './lease.js'
import type { RateLimiter } from '../gateways/limiter.js'

/** A claimed download, running or waiting for a slot. */
export interface Running {
  /** Aborted to stop the run; its reason says why (pause, cancel, lost lease, shutdown). */
  readonly controller: AbortController
  /** The status as this run last wrote it. */
  status: DownloadStatus
  /** Resolves with the final record. Never rejects. */
  done: Promise<DownloadRecord>
  /** The download's own bandwidth limit while it runs here (changed live by `setDownloadLimit`). */
  limiter?: RateLimiter
}

export class RunQueue {
  readonly concurrency: number
  readonly #running = new Map<number, Running>()
  readonly #waiting: Array<{ id: number, priority: number, start: () => void }> = []
  #active = 0

  constructor (concurrency: number) {
    this.concurrency = concurrency
  }

  get (id: number): Running | undefined {
    return this.#running.get(id)
  }

  has (id: number): boolean {
    return this.#running.has(id)
  }

  /** Ids running or waiting. */
  ids (): number[] {
    return [...this.#running.keys()]
  }

  entries (): Array<[number, Running]> {
    return [...this.#running.entries()]
  }

  /**
   * Queues the run of a claimed download. `work` runs once a slot is free and
   * resolves with the record as it last knew it; when it has settled the slot
   * goes to the next one, and `done` resolves with the record `read` gives
   * (or, if the state cannot be read just now, the one `work` knew).
   */
  add (record: DownloadRecord, controller: AbortController, work: (running: Running) => Promise<DownloadRecord>,
    read: (id: number) => Promise<DownloadRecord>): Running {
    const id = record.id
    let startRun!: () => void
    const slot = new Promise<void>(resolve => { startRun = resolve })
    const running: Running = { controller, status: record.status, done: Promise.resolve(record) }
    running.done = (async () => {
      await slot
      let known = record
      try {
        known = await work(running)
      } finally {
        this.#running.delete(id)
        this.#active--
        this.#pump()
      }
      try {
        return await read(id)
      } catch {
        // the state cannot be read just now: the record as this run last knew it
        return { ...known, status: running.status }
      }
    })()
    this.#running.set(id, running)
    this.#waiting.push({ id, priority: record.priority, start: startRun })
    this.#waiting.sort((a, b) => b.priority - a.priority || a.id - b.id)
    this.#pump()
    return running
  }

  #pump (): void {
    while (this.#active < this.concurrency && this.#waiting.length > 0) {
      const next = this.#waiting.shift()
      if (next === undefined) break
      this.#active++
      next.start()
    }
  }
}

/** Takes the lease of `id` for `owner`, or throws CIDGET_ERR_LEASE_HELD naming the holder. */
export async function claimOrThrow (lease: LeaseInit, record: DownloadRecord): Promise<void> {
  if (!await lease.store.claimLease(record.id, lease.owner, lease.leaseMs, lease.now())) {
    throw new CidgetError('CIDGET_ERR_LEASE_HELD', `Download ${record.id} is being worked on by another process (${record.leaseOwner ?? '?'})`)
  }
}

/** The record of `id`, or CIDGET_ERR_UNKNOWN_DOWNLOAD. */
export async function mustGet (store: Store, id: number): Promise<DownloadRecord> {
  const rec = await store.getDownload(id)
  if (rec === undefined) throw new CidgetError('CIDGET_ERR_UNKNOWN_DOWNLOAD', `No download with id ${id}`)
  return rec
}
