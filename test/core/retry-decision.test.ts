import { describe, it, expect } from 'vitest'
import { CidgetError, type CidgetErrorInit, type ErrorCode } from '../../src/core/errors.js'
import { blame, decideRetry, type BlockRetryState, type FileRetryState, type RetryDecision, type RetryFailure, type RetryPolicy } from '../../src/core/retry.js'
import { DEFAULT_POLICY } from '../../src/core/policy.js'

// the seed's defaults, without jitter so that every delay is exact
const policy: RetryPolicy = { ...DEFAULT_POLICY, backoffJitter: 0 }
const MiB = 1024 * 1024

function err (code: ErrorCode, init: CidgetErrorInit = {}): CidgetError {
  return new CidgetError(code, code, { gateway: 'https://a.example', ...init })
}

function file (over: Partial<FileRetryState> = {}): FileRetryState {
  return { scope: 'file', offset: 0, size: 10 * MiB, resumes: 0, corruptions: 0, failStreak: 0, gateway: { timeouts: 0, live: true, alive: 3 }, ...over }
}

function block (over: Partial<BlockRetryState> = {}): BlockRetryState {
  return { scope: 'block', item: 'bafyblock', attempts: 0, gateway: { streak: 1 }, ...over }
}

interface Row {
  /** The seed's strategy or the case the row stands for. */
  name: string
  failure: RetryFailure
  state: FileRetryState | BlockRetryState
  policy?: Partial<RetryPolicy>
  /** The fields of the decision the row checks (and `errorCode` for the error failed with). */
  want: Partial<RetryDecision> & { errorCode?: ErrorCode }
}

const transfer = (e: CidgetError, received = 0): RetryFailure => ({ error: e, phase: 'transfer', received })
const verify = (e: CidgetError, cidChecked = false): RetryFailure => ({ error: e, phase: 'verify', received: 0, cidChecked })

const rows: Row[] = [
  // --- the seed's error strategies ---------------------------------------------------------------
  // Timeout: exponential backoff with jitter (1 s, 2 s, 4 s), same gateway, 3 tries
  { name: 'seed timeout: 1st backs off 1 s on the same gateway', failure: transfer(err('CIDGET_ERR_TIMEOUT')), state: file({ gateway: { timeouts: 1, live: true, alive: 3 } }), want: { action: 'resume', next: 'same', delayMs: 1000, gateway: 'keep', restart: false } },
  { name: 'seed timeout: 2nd backs off 2 s', failure: transfer(err('CIDGET_ERR_TIMEOUT')), state: file({ gateway: { timeouts: 2, live: true, alive: 3 } }), want: { action: 'resume', next: 'same', delayMs: 2000 } },
  { name: 'seed timeout: 3rd backs off 4 s when 4 tries are allowed', failure: transfer(err('CIDGET_ERR_TIMEOUT')), state: file({ gateway: { timeouts: 3, live: true, alive: 3 } }), policy: { maxRetryAttempts: 4 }, want: { action: 'resume', next: 'same', delayMs: 4000 } },
  { name: 'seed timeout: 3 tries spent, the gateway is dropped, the next asked', failure: transfer(err('CIDGET_ERR_TIMEOUT')), state: file({ gateway: { timeouts: 3, live: false, alive: 2 } }), want: { action: 'switch', next: 'next', delayMs: 0, gateway: 'drop' } },
  { name: 'seed timeout: jitter stays within ±20 %', failure: transfer(err('CIDGET_ERR_TIMEOUT')), state: file({ gateway: { timeouts: 2, live: true, alive: 3 } }), policy: { backoffJitter: 0.2, random: () => 0.999 }, want: { delayMs: 2399 } },
  // Corruption: hash mismatch → discard, switch gateway, restart from 0; 2 switches, then failed
  { name: 'seed corruption: 1st mismatch restarts from 0 on the next gateway', failure: verify(err('CIDGET_ERR_HASH_MISMATCH')), state: file({ offset: 10 * MiB }), want: { action: 'restart', next: 'next', restart: true, remove: false, corruptions: 1, delayMs: 0 } },
  { name: 'seed corruption: 2nd mismatch switches again', failure: verify(err('CIDGET_ERR_HASH_MISMATCH')), state: file({ corruptions: 1 }), want: { action: 'restart', next: 'next', restart: true, corruptions: 2 } },
  { name: 'seed corruption: 3rd mismatch fails and deletes the data', failure: verify(err('CIDGET_ERR_HASH_MISMATCH')), state: file({ corruptions: 2 }), want: { action: 'fail', errorCode: 'CIDGET_ERR_HASH_MISMATCH', restart: true, remove: true, corruptions: 3 } },
  // Network (ECONNRESET, ECONNREFUSED): next gateway, resume at the same offset, 3 tries per gateway
  { name: 'seed network: next gateway at the same offset', failure: transfer(err('CIDGET_ERR_NETWORK')), state: file({ offset: 3 * MiB, gateway: { timeouts: 0, live: true, alive: 4 } }), want: { action: 'switch', next: 'next', restart: false, delayMs: 0, gateway: 'keep' } },
  { name: 'seed network: 3rd failure of one gateway drops it', failure: transfer(err('CIDGET_ERR_NETWORK')), state: file({ gateway: { timeouts: 0, live: false, alive: 2 } }), want: { action: 'switch', gateway: 'drop', delayMs: 0 } },
  { name: 'seed network: a whole round failed, back off before the next', failure: transfer(err('CIDGET_ERR_NETWORK')), state: file({ failStreak: 3, gateway: { timeouts: 0, live: true, alive: 4 } }), want: { action: 'switch', delayMs: 1000, failStreak: 4 } },
  { name: 'seed network: two rounds failed, 2 s', failure: transfer(err('CIDGET_ERR_NETWORK')), state: file({ failStreak: 7, gateway: { timeouts: 0, live: true, alive: 4 } }), want: { delayMs: 2000, failStreak: 8 } },
  // Stream reset: resume at ≥ 50 % done, else restart from 0; 3 resumes
  { name: 'seed stream reset: at 50 % resumes', failure: transfer(err('CIDGET_ERR_STREAM_RESET'), MiB), state: file({ offset: 5 * MiB }), want: { action: 'resume', restart: false, resumes: 1, next: 'next' } },
  { name: 'seed stream reset: at 75 % resumes', failure: transfer(err('CIDGET_ERR_STREAM_RESET'), MiB), state: file({ offset: 7.5 * MiB }), want: { action: 'resume', restart: false } },
  { name: 'seed stream reset: under 50 % restarts from 0', failure: transfer(err('CIDGET_ERR_STREAM_RESET'), MiB), state: file({ offset: 4 * MiB }), want: { action: 'restart', restart: true, resumes: 1 } },
  { name: 'seed stream reset: the 3rd resume is allowed', failure: transfer(err('CIDGET_ERR_STREAM_RESET'), MiB), state: file({ offset: 6 * MiB, resumes: 2 }), want: { action: 'resume', resumes: 3 } },
  { name: 'seed stream reset: a 4th fails with the resume budget spent', failure: transfer(err('CIDGET_ERR_STREAM_RESET'), MiB), state: file({ offset: 6 * MiB, resumes: 3 }), want: { action: 'fail', errorCode: 'CIDGET_ERR_ATTEMPTS_EXHAUSTED', resumes: 4, remove: false } },
  // 429 / 503 with Retry-After: wait as told, other gateways meanwhile
  { name: 'seed 429 with Retry-After: blocked as told, the next asked now', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 429, retryAfterMs: 5000 })), state: file(), want: { action: 'switch', blockMs: 5000, told: true, delayMs: 0, gateway: 'keep' } },
  { name: 'seed 503 with Retry-After: no backoff on top of it after a round', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 503, retryAfterMs: 2000 })), state: file({ failStreak: 5, gateway: { timeouts: 0, live: true, alive: 2 } }), want: { action: 'switch', blockMs: 2000, delayMs: 0 } },
  // Disk full: stop, keep the partial (the engine pauses)
  { name: 'seed disk full: fails at once and keeps the partial', failure: transfer(err('CIDGET_ERR_DISK_FULL'), MiB), state: file({ offset: 2 * MiB }), want: { action: 'fail', errorCode: 'CIDGET_ERR_DISK_FULL', remove: false, restart: false, resumes: 0 } },
  // Range not supported (HTTP 416): restart from 0
  { name: 'seed 416: restart from 0 on the same gateway', failure: transfer(err('CIDGET_ERR_RANGE_NOT_SATISFIABLE')), state: file({ offset: 2 * MiB }), want: { action: 'restart', next: 'same', restart: true, delayMs: 0, gateway: 'keep', failStreak: 0, resumes: 0 } },

  // --- what path mode does besides --------------------------------------------------------------
  { name: 'a timeout mid-body under the threshold restarts and backs off on the same gateway', failure: transfer(err('CIDGET_ERR_TIMEOUT'), MiB), state: file({ offset: 2 * MiB, gateway: { timeouts: 1, live: true, alive: 3 } }), want: { action: 'restart', next: 'same', restart: true, delayMs: 1000, resumes: 1 } },
  { name: 'a timeout mid-body that spent the gateway restarts on the next', failure: transfer(err('CIDGET_ERR_TIMEOUT'), MiB), state: file({ offset: 2 * MiB, gateway: { timeouts: 3, live: false, alive: 2 } }), want: { action: 'switch', next: 'next', restart: true, gateway: 'drop' } },
  { name: '404 drops the gateway', failure: transfer(err('CIDGET_ERR_NOT_FOUND', { status: 404 })), state: file(), want: { action: 'switch', gateway: 'drop', delayMs: 0 } },
  { name: '410 drops the gateway', failure: transfer(err('CIDGET_ERR_NOT_FOUND', { status: 410 })), state: file(), want: { action: 'switch', gateway: 'drop' } },
  { name: 'another 4xx drops the gateway', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 403 })), state: file(), want: { action: 'switch', gateway: 'drop', blockMs: undefined } },
  { name: '408 is worth asking again', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 408 })), state: file(), want: { action: 'switch', gateway: 'keep' } },
  { name: '500 without Retry-After: next gateway, not blocked', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 500 })), state: file(), want: { action: 'switch', gateway: 'keep', blockMs: undefined } },
  { name: 'a network error mid-body resumes on the next gateway', failure: transfer(err('CIDGET_ERR_NETWORK'), MiB), state: file({ offset: 6 * MiB, failStreak: 4 }), want: { action: 'resume', next: 'next', restart: false, resumes: 1, failStreak: 1, delayMs: 0 } },
  { name: 'a body of unknown size cut off is resumed', failure: transfer(err('CIDGET_ERR_STREAM_RESET'), MiB), state: file({ offset: MiB, size: null }), want: { action: 'resume', restart: false } },
  { name: 'a reset before any byte resumes at 0 and uses a resume', failure: transfer(err('CIDGET_ERR_STREAM_RESET')), state: file(), want: { action: 'switch', restart: false, resumes: 1 } },
  { name: 'a resume past the budget fails with the last error as cause', failure: transfer(err('CIDGET_ERR_NETWORK'), 1), state: file({ offset: 9 * MiB, resumes: 1 }), policy: { maxResumeAttempts: 1 }, want: { action: 'fail', errorCode: 'CIDGET_ERR_ATTEMPTS_EXHAUSTED' } },
  { name: 'a length mismatch restarts from 0 on the next gateway', failure: transfer(err('CIDGET_ERR_LENGTH_MISMATCH'), MiB), state: file({ offset: 9 * MiB }), want: { action: 'restart', next: 'next', restart: true, delayMs: 0, resumes: 1 } },
  { name: 'a length mismatch that spent the gateway drops it', failure: transfer(err('CIDGET_ERR_LENGTH_MISMATCH')), state: file({ gateway: { timeouts: 0, live: false, alive: 0 } }), want: { action: 'restart', gateway: 'drop' } },
  { name: 'a range mismatch moves on without a restart', failure: transfer(err('CIDGET_ERR_RANGE_MISMATCH')), state: file({ offset: MiB }), want: { action: 'switch', restart: false } },
  { name: 'a 200 to a Range request restarts with that answer', failure: transfer(err('CIDGET_ERR_RANGE_IGNORED')), state: file({ offset: 2 * MiB }), want: { action: 'restart', next: 'same', restart: true, gateway: 'keep' } },
  { name: 'a size the CID check refuses counts as corrupt data', failure: verify(err('CIDGET_ERR_LENGTH_MISMATCH')), state: file(), want: { action: 'restart', restart: true, corruptions: 1, next: 'next' } },
  { name: 'a hash mismatch of bytes the CID vouches for fails at once', failure: verify(err('CIDGET_ERR_HASH_MISMATCH'), true), state: file(), want: { action: 'fail', errorCode: 'CIDGET_ERR_HASH_MISMATCH', remove: true, restart: false, corruptions: 0 } },
  { name: 'a failure checking against the CID fails at once', failure: verify(err('CIDGET_ERR_NETWORK')), state: file(), want: { action: 'fail', errorCode: 'CIDGET_ERR_NETWORK', restart: false, remove: false, corruptions: 0 } },
  { name: 'a file-system error fails at once', failure: transfer(err('CIDGET_ERR_FS')), state: file(), want: { action: 'fail', errorCode: 'CIDGET_ERR_FS' } },
  { name: 'bad input fails at once', failure: transfer(err('CIDGET_ERR_BAD_OPTION')), state: file(), want: { action: 'fail', errorCode: 'CIDGET_ERR_BAD_OPTION' } },
  { name: 'a state error fails at once', failure: transfer(err('CIDGET_ERR_STATE_UNAVAILABLE')), state: file(), want: { action: 'fail', errorCode: 'CIDGET_ERR_STATE_UNAVAILABLE' } },
  { name: 'a pause fails at once', failure: transfer(err('CIDGET_ERR_PAUSED'), MiB), state: file(), want: { action: 'fail', errorCode: 'CIDGET_ERR_PAUSED', resumes: 0 } },
  { name: 'a cancel fails at once', failure: transfer(err('CIDGET_ERR_CANCELLED')), state: file(), want: { action: 'fail', errorCode: 'CIDGET_ERR_CANCELLED' } },

  // --- a block of a verified download ----------------------------------------------------------
  { name: 'block: an invalid block drops the gateway', failure: transfer(err('CIDGET_ERR_BLOCK_INVALID')), state: block(), want: { action: 'switch', gateway: 'drop', blockMs: undefined } },
  { name: 'block: an oversized block drops the gateway', failure: transfer(err('CIDGET_ERR_BLOCK_TOO_LARGE')), state: block(), want: { action: 'switch', gateway: 'drop' } },
  { name: 'block: 404 skips the gateway for this block only', failure: transfer(err('CIDGET_ERR_NOT_FOUND', { status: 404 })), state: block(), want: { action: 'switch', gateway: 'skip', blockMs: undefined } },
  { name: 'block: a timeout blocks the gateway for a backoff on its streak', failure: transfer(err('CIDGET_ERR_TIMEOUT')), state: block({ gateway: { streak: 3 } }), want: { action: 'switch', gateway: 'keep', blockMs: 4000 } },
  { name: 'block: 429 blocks it for the Retry-After, capped', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 429, retryAfterMs: 120_000 })), state: block(), want: { blockMs: 60_000 } },
  { name: 'block: Retry-After 0 falls back to the backoff', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 503, retryAfterMs: 0 })), state: block({ gateway: { streak: 2 } }), want: { blockMs: 2000 } },
  { name: 'block: a malformed DAG fails at once, the gateway kept', failure: transfer(err('CIDGET_ERR_DAG_INVALID')), state: block(), want: { action: 'fail', gateway: 'keep', errorCode: 'CIDGET_ERR_DAG_INVALID' } },
  { name: 'block: the attempts spent give the block up', failure: transfer(err('CIDGET_ERR_NETWORK')), state: block({ attempts: 8 }), policy: { maxAttemptsPerBlock: 9 }, want: { action: 'fail', errorCode: 'CIDGET_ERR_BLOCK_UNAVAILABLE' } },
  { name: 'block: attempts left, another gateway', failure: transfer(err('CIDGET_ERR_NETWORK')), state: block({ attempts: 7 }), policy: { maxAttemptsPerBlock: 9 }, want: { action: 'switch' } },
  // what the pool does with each failure of a block, a CAR run or the entity stream
  { name: 'block: 410 skips the gateway for this block only', failure: transfer(err('CIDGET_ERR_NOT_FOUND', { status: 410 })), state: block(), want: { action: 'switch', gateway: 'skip', blockMs: undefined, told: false } },
  { name: 'block: another 4xx sets the gateway aside (path mode drops it)', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 403 })), state: block(), want: { action: 'switch', gateway: 'keep', blockMs: 1000, told: false } },
  { name: 'block: a 5xx without Retry-After backs off on the streak', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 502 })), state: block({ gateway: { streak: 2 } }), want: { action: 'switch', gateway: 'keep', blockMs: 2000, told: false } },
  { name: 'block: 503 with Retry-After is set aside as told', failure: transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 503, retryAfterMs: 5000 })), state: block({ gateway: { streak: 4 } }), want: { blockMs: 5000, told: true } },
  { name: 'block: a reset backs off', failure: transfer(err('CIDGET_ERR_STREAM_RESET')), state: block(), want: { action: 'switch', gateway: 'keep', blockMs: 1000 } },
  { name: 'block: the backoff is capped', failure: transfer(err('CIDGET_ERR_TIMEOUT')), state: block({ gateway: { streak: 20 } }), want: { blockMs: 30_000 } },
  { name: 'block: the budget defaults to maxRetryAttempts', failure: transfer(err('CIDGET_ERR_NETWORK')), state: block({ attempts: 2 }), want: { action: 'fail', errorCode: 'CIDGET_ERR_BLOCK_UNAVAILABLE' } },
  { name: 'block: the last attempt still sets its gateway aside', failure: transfer(err('CIDGET_ERR_TIMEOUT')), state: block({ attempts: 8 }), policy: { maxAttemptsPerBlock: 9 }, want: { action: 'fail', gateway: 'keep', blockMs: 1000, errorCode: 'CIDGET_ERR_BLOCK_UNAVAILABLE' } },
  { name: 'block: the last attempt still drops a gateway that sent an invalid block', failure: transfer(err('CIDGET_ERR_BLOCK_INVALID')), state: block({ attempts: 8 }), policy: { maxAttemptsPerBlock: 9 }, want: { action: 'fail', gateway: 'drop', errorCode: 'CIDGET_ERR_BLOCK_UNAVAILABLE' } },
  { name: 'block: a malformed DAG fails at once on the first attempt, with itself', failure: transfer(err('CIDGET_ERR_DAG_INVALID')), state: block({ attempts: 0 }), want: { action: 'fail', blockMs: undefined, errorCode: 'CIDGET_ERR_DAG_INVALID' } }
]

describe('decideRetry', () => {
  it.each(rows)('$name', ({ failure, state, policy: over, want }) => {
    const d = decideRetry(failure, state, { ...policy, ...over })
    const { errorCode, ...fields } = want
    expect(d).toMatchObject(fields)
    if (errorCode !== undefined) expect(d.error?.code).toBe(errorCode)
    if (d.action === 'fail') expect(d.error).toBeInstanceOf(CidgetError)
    else expect(d.error).toBeUndefined()
  })

  it('gives up with a message naming the budget and the last error', () => {
    const last = err('CIDGET_ERR_STREAM_RESET')
    const d = decideRetry(transfer(last, 1), file({ offset: 9 * MiB, resumes: 3 }), policy)
    expect(d.error?.message).toBe('Gave up after 3 resume attempts; last error: CIDGET_ERR_STREAM_RESET')
    expect(d.error?.cause).toBe(last)
    const c = decideRetry(verify(err('CIDGET_ERR_HASH_MISMATCH')), file({ corruptions: 2 }), policy)
    expect(c.error?.message).toBe('CIDGET_ERR_HASH_MISMATCH; gave up after 2 gateway switches')
    expect(c.error?.gateway).toBe('https://a.example')
  })

  it('gives a block up naming its attempts and the last error, the cause', () => {
    const last = err('CIDGET_ERR_TIMEOUT')
    const d = decideRetry(transfer(last), block({ attempts: 2 }), { ...policy, maxAttemptsPerBlock: 3 })
    expect(d.error?.message).toBe('No gateway delivered block bafyblock in 3 attempts (last error: CIDGET_ERR_TIMEOUT)')
    expect(d.error?.cause).toBe(last)
    const dag = err('CIDGET_ERR_DAG_INVALID')
    expect(decideRetry(transfer(dag), block(), policy).error).toBe(dag)
  })

  it('does not change its inputs', () => {
    const state = file({ offset: 6 * MiB })
    const copy = structuredClone(state)
    decideRetry(transfer(err('CIDGET_ERR_STREAM_RESET'), MiB), state, policy)
    expect(state).toEqual(copy)
  })
})

describe('blame', () => {
  const cases: Array<[string, RetryFailure, ReturnType<typeof blame>]> = [
    ['timeout', transfer(err('CIDGET_ERR_TIMEOUT')), 'timeout'],
    ['network', transfer(err('CIDGET_ERR_NETWORK')), 'error'],
    ['stream reset', transfer(err('CIDGET_ERR_STREAM_RESET'), 5), 'error'],
    ['5xx', transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 502 })), 'error'],
    ['429', transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 429, retryAfterMs: 1000 })), 'error'],
    ['length mismatch', transfer(err('CIDGET_ERR_LENGTH_MISMATCH')), 'error'],
    ['hash mismatch', verify(err('CIDGET_ERR_HASH_MISMATCH')), 'error'],
    ['a failure checking against the CID', verify(err('CIDGET_ERR_NETWORK')), 'none'],
    ['a DAG the CID check refuses', verify(err('CIDGET_ERR_DAG_INVALID')), 'none'],
    ['a size the DAG refuses, found by the CID check', verify(err('CIDGET_ERR_LENGTH_MISMATCH')), 'error'],
    ['404', transfer(err('CIDGET_ERR_NOT_FOUND', { status: 404 })), 'missing'],
    ['403', transfer(err('CIDGET_ERR_HTTP_STATUS', { status: 403 })), 'missing'],
    ['invalid block', transfer(err('CIDGET_ERR_BLOCK_INVALID')), 'invalid'],
    ['oversized block', transfer(err('CIDGET_ERR_BLOCK_TOO_LARGE')), 'invalid'],
    ['malformed DAG', transfer(err('CIDGET_ERR_DAG_INVALID')), 'none'],
    ['200 to a Range', transfer(err('CIDGET_ERR_RANGE_IGNORED')), 'none'],
    ['416', transfer(err('CIDGET_ERR_RANGE_NOT_SATISFIABLE')), 'none'],
    ['hash mismatch of bytes the CID vouches for', verify(err('CIDGET_ERR_HASH_MISMATCH'), true), 'none'],
    ['disk full', transfer(err('CIDGET_ERR_DISK_FULL')), 'none'],
    ['pause', transfer(err('CIDGET_ERR_PAUSED')), 'none']
  ]
  it.each(cases)('%s', (_name, failure, want) => {
    expect(blame(failure)).toBe(want)
  })
})
