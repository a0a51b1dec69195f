import type { DownloadRecord, DownloadStatus, NewDownload } from '../core/types.js'

/** Fields a caller may change with `updateDownload`. */
export type DownloadPatch = Partial<Pick<DownloadRecord,
  'status' | 'attempts' | 'lastAttempt' | 'currentSize' | 'hash' | 'etag' | 'error' | 'errorCode' |
  'gateway' | 'gateways' | 'size' | 'completedAt' | 'expectedSha256' | 'priority' | 'control'>>

export interface ListOptions {
  status?: DownloadStatus
  /** Page size; default 100. */
  limit?: number
  /** Return ids greater than this (pagination by id). */
  afterId?: number
}

/**
 * The state of every download. SQLite implements it now; PostgreSQL later.
 * Methods are async so that both fit; the SQLite one does its work synchronously
 * inside, so no transaction ever spans an await.
 *
 * Leases: a download is worked on only by the holder of its lease. `claimLease`
 * succeeds when the row has no owner, its lease expired, the owner is the caller,
 * or `isOwnerDead(owner)` says the owner process is gone.
 */
export interface Store {
  /** Where the state lives (a file path or a URL without password). */
  readonly location: string

  /**
   * Inserts a `pending` record. With `exclusiveOutput`, the check that no
   * unfinished download (not success/failed/cancelled) writes to the same output
   * and the insert are one transaction; a clash throws CIDGET_ERR_OUTPUT_IN_USE.
   */
  createDownload (init: NewDownload, now?: number, opts?: { exclusiveOutput?: boolean }): Promise<DownloadRecord>
  getDownload (id: number): Promise<DownloadRecord | undefined>
  getDownloadsByStatus (status: DownloadStatus): Promise<DownloadRecord[]>
  listDownloads (opts?: ListOptions): Promise<DownloadRecord[]>
  /** The newest download for this cid, path and output that is not `cancelled`. */
  findDownload (cid: string, path: string, output: string): Promise<DownloadRecord | undefined>
  /** How many downloads have each status (every status present, 0 when none). */
  countByStatus (): Promise<Record<DownloadStatus, number>>
  /** Unfinished downloads (not success/failed/cancelled) writing to this output. */
  findUnfinishedByOutput (output: string): Promise<DownloadRecord[]>

  /** Seed: records progress after an fsync. */
  updateDownloadResume (id: number, currentSize: number, attempts: number, lastAttempt: number, status: DownloadStatus): Promise<void>
  /** Seed: stores the computed SHA-256. */
  updateDownloadHash (id: number, hash: string): Promise<void>
  /** Seed: status → resuming. */
  markDownloadResuming (id: number): Promise<void>
  /** Seed: status → paused with the error message (and code). */
  markDownloadPaused (id: number, error: string | null, errorCode?: string | null): Promise<void>
  markDownloadFailed (id: number, error: string, errorCode: string): Promise<void>
  /** `hash` is the SHA-256 of a single file, null for a directory. */
  markDownloadSuccess (id: number, hash: string | null, size: number, now?: number): Promise<void>
  updateDownload (id: number, patch: DownloadPatch, now?: number): Promise<void>
  deleteDownload (id: number): Promise<boolean>

  /** Verified mode: the bitmap of durable data blocks and the bytes they add up to, in one transaction. */
  saveProgress (id: number, bitmap: Uint8Array, currentSize: number): Promise<void>
  getProgress (id: number): Promise<Uint8Array | undefined>
  /** Verified mode: keeps an inner DAG block (verified) so that a resume need not fetch it again. */
  putBlock (id: number, cid: string, bytes: Uint8Array): Promise<void>
  getBlocks (id: number): Promise<Map<string, Uint8Array>>
  /** Forgets the bitmap and blocks of a download (after success, cancel or a restart). */
  clearProgress (id: number): Promise<void>

  /** Takes the lease if free, expired, ours, or held by a dead owner. */
  claimLease (id: number, owner: string, ttlMs: number, now?: number): Promise<boolean>
  /** Extends our lease; false if we no longer hold it. */
  renewLease (id: number, owner: string, ttlMs: number, now?: number): Promise<boolean>
  releaseLease (id: number, owner: string): Promise<void>
  /** Active downloads (in_progress/resuming) whose lease expired or whose owner is dead. */
  listOrphaned (now?: number): Promise<DownloadRecord[]>

  close (): Promise<void>
}

/** Lease owners look like `host:pid:token`; a local owner whose pid is gone is dead. */
export type OwnerLiveness = (owner: string) => boolean
