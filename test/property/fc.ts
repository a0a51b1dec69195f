/**
 * Shared settings for the property tests.
 *
 * - `CIDGET_FC_SEED`: the seed every property starts from (default a fixed number, so a run is
 *   reproducible; `random` picks a new one). fast-check prints the seed and the shrunk
 *   counterexample of a failing property.
 * - `CIDGET_FC_RUNS`: runs of a property of weight 1 (default 100); heavier properties scale it
 *   down with their weight, cheap ones up.
 *
 * `CIDGET_FC_RUNS=5000 CIDGET_FC_SEED=random npx vitest run test/property` explores further.
 */
import fc from 'fast-check'
import { expect } from 'vitest'
import { CidgetError, ERROR_CODES, type ErrorCode } from '../../src/core/errors.js'

const DEFAULT_SEED = 20260101
const DEFAULT_RUNS = 100

function envInt (name: string, fallback: number): number {
  const raw = process.env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got "${raw}"`)
  return n
}

function seedFromEnv (): number {
  const raw = process.env.CIDGET_FC_SEED?.trim()
  if (raw === 'random') {
    const seed = (Date.now() ^ (Math.random() * 0x100000000)) | 0
    console.log(`CIDGET_FC_SEED=${seed}`)
    return seed
  }
  return envInt('CIDGET_FC_SEED', DEFAULT_SEED)
}

export const SEED = seedFromEnv()
export const RUNS = Math.max(1, envInt('CIDGET_FC_RUNS', DEFAULT_RUNS))

/**
 * Parameters for `fc.assert`: the shared seed, and `RUNS × weight` runs (at least 1).
 * `timeoutMs` bounds each run of an async property.
 */
export function params<T> (weight = 1, timeoutMs?: number): fc.Parameters<T> {
  return {
    seed: SEED,
    numRuns: Math.max(1, Math.round(RUNS * weight)),
    ...(timeoutMs === undefined ? {} : { timeout: timeoutMs })
  }
}

/** The error is a CidgetError with a registered code (one of `codes` when given). */
export function expectCoded (err: unknown, codes?: readonly ErrorCode[]): asserts err is CidgetError {
  if (!(err instanceof CidgetError)) {
    throw new Error(`expected a CidgetError, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`, { cause: err })
  }
  expect(Object.keys(ERROR_CODES)).toContain(err.code)
  if (codes !== undefined) expect(codes, err.message).toContain(err.code)
}

/**
 * The error is a CidgetError chosen on purpose: not the catch-all that
 * `toCidgetError` makes of an unexpected exception (`CIDGET_ERR_STATE`,
 * "Unexpected error: …"), which would hide a TypeError or RangeError.
 */
export function expectDeliberate (err: unknown, codes?: readonly ErrorCode[]): asserts err is CidgetError {
  expectCoded(err, codes)
  if (err.code === 'CIDGET_ERR_STATE' && err.message.startsWith('Unexpected error')) {
    throw new Error(`an unexpected exception was wrapped: ${err.message}`, { cause: err })
  }
}

/** Runs `fn`: its value, or the error it threw. */
export function attempt<T> (fn: () => T): { ok: true, value: T } | { ok: false, error: unknown } {
  try {
    return { ok: true, value: fn() }
  } catch (error) {
    return { ok: false, error }
  }
}

/** Awaits `fn()`: its value, or the error it rejected with; a run longer than `ms` fails. */
export async function settleWithin<T> (ms: number, fn: () => Promise<T>): Promise<{ ok: true, value: T } | { ok: false, error: unknown }> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`no answer within ${ms} ms`)) }, ms)
  })
  const run = fn().then(value => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }))
  try {
    return await Promise.race([run, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** One edit of a string or byte array; positions are taken modulo the length. */
export type Edit =
  | { op: 'insert', at: number, text: string }
  | { op: 'delete', at: number, length: number }
  | { op: 'replace', at: number, text: string }
  | { op: 'duplicate', at: number, length: number }
  | { op: 'truncate', at: number }

/** Edits whose inserted text comes from `text` (by default any short string). */
export function edits (text: fc.Arbitrary<string> = fc.string({ maxLength: 4 }), maxEdits = 4): fc.Arbitrary<Edit[]> {
  const at = fc.nat()
  const length = fc.integer({ min: 1, max: 16 })
  const edit: fc.Arbitrary<Edit> = fc.oneof(
    fc.record({ op: fc.constant('insert' as const), at, text }),
    fc.record({ op: fc.constant('delete' as const), at, length }),
    fc.record({ op: fc.constant('replace' as const), at, text }),
    fc.record({ op: fc.constant('duplicate' as const), at, length }),
    fc.record({ op: fc.constant('truncate' as const), at })
  )
  return fc.array(edit, { minLength: 1, maxLength: maxEdits })
}

/** Applies `list` to `s`. */
export function applyEdits (s: string, list: Edit[]): string {
  let out = s
  for (const e of list) {
    const at = e.at % (out.length + 1)
    switch (e.op) {
      case 'insert': out = out.slice(0, at) + e.text + out.slice(at); break
      case 'delete': out = out.slice(0, at) + out.slice(at + e.length); break
      case 'replace': out = out.slice(0, at) + e.text + out.slice(at + e.text.length); break
      case 'duplicate': out = out.slice(0, at + e.length) + out.slice(at); break
      case 'truncate': out = out.slice(0, at); break
    }
  }
  return out
}

/** Any code point, lone surrogates included (which `unit: 'binary'` leaves out). */
export const anyCodePoint: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: 0, max: 0x7f }).map(c => String.fromCharCode(c)),
  fc.integer({ min: 0, max: 0x10ffff }).map(c => String.fromCodePoint(c))
)

/** Strings of any code points, with ASCII made common. */
export function anyString (maxLength = 40): fc.Arbitrary<string> {
  return fc.string({ unit: anyCodePoint, maxLength })
}
