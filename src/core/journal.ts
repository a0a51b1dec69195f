import type { DownloadStatus, UpdateReport } from './types.js'

export interface RestartOptions {
  /** Said in the record's `error` (no error code). */
  note?: string
  /**
   * Path mode: its progress is a byte count, and its kept blocks are the DAG's
   * verified inner nodes its check against the CID reads: they stay.
   */
  keepBlocks?: boolean
}

/**
 * The record of one download as the run working on it sees it: the only way a
 * strategy reads or writes its state. Every write is fenced on the run's lease:
 * once another process has taken the download over, a write records nothing
 * and throws CIDGET_ERR_LEASE_HELD, so a run stopped past its lease's end can
 * neither overwrite the progress of the one that took over nor rename its
 * partial onto the output.
 *
 * The engine implements it over the store (`Journal` in engine/journal.ts).
 */
export interface DownloadJournal {
  /** The download's id. */
  readonly id: number

  /** Verified mode: the bitmap of durable data blocks recorded by earlier runs (undefined: none). */
  progress (): Promise<Uint8Array | undefined>
  /** Verified mode: the CIDs of the inner blocks kept so far (not their bytes). */
  keptBlockKeys (): Promise<Set<string>>
  /** Verified mode: one kept inner block; undefined when it was not kept. */
  keptBlock (cid: string): Promise<Uint8Array | undefined>

  /** Verified mode: the bitmap of blocks written and fsynced, and the bytes they add up to (after an fsync). */
  checkpoint (bitmap: Uint8Array, bytes: number): Promise<void>
  /** Verified mode: keeps a verified inner block, so that a resume need not fetch it again (written with the next checkpoint, pause or failure at the latest). */
  keepBlock (cid: string, bytes: Uint8Array): Promise<void>
  /** Path mode: the bytes of the partial file that are durable (after an fsync). */
  durable (bytes: number): Promise<void>
  /** A request starts: durable bytes, attempts so far, the status, and the time as the last attempt. */
  attempt (bytes: number, attempts: number, status: DownloadStatus): Promise<void>
  /** What the content declares: its size, and (path mode) the gateway's strong ETag when given. */
  describe (size: number | null, etag?: string | null): Promise<void>
  /** A note for people in the record's `error` (no error code): why the run did what it did. */
  note (message: string): Promise<void>
  /** An update: what it kept, fetched, removed and carried over (written before its success). */
  report (update: UpdateReport): Promise<void>
  /**
   * Starts again from zero: the progress (bitmap and kept blocks) forgotten, `currentSize` 0,
   * no hash, and `note` (when given) in `error`.
   */
  restart (opts?: RestartOptions): Promise<void>
  /** Forgets the verified progress (bitmap and kept blocks) only. */
  forgetProgress (): Promise<void>
  /**
   * The finished output's SHA-256 (and size, when given), recorded before the rename: a run
   * killed after it leaves a record that says what the output must hold.
   */
  finished (hash: string, size?: number): Promise<void>

  /** `success`: the gateway, the hash and size, the lease released, the progress forgotten. */
  succeed (hash: string | null, size: number, gateway: string): Promise<void>
  /** `paused`, with the reason (null: paused by a person). */
  pause (error: string | null, errorCode: string | null): Promise<void>
  /** `failed`, with the error. */
  fail (error: string, errorCode: string): Promise<void>
  /**
   * `cancelled`: the progress forgotten, no error. `bestEffort` (after a run): the status is written
   * even when the progress could not be forgotten, unless the lease is lost.
   */
  cancel (opts?: { bestEffort?: boolean }): Promise<void>
}
