import { toCidgetError } from '../core/errors.js'
import type { DownloadJournal, RestartOptions } from '../core/journal.js'
import type { DownloadStatus, UpdateReport } from '../core/types.js'
import type { DownloadPatch, KeptBlock, Store } from '../store/store.js'

/** Kept blocks are written in batches of this many… */
const KEEP_BATCH_BLOCKS = 256
/** …or of this many bytes, whichever comes first (and at each checkpoint and pause). */
const KEEP_BATCH_BYTES = 1024 * 1024

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
  /** Inner blocks to keep, written together (one transaction) when enough wait or at the next checkpoint. */
  #pending = new Map<string, Uint8Array>()
  #pendingBytes = 0

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
    return this.#pending.get(cid) ?? await this.#store.getBlock(this.id, cid)
  }

  async checkpoint (bitmap: Uint8Array, bytes: number): Promise<void> {
    await this.#flushBlocks()
    await this.#store.saveProgress(this.id, bitmap, bytes, this.owner)
  }

  /**
   * Kept in batches (a transaction per block cost more than the block): a
   * block not written yet when the process dies is fetched again by the next
   * run, nothing recorded depends on it.
   */
  async keepBlock (cid: string, bytes: Uint8Array): Promise<void> {
    if (this.#pending.has(cid)) return
    this.#pending.set(cid, bytes)
    this.#pendingBytes += bytes.byteLength
    if (this.#pending.size >= KEEP_BATCH_BLOCKS || this.#pendingBytes >= KEEP_BATCH_BYTES) await this.#flushBlocks()
  }

  async #flushBlocks (): Promise<void> {
    if (this.#pending.size === 0) return
    const blocks: KeptBlock[] = [...this.#pending].map(([cid, bytes]) => ({ cid, bytes }))
    this.#dropBlocks()
    await this.#store.putBlocks(this.id, blocks, this.owner)
  }

  #dropBlocks (): void {
    this.#pending = new Map()
    this.#pendingBytes = 0
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

  /** What the download's name resolved to: the CID and path its runs fetch from now on. */
  async resolved (patch: Pick<DownloadPatch, 'cid' | 'path' | 'nameSequence' | 'nameValidity' | 'nameResolvedAt'>): Promise<void> {
    await this.#store.updateDownload(this.id, patch, undefined, this.owner)
  }

  async report (update: UpdateReport): Promise<void> {
    await this.#store.updateDownload(this.id, { updateReport: update }, undefined, this.owner)
  }

  async note (message: string): Promise<void> {
    await this.#store.updateDownload(this.id, { error: message, errorCode: null }, undefined, this.owner)
  }

  async restart ({ note, keepBlocks = false }: RestartOptions = {}): Promise<void> {
    if (keepBlocks) await this.#flushBlocks()
    else {
      this.#dropBlocks()
      await this.#store.clearProgress(this.id, this.owner)
    }
    await this.#store.updateDownload(this.id, {
      currentSize: 0,
      hash: null,
      ...(note === undefined ? {} : { error: note, errorCode: null })
    }, undefined, this.owner)
  }

  async forgetProgress (): Promise<void> {
    this.#dropBlocks()
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
    this.#dropBlocks() // the record forgets kept blocks with its success
    await this.#store.updateDownload(this.id, { gateway, control: null }, this.#now(), this.owner)
    await this.#store.markDownloadSuccess(this.id, hash, size, this.#now(), this.owner)
  }

  async pause (error: string | null, errorCode: string | null): Promise<void> {
    await this.#flushBlocks()
    await this.#store.markDownloadPaused(this.id, error, errorCode, this.owner)
  }

  async fail (error: string, errorCode: string): Promise<void> {
    await this.#flushBlocks()
    await this.#store.markDownloadFailed(this.id, error, errorCode, this.owner)
  }

  async cancel ({ bestEffort = false }: { bestEffort?: boolean } = {}): Promise<void> {
    this.#dropBlocks()
    try {
      await this.#store.clearProgress(this.id, this.owner)
    } catch (err) {
      if (!bestEffort || toCidgetError(err).code === 'CIDGET_ERR_LEASE_HELD') throw err
    }
    await this.#store.updateDownload(this.id, { status: 'cancelled', currentSize: 0, error: null, errorCode: null }, this.#now(), this.owner)
  }
}
