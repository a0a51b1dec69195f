import type { DownloadRecord, DownloadStatus } from '../core/types.js'
import type { DownloadPolicy } from '../core/policy.js'
import type { RetryEvent } from '../core/events.js'
import type { DownloadJournal } from '../core/journal.js'
import type { HttpClient } from '../gateways/http.js'
import type { HealthRegistry } from '../gateways/health.js'
import type { PartialFile } from '../sink/partial.js'
import type { RepairReport } from './verified/check.js'

/** What the engine hands a strategy for one run of one download. */
export interface StrategyContext {
  /** The record as it was when the run started (the strategy owns the lease). */
  record: DownloadRecord
  /**
   * The only way the run reads and writes its record. Every write is fenced on
   * the lease: a run stopped past its lease's end cannot overwrite the record
   * of the process that took the download over.
   */
  journal: DownloadJournal
  http: HttpClient
  policy: DownloadPolicy
  /** Aborted on pause, cancel or a lost lease; its reason is what to throw. */
  signal: AbortSignal
  now: () => number
  /** Abortable wait. */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>
  random: () => number
  /** The process's gateway back-off, shared with every other download; absent: this download's own. */
  gatewayHealth?: HealthRegistry
  /** Sets in_progress/resuming (written and announced only when it changes). */
  setStatus: (status: DownloadStatus) => Promise<void>
  /** Bytes written so far (durable or not), the total when known, the gateway in use. */
  onProgress: (bytes: number, total: number | null, gateway: string, files?: number, estimate?: number) => void
  onRetry: (event: Omit<RetryEvent, 'id'>) => void
  /**
   * Path mode: checks the finished partial file against the CID (fetching only
   * inner nodes) and rewrites the ranges that do not match. Absent when there
   * is nothing to check against.
   */
  checkAgainstCid?: (file: PartialFile, size: number) => Promise<RepairReport>
  onRepair?: (report: RepairReport) => void
  /**
   * Path mode: the size the content's DAG declares (from its root block),
   * asked for when an answer carries no length, so that its body is cut off
   * there. Absent when the input is not a CID.
   */
  declaredSize?: () => Promise<number | undefined>
  /**
   * Verified mode, an update (the record's `updateOf`): the CID and path of the
   * version in the output now. Its blocks that the new version has at the same
   * places are taken from it, and it is swapped for the new one when done.
   */
  update?: { previous: { cid: string, path: string } | undefined }
}

export interface StrategyResult {
  /** SHA-256 (hex) of the finished output; null for a directory. */
  hash: string | null
  size: number
  gateway: string
}
