import { DEFAULTS } from './defaults.js'

/** How a download behaves under failure. Every field has its default in DEFAULTS. */
export interface DownloadPolicy {
  /** Idle timeout in ms (connect, headers, gap between body chunks). @default 30000 */
  timeoutMs: number
  /** Resumes after interruptions mid-body before the download fails. @default 3 */
  maxResumeAttempts: number
  /** Failures per gateway (network errors, timeouts, error statuses) before it is dropped. @default 3 */
  maxRetryAttempts: number
  /** Gateway switches after a hash mismatch before the download fails. @default 2 */
  maxCorruptionSwitches: number
  /** After a stream reset: resume at ≥ this share done, else restart from 0. @default 0.5 */
  resumeThreshold: number
  /** @default 1000 */
  initialBackoffMs: number
  /** @default 2 */
  backoffMultiplier: number
  /** @default 30000 */
  maxBackoffMs: number
  /** @default 0.2 */
  backoffJitter: number
  /** Longest wait a Retry-After header can impose. @default 60000 */
  maxRetryAfterMs: number
  /** Bytes between fsyncs (each followed by a progress record). @default 8 MiB */
  syncIntervalBytes: number
  /** Longest time between fsyncs while bytes arrive. @default 1000 */
  syncIntervalMs: number
}

export const DEFAULT_POLICY: Readonly<DownloadPolicy> = Object.freeze({
  timeoutMs: DEFAULTS.TIMEOUT_MS,
  maxResumeAttempts: DEFAULTS.MAX_RESUME_ATTEMPTS,
  maxRetryAttempts: DEFAULTS.MAX_RETRY_ATTEMPTS,
  maxCorruptionSwitches: DEFAULTS.MAX_CORRUPTION_SWITCHES,
  resumeThreshold: DEFAULTS.RESUME_THRESHOLD,
  initialBackoffMs: DEFAULTS.INITIAL_BACKOFF_MS,
  backoffMultiplier: DEFAULTS.BACKOFF_MULTIPLIER,
  maxBackoffMs: DEFAULTS.MAX_BACKOFF_MS,
  backoffJitter: DEFAULTS.BACKOFF_JITTER,
  maxRetryAfterMs: DEFAULTS.MAX_RETRY_AFTER_MS,
  syncIntervalBytes: DEFAULTS.SYNC_INTERVAL_BYTES,
  syncIntervalMs: DEFAULTS.SYNC_INTERVAL_MS
})
