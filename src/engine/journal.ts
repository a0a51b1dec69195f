import { toCidgetError } from '../core/errors.js'
import type { DownloadJournal, RestartOptions } from '../core/journal.js'
import type { DownloadStatus } from '../core/types.js'
import type { Store } from '../store/store.js'

export interface JournalInit {
  store: Store
  /** The download this journal records. */
  id: number
  /** The lease holder the run works for: every write is made only while it holds the lease. */
  owner: string
  /** The clock for the time of an attempt; default `Date.now`. */
  now?: () => number
}

/**
 * The one writer of a download's record while a run works on it: every write
 * passes `owner` to the store, which makes it only while `owner` holds the
 * lease, in the same statement or transaction (CIDGET_ERR_LEASE_HELD else).
 */
export class Journal implements DownloadJournal {
  readonly id: number
  readonly owner: string
  readonly #store: Store
  readonly #now: () => number

  constructor (init: JournalInit) {
    this.#store = init.store
    this.id = init.id
    this.owner = init.owner
    this.#now = init.now ?? Date.now
  }

  async progress (): Promise<Uint8Array | undefined> {
    return await this.#store.getProgress(this.id)
  }

  async keptBlockKeys (): Promise<Set<string>> {
    return new Set(await this.#store.getBlockKeys(this.id))
  }

  async keptBlock (cid: string): Promise<Uint8Array | undefined> {
    return await this.#store.getBlock(this.id, cid)
  }

  async checkpoint (bitmap: Uint8Array, bytes: number): Promise<void> {
    await this.#store.saveProgress(this.id, bitmap, bytes, this.owner)
  }

  async keepBlock (cid: string, bytes: Uint8Array): Promise<void> {
    await this.#store.putBlock(this.id, cid, bytes, this.owner)
  }

  async durable (bytes: number): Promise<void> {
    await this.#store.updateDownload(this.id, { currentSize: bytes }, undefined, this.owner)
  }

  async attempt (bytes: number, attempts: number, status: DownloadStatus): Promise<void> {
    await this.#store.updateDownloadResume(this.id, bytes, attempts, this.#now(), status, this.owner)
  }

  async describe (size: number | null, etag?: string | null): Promise<void> {
    await this.#store.updateDownload(this.id, etag === undefined ? { size } : { size, etag }, undefined, this.owner)
  }

  async note (message: string): Promise<void> {
    await this.#store.updateDownload(this.id, { error: message, errorCode: null }, undefined, this.owner)
  }

  async restart ({ note, keepBlocks = false }: RestartOptions = {}): Promise<void> {
    if (!keepBlocks) await this.#store.clearProgress(this.id, this.owner)
    await this.#store.updateDownload(this.id, {
      currentSize: 0,
      hash: null,
      ...(note === undefined ? {} : { error: note, errorCode: null })
    }, undefined, this.owner)
  }

  async forgetProgress (): Promise<void> {
    await this.#store.clearProgress(this.id, this.owner)
  }

  async finished (hash: string, size?: number): Promise<void> {
    await this.#store.updateDownload(this.id, size === undefined ? { hash } : { hash, size }, undefined, this.owner)
  }

  /** The engine: a run under way (in_progress or resuming), the last error cleared. */
  async active (status: DownloadStatus): Promise<void> {
    await this.#store.updateDownload(this.id, { status, error: null, errorCode: null }, this.#now(), this.owner)
  }

  /** The engine: a pause or cancel asked by another process is answered (cleared). */
  async clearControl (): Promise<void> {
    await this.#store.updateDownload(this.id, { control: null }, this.#now(), this.owner)
  }

  /** The engine: whether the owner still holds the lease (read, not fenced). */
  async holdsLease (): Promise<boolean> {
    return (await this.#store.getDownload(this.id))?.leaseOwner === this.owner
  }

  async succeed (hash: string | null, size: number, gateway: string): Promise<void> {
    await this.#store.updateDownload(this.id, { gateway, control: null }, this.#now(), this.owner)
    await this.#store.markDownloadSuccess(this.id, hash, size, this.#now(), this.owner)
  }

  async pause (error: string | null, errorCode: string | null): Promise<void> {
    await this.#store.markDownloadPaused(this.id, error, errorCode, this.owner)
  }

  async fail (error: string, errorCode: string): Promise<void> {
    await this.#store.markDownloadFailed(this.id, error, errorCode, this.owner)
  }

  async cancel ({ bestEffort = false }: { bestEffort?: boolean } = {}): Promise<void> {
    try {
      await this.#store.clearProgress(this.id, this.owner)
    } catch (err) {
      if (!bestEffort || toCidgetError(err).code === 'CIDGET_ERR_LEASE_HELD') throw err
    }
    await this.#store.updateDownload(this.id, { status: 'cancelled', currentSize: 0, error: null, errorCode: null }, this.#now(), this.owner)
  }
}
