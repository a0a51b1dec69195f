import type { DownloadRecord, DownloadStatus, NewDownload } from '../core/types.js'

/** Fields a caller may change with `updateDownload`. */
export type DownloadPatch = Partial<Pick<DownloadRecord,
  'status' | 'attempts' | 'lastAttempt' | 'currentSize' | 'hash' | 'etag' | 'error' | 'errorCode' |
  'gateway' | 'gateways' | 'size' | 'completedAt' | 'expectedSha256' | 'priority' | 'control' |
  'cid' | 'path' | 'nameSequence' | 'nameValidity' | 'nameResolvedAt' | 'updateReport' | 'limitRate'>>

export interface ListOptions {
  status?: DownloadStatus
  /** Page size; default 100. */
  limit?: number
  /** Return ids greater than this (pagination by id). */
  afterId?: number
}

/**
 * The state of every download. Two implementations pass one contract suite:
 * `SqliteStore` (a file, the default) and `PostgresStore` (a server shared by a
 * fleet of workers). Methods are async so that both fit; the SQLite one does its
 * work synchronously inside, so no transaction ever spans an await.
 *
 * Leases: a download is worked on only by the holder of its lease. `claimLease`
 * succeeds when the row has no owner, its lease expired, the owner is the caller,
 * or `isOwnerDead(owner)` says the owner process is gone.
 *
 * Fencing: every write a running download makes takes an optional `owner`, the
 * lease holder the run works for. Given, the write is made only while `owner`
 * holds the download's lease, checked in the same statement or transaction;
 * otherwise nothing is written and it throws CIDGET_ERR_LEASE_HELD
 * (CIDGET_ERR_UNKNOWN_DOWNLOAD when the id does not exist). Without it the
 * write is unconditional, for callers that act on a download no run holds
 * (the CLI, the service, the engine between runs).
 *
 * Errors: an invalid argument is CIDGET_ERR_BAD_OPTION, a missing id (where a
 * method says so) CIDGET_ERR_UNKNOWN_DOWNLOAD, a lost or refused connection to a
 * database server CIDGET_ERR_STATE_UNAVAILABLE (retryable: the call may be made
 * again), anything else CIDGET_ERR_STATE.
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
  /**
   * Inserts many `pending` records in one transaction (all or none; an invalid
   * one refuses the whole list before anything is written) and returns them in
   * input order, their ids ascending in that order. Meant for thousands at once.
   * With `exclusiveOutput`, as for `createDownload`, in the same transaction:
   * an output that an unfinished download writes to, or that two of the list
   * share, refuses the whole list with CIDGET_ERR_OUTPUT_IN_USE.
   */
  createDownloads (inits: readonly NewDownload[], now?: number, opts?: { exclusiveOutput?: boolean }): Promise<DownloadRecord[]>
  getDownload (id: number): Promise<DownloadRecord | undefined>
  getDownloadsByStatus (status: DownloadStatus): Promise<DownloadRecord[]>
  listDownloads (opts?: ListOptions): Promise<DownloadRecord[]>
  /** The newest download for this cid, path and output that is not `cancelled`. */
  findDownload (cid: string, path: string, output: string): Promise<DownloadRecord | undefined>
  /** The latest download (not cancelled) of the name `name` (`/ipns/…`, its path included) to `output`. */
  findNamedDownload (name: string, output: string): Promise<DownloadRecord | undefined>
  /** How many downloads have each status (every status present, 0 when none). */
  countByStatus (): Promise<Record<DownloadStatus, number>>
  /** The latest download that finished (success) at this output. */
  findDoneByOutput (output: string): Promise<DownloadRecord | undefined>
  /** Unfinished downloads (not success/failed/cancelled) writing to this output. */
  findUnfinishedByOutput (output: string): Promise<DownloadRecord[]>

  /** Seed: records progress after an fsync. */
  updateDownloadResume (id: number, currentSize: number, attempts: number, lastAttempt: number, status: DownloadStatus, owner?: string): Promise<void>
  /** Seed: stores the computed SHA-256. */
  updateDownloadHash (id: number, hash: string, owner?: string): Promise<void>
  /** Seed: status → resuming. */
  markDownloadResuming (id: number, owner?: string): Promise<void>
  /** Seed: status → paused with the error message (and code). */
  markDownloadPaused (id: number, error: string | null, errorCode?: string | null, owner?: string): Promise<void>
  markDownloadFailed (id: number, error: string, errorCode: string, owner?: string): Promise<void>
  /**
   * `success` with the output's hash and size (`hash` is the SHA-256 of a single file, null for a
   * directory), the lease released, and the download's verified progress (bitmap and kept blocks)
   * forgotten, all in one transaction: until then a resume still finds the progress of an output a
   * run renamed into place just before it stopped.
   */
  markDownloadSuccess (id: number, hash: string | null, size: number, now?: number, owner?: string): Promise<void>
  updateDownload (id: number, patch: DownloadPatch, now?: number, owner?: string): Promise<void>
  deleteDownload (id: number): Promise<boolean>

  /**
   * Verified mode: the bitmap of durable data blocks and the bytes they add up to, in one transaction.
   * Fenced with `owner` (see the interface's comment): a process that lost its lease (it was stopped
   * past the lease's end) cannot overwrite the progress of the one that took over.
   */
  saveProgress (id: number, bitmap: Uint8Array, currentSize: number, owner?: string): Promise<void>
  getProgress (id: number): Promise<Uint8Array | undefined>
  /** Verified mode: keeps an inner DAG block (verified) so that a resume need not fetch it again. */
  putBlock (id: number, cid: string, bytes: Uint8Array, owner?: string): Promise<void>
  /** {@link putBlock} for several blocks in one transaction (all or none). */
  putBlocks (id: number, blocks: readonly KeptBlock[], owner?: string): Promise<void>
  getBlocks (id: number): Promise<Map<string, Uint8Array>>
  /** One kept block of a download, by CID; undefined when it was not kept. */
  getBlock (id: number, cid: string): Promise<Uint8Array | undefined>
  /** The CIDs of a download's kept blocks (not their bytes). */
  getBlockKeys (id: number): Promise<string[]>
  /**
   * Forgets the bitmap and blocks of a download (after success, cancel or a restart). Unfenced, an
   * unknown id is no error (there is nothing to forget); fenced, it is CIDGET_ERR_UNKNOWN_DOWNLOAD.
   */
  clearProgress (id: number, owner?: string): Promise<void>

  /** Takes the lease if free, expired, ours, or held by a dead owner. */
  claimLease (id: number, owner: string, ttlMs: number, now?: number): Promise<boolean>
  /** Extends our lease; false if we no longer hold it. */
  renewLease (id: number, owner: string, ttlMs: number, now?: number): Promise<boolean>
  releaseLease (id: number, owner: string): Promise<void>
  /** Active downloads (in_progress/resuming) whose lease expired or whose owner is dead. */
  listOrphaned (now?: number): Promise<DownloadRecord[]>
  /**
   * The work queue: atomically picks the next claimable download, takes its lease
   * for `owner` until `now + ttlMs`, and returns it with the new lease (undefined
   * when none is claimable). Claimable: status `pending`, `in_progress` or
   * `resuming`, or `paused` with CIDGET_ERR_INTERRUPTED (a shutdown or a crash
   * stopped it, not a person), with a lease that is free, expired or held by a
   * dead owner (never a valid lease, even the caller's own). Order: highest `priority` first, then
   * oldest id; a store may take the rows of dead owners only once no other row is claimable
   * (PostgreSQL does, to claim in one round trip). Concurrent callers, in this process or others, never get the same
   * download. The status is left as it is: the caller moves it on. With
   * `under`, only downloads whose output starts with that string.
   */
  claimNext (owner: string, ttlMs: number, now?: number, opts?: ClaimOptions): Promise<DownloadRecord | undefined>

  close (): Promise<void>
}

/** Lease owners look like `host:pid:token`; a local owner whose pid is gone is dead. */
export type OwnerLiveness = (owner: string) => boolean

export interface ClaimOptions {
  /** Only downloads whose `output` starts with this (a directory path ending in a separator). */
  under?: string
}

/** Options every Store takes. */
export interface StoreOptions {
  /** Decides whether a lease owner is gone; default: `isOwnerDead` (same host, pid gone). */
  isOwnerDead?: OwnerLiveness
  /** The clock for `updatedAt` and for calls that take no `now`; default `Date.now`. */
  now?: () => number
}

/** An inner DAG block kept by a download (see {@link Store.putBlocks}). */
export interface KeptBlock {
  cid: string
  bytes: Uint8Array
}
