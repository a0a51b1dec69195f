/**
 * The retry policy: backoff delays, Retry-After, and what to do after a failure (`decideRetry`).
 * Pure apart from the jitter's randomness, which is injectable; no network, no clock.
 *
 * @module
 */

import { DEFAULTS } from './defaults.js'
import { CidgetError, type ErrorKind } from './errors.js'

export interface BackoffOptions {
  initialMs?: number
  multiplier?: number
  maxMs?: number
  /** Share of the delay drawn at random, ±. 0 disables jitter. */
  jitter?: number
  /** Source of randomness in [0, 1); injectable for tests. */
  random?: () => number
}

/**
 * Delay before retry number `attempt` (1-based): initial × multiplier^(attempt-1),
 * capped, with ± jitter. Pure apart from `random`. Never negative, never above maxMs.
 */
export function retryDelay (attempt: number, opts: BackoffOptions = {}): number {
  const initial = opts.initialMs ?? DEFAULTS.INITIAL_BACKOFF_MS
  const multiplier = opts.multiplier ?? DEFAULTS.BACKOFF_MULTIPLIER
  const max = opts.maxMs ?? DEFAULTS.MAX_BACKOFF_MS
  const jitter = opts.jitter ?? DEFAULTS.BACKOFF_JITTER
  const random = opts.random ?? Math.random
  const n = Math.max(1, Math.floor(attempt))
  const growth = Math.pow(multiplier, n - 1)
  // 0 × ∞ (a zero initial delay after very many attempts) and 1^∞ are NaN in JS: neither grows
  const grown = initial === 0 ? 0 : initial * (Number.isNaN(growth) ? 1 : growth)
  const base = Math.min(max, grown)
  const spread = base * jitter * (2 * random() - 1)
  return Math.max(0, Math.min(max, Math.round(base + spread)))
}

/**
 * Parses Retry-After (delta-seconds or HTTP-date) into milliseconds, capped at `maxMs`.
 * Returns undefined for a missing or unparsable header.
 */
export function parseRetryAfter (value: string | undefined | null, now: number = Date.now(), maxMs: number = DEFAULTS.MAX_RETRY_AFTER_MS): number | undefined {
  if (value === undefined || value === null) return undefined
  const v = value.trim()
  if (v === '') return undefined
  let ms: number
  if (/^\d+$/.test(v)) {
    ms = Number(v) * 1000
  } else {
    // an HTTP-date always names a weekday or month; bare numbers like "-5" are not dates
    if (!/^[A-Za-z]/.test(v)) return undefined
    const t = Date.parse(v)
    if (Number.isNaN(t)) return undefined
    ms = t - now
  }
  if (!Number.isFinite(ms)) return maxMs
  return Math.max(0, Math.min(maxMs, ms))
}

/** How long a gateway is set aside: the backoff on its errors in a row, and the cap on a Retry-After. */
export interface BackOffPolicy {
  initialBackoffMs: number
  backoffMultiplier: number
  maxBackoffMs: number
  backoffJitter: number
  maxRetryAfterMs: number
  /** Randomness for the jitter. @default Math.random */
  random?: () => number
}

/** The backoff and budgets a retry decision reads; every field is a DownloadPolicy field of the same name. */
export interface RetryPolicy extends BackOffPolicy {
  maxResumeAttempts: number
  maxRetryAttempts: number
  maxCorruptionSwitches: number
  resumeThreshold: number
  /** Block scope: failed attempts of one block before it is given up. */
  maxAttemptsPerBlock?: number
}

/** What the block scope reads: the set-aside and the attempts of one block (a RetryPolicy's maxRetryAttempts when not given). */
export type BlockRetryPolicy = BackOffPolicy & { maxAttemptsPerBlock?: number, maxRetryAttempts?: number }

/**
 * What a failure says about the gateway that caused it, for its health to count before the
 * decision reads the count: a timeout and an error lengthen its streak, `missing` (404, 410,
 * another 4xx) and `invalid` (a block that is not its CID) end its use, `none` is not its fault.
 */
export type Blame = 'none' | 'timeout' | 'error' | 'missing' | 'invalid'

export interface RetryFailure {
  error: CidgetError
  /** `transfer`: asking and reading an answer; `verify`: checking a whole file that arrived. */
  phase: 'transfer' | 'verify'
  /** Body bytes the failed answer delivered (and were kept). */
  received: number
  /** Verify phase: the file matched the CID block by block, so a wrong hash is the expectation's fault. */
  cidChecked?: boolean
}

/** A download of one file (path mode): one gateway at a time, resumable at an offset. */
export interface FileRetryState {
  scope: 'file'
  /** Bytes of the file held now. */
  offset: number
  /** Size of the file when known. */
  size: number | null
  /** Resumes after interruptions mid-body so far. */
  resumes: number
  /** Gateway switches after corrupt data so far. */
  corruptions: number
  /** Failures since bytes last arrived, across gateways, before this one. */
  failStreak: number
  /**
   * The failing gateway as its health counts it with this failure: its timeouts in a row (for a
   * timeout), whether it is still live (its health drops it after its tries), the gateways still live.
   */
  gateway: { timeouts: number, live: boolean, alive: number }
}

/** One block of a verified download: any gateway may serve it, several at once. */
export interface BlockRetryState {
  scope: 'block'
  /** What the block is called in messages (its CID). */
  item: string
  /** Failed attempts of this block before this one. */
  attempts: number
  /** The failing gateway's errors in a row, this one counted (used if this one sets it aside). */
  gateway: { streak: number }
}

export type RetryState = FileRetryState | BlockRetryState

/** What is announced: the retry events' `action`, or the end. */
export type RetryAction = 'wait' | 'switch' | 'resume' | 'restart' | 'fail'

export interface RetryDecision {
  action: RetryAction
  /** The next request goes to the same gateway (`wait`) or to the next one. */
  next: 'same' | 'next'
  /** Wait this long before the next request. */
  delayMs: number
  /** Discard the data held and start again from byte 0. */
  restart: boolean
  /** Delete the partial data before failing. */
  remove: boolean
  /** The gateway beyond what its health counts: kept, dropped for the download, or skipped for this block only. */
  gateway: 'keep' | 'drop' | 'skip'
  /** Keep the gateway aside this long (Retry-After; the pool's backoff); undefined: not blocked. */
  blockMs: number | undefined
  /** `blockMs` is what the gateway asked for (Retry-After), not a backoff. */
  told: boolean
  /** The error the download fails with (`action` fail). */
  error: CidgetError | undefined
  /** File scope: the counters after this failure. */
  resumes: number
  corruptions: number
  failStreak: number
}

/** Failures no retry can mend: the disk, the file system, the input, the state, a pause or cancel. */
const FATAL_KINDS = new Set<ErrorKind>(['disk', 'fs', 'input', 'state', 'aborted'])

/** Failures no gateway can help with (disk, file system, input, state, an abort): the run ends, and no gateway is blamed. */
export function endsTheRun (error: CidgetError): boolean {
  return FATAL_KINDS.has(error.kind)
}

/** Statuses worth asking the same gateway again (after a wait). */
function transientStatus (status: number | undefined): boolean {
  return status === 408 || status === 425 || status === 429 || (status !== undefined && status >= 500)
}

/** A gateway's answer that it cannot serve this content at all. */
function refusal (error: CidgetError): boolean {
  return error.code === 'CIDGET_ERR_NOT_FOUND' || (error.status !== undefined && !transientStatus(error.status))
}

/** How `failure` counts against the gateway it came from (see Blame). */
export function blame (failure: RetryFailure): Blame {
  const { error } = failure
  if (FATAL_KINDS.has(error.kind) || failure.cidChecked === true) return 'none'
  // a finished file: only bytes that differ from what was declared are the gateway's doing
  if (failure.phase === 'verify') return error.code === 'CIDGET_ERR_HASH_MISMATCH' || error.code === 'CIDGET_ERR_LENGTH_MISMATCH' ? 'error' : 'none'
  switch (error.code) {
    case 'CIDGET_ERR_DAG_INVALID':
    case 'CIDGET_ERR_RANGE_IGNORED':
    case 'CIDGET_ERR_RANGE_NOT_SATISFIABLE':
      return 'none'
    case 'CIDGET_ERR_TIMEOUT':
      return 'timeout'
    case 'CIDGET_ERR_BLOCK_INVALID':
    case 'CIDGET_ERR_BLOCK_TOO_LARGE':
      return 'invalid'
    default:
      return refusal(error) ? 'missing' : 'error'
  }
}

function backoffOf (policy: BackOffPolicy): BackoffOptions {
  return {
    initialMs: policy.initialBackoffMs,
    multiplier: policy.backoffMultiplier,
    maxMs: policy.maxBackoffMs,
    jitter: policy.backoffJitter,
    ...(policy.random === undefined ? {} : { random: policy.random })
  }
}

/**
 * How long a gateway whose failure is its own is set aside: the Retry-After it sent (capped),
 * else a backoff on `streak`, its errors in a row with this one.
 */
export function setAside (error: CidgetError, streak: number, policy: BackOffPolicy): { ms: number, told: boolean } {
  // drawn even when a Retry-After decides, so that the jitter's draws do not hang on the header
  const backoff = retryDelay(Math.max(1, streak), backoffOf(policy))
  const told = error.retryAfterMs === undefined ? undefined : Math.min(error.retryAfterMs, policy.maxRetryAfterMs)
  return told !== undefined && told > 0 ? { ms: told, told: true } : { ms: backoff, told: false }
}

/**
 * The retry policy as one pure decision (apart from the jitter's randomness): what to do after
 * `failure`, given the download's `state` and the `policy`. The caller carries the decision out;
 * this function does nothing. File scope: the caller has counted the failure against its gateway
 * (see `blame`) first. Block scope: it names the gateway's streak with this failure, and counts it
 * when the decision sets the gateway aside (`blockMs`).
 */
export function decideRetry (failure: RetryFailure, state: FileRetryState, policy: RetryPolicy): RetryDecision
export function decideRetry (failure: RetryFailure, state: BlockRetryState, policy: BlockRetryPolicy): RetryDecision
export function decideRetry (failure: RetryFailure, state: RetryState, policy: RetryPolicy): RetryDecision
export function decideRetry (failure: RetryFailure, state: RetryState, policy: RetryPolicy | BlockRetryPolicy): RetryDecision {
  if (state.scope === 'block') return decideForBlock(failure, state, policy)
  // the overloads give a file state a whole RetryPolicy
  return decideForFile(failure, state, policy as RetryPolicy)
}

function decideForFile (failure: RetryFailure, state: FileRetryState, policy: RetryPolicy): RetryDecision {
  const { error, received } = failure
  const counters = { resumes: state.resumes, corruptions: state.corruptions, failStreak: state.failStreak }
  const base = { next: 'next' as const, delayMs: 0, restart: false, remove: false, gateway: 'keep' as const, blockMs: undefined, told: false, error: undefined, ...counters }
  const fail = (err: CidgetError, extra: Partial<RetryDecision> = {}): RetryDecision => ({ ...base, action: 'fail', error: err, ...extra })
  if (FATAL_KINDS.has(error.kind)) return fail(error)
  if (error.code === 'CIDGET_ERR_RANGE_IGNORED' || error.code === 'CIDGET_ERR_RANGE_NOT_SATISFIABLE') {
    // the answer cannot be spliced onto the data held: start over, with this gateway
    return { ...base, action: 'restart', next: 'same', restart: true }
  }
  if (failure.phase === 'verify') {
    if (error.code !== 'CIDGET_ERR_HASH_MISMATCH' && error.code !== 'CIDGET_ERR_LENGTH_MISMATCH') return fail(error)
    // the bytes are the CID's: the expected hash is not this content's
    if (failure.cidChecked === true) return fail(error, { remove: true })
    const corruptions = state.corruptions + 1
    if (corruptions > policy.maxCorruptionSwitches) {
      return fail(new CidgetError(error.code, `${error.message}; gave up after ${policy.maxCorruptionSwitches} gateway switches`, error.gateway === undefined ? {} : { gateway: error.gateway }),
        { restart: true, remove: true, corruptions })
    }
    return { ...base, action: 'restart', restart: true, corruptions, gateway: state.gateway.live ? 'keep' : 'drop' }
  }

  // the gateway delivered: the streak of failures without bytes starts over
  const failStreak = (received > 0 ? 0 : state.failStreak) + 1
  let resumes = state.resumes
  if (received > 0 || error.kind === 'stream') {
    // interrupted mid-body: one resume attempt
    resumes++
    if (resumes > policy.maxResumeAttempts) {
      return fail(new CidgetError('CIDGET_ERR_ATTEMPTS_EXHAUSTED',
        `Gave up after ${policy.maxResumeAttempts} resume attempts; last error: ${error.message}`, { cause: error }), { resumes, failStreak })
    }
  }
  const after = { ...base, resumes, failStreak }
  // a gateway its health dropped after its tries is named dropped
  const spent = state.gateway.live ? 'keep' : 'drop'
  // the bytes of this answer cannot be trusted at all
  if (error.code === 'CIDGET_ERR_LENGTH_MISMATCH') return { ...after, action: 'restart', restart: true, gateway: spent }
  const { offset, size } = state
  // too little held to be worth resuming on another gateway's copy
  const restart = size !== null && size > 0 && offset > 0 && received > 0 && offset / size < policy.resumeThreshold
  const carryOn = restart ? 'restart' : 'resume'
  if (error.code === 'CIDGET_ERR_TIMEOUT') {
    // back off on the same gateway until it used up its tries (its health drops it then)
    if (state.gateway.live) {
      return { ...after, action: carryOn, next: 'same', restart, delayMs: retryDelay(state.gateway.timeouts, backoffOf(policy)) }
    }
    return { ...after, action: 'switch', restart, gateway: 'drop' }
  }
  if (refusal(error)) return { ...after, action: 'switch', restart, gateway: 'drop' }
  // once every live gateway failed in a row, back off before the next round
  const round = Math.floor(failStreak / Math.max(1, state.gateway.alive))
  const delayMs = round >= 1 && error.retryAfterMs === undefined ? retryDelay(round, backoffOf(policy)) : 0
  return { ...after, action: received > 0 ? carryOn : 'switch', restart, delayMs, gateway: spent, blockMs: error.retryAfterMs, told: error.retryAfterMs !== undefined }
}

function decideForBlock (failure: RetryFailure, state: BlockRetryState, policy: BlockRetryPolicy): RetryDecision {
  const { error } = failure
  const base = { next: 'next' as const, delayMs: 0, restart: false, remove: false, blockMs: undefined, told: false, error: undefined, resumes: 0, corruptions: 0, failStreak: 0 }
  // the CID's fault, not the gateway's, or this machine's (a proxy that wants credentials): no other gateway can do better
  if (error.code === 'CIDGET_ERR_DAG_INVALID' || FATAL_KINDS.has(error.kind)) return { ...base, action: 'fail', gateway: 'keep', error }
  const attempts = state.attempts + 1
  let gateway: RetryDecision['gateway'] = 'keep'
  let aside: { blockMs: number, told: boolean } | undefined
  if (blame(failure) === 'invalid') gateway = 'drop'
  else if (error.code === 'CIDGET_ERR_NOT_FOUND') gateway = 'skip' // it lacks this block; it may well have the others
  else {
    // any other failure (a timeout, reset, 5xx, 429, another 4xx) is the gateway's: aside for a while
    const { ms, told } = setAside(error, state.gateway.streak, policy)
    aside = { blockMs: ms, told }
  }
  const after = { ...base, gateway, ...aside }
  const maxAttempts = policy.maxAttemptsPerBlock ?? policy.maxRetryAttempts ?? DEFAULTS.MAX_RETRY_ATTEMPTS
  if (attempts >= maxAttempts) {
    const err = new CidgetError('CIDGET_ERR_BLOCK_UNAVAILABLE', `No gateway delivered block ${state.item} in ${attempts} attempts (last error: ${error.message})`, { cause: error })
    return { ...after, action: 'fail', error: err }
  }
  return { ...after, action: 'switch' }
}
