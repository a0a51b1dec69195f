/**
 * Properties of the HTTP header parsers (Content-Range, Content-Length, ETag,
 * Retry-After): generated valid values parse to what was written; anything else
 * gives the documented `undefined` (or `false`), never an exception, and a
 * Content-Range that is accepted is always consistent.
 */
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { parseContentRange, parseUnsatisfiedRange, parseContentLength, isStrongEtag, type ContentRange } from '../../src/gateways/headers.js'
import { parseRetryAfter } from '../../src/core/retry.js'
import { DEFAULTS } from '../../src/core/defaults.js'
import { params, edits, applyEdits, anyString } from './fc.js'

const SAFE = Number.MAX_SAFE_INTEGER
/** Byte positions: small ones, and ones near the largest safe integer. */
const position = fc.oneof(fc.nat(1 << 20), fc.nat(), fc.integer({ min: 0, max: SAFE }), fc.integer({ min: SAFE - 1000, max: SAFE }))
/** Optional whitespace (OWS) around a header value. */
const ows = fc.constantFrom('', ' ', '  ', '\t', ' \t ')
const bytesUnit = fc.constantFrom('bytes', 'Bytes', 'BYTES')
const space = fc.constantFrom(' ', '  ', '\t')

/** A consistent range: start ≤ end, and end < total when the total is known. */
const consistent: fc.Arbitrary<ContentRange> = fc.tuple(position, position, fc.option(position, { nil: undefined }))
  .filter(([a, b, t]) => t === undefined || Math.max(a, b) < t)
  .map(([a, b, t]) => ({ start: Math.min(a, b), end: Math.max(a, b), total: t }))

function contentRange (r: { start: number, end: number, total: number | undefined }, unit = 'bytes', sp = ' ', before = '', after = ''): string {
  return `${before}${unit}${sp}${r.start}-${r.end}/${r.total === undefined ? '*' : r.total}${after}`
}

/** What an accepted Content-Range always satisfies. */
function checkRange (r: ContentRange): void {
  for (const n of [r.start, r.end, ...(r.total === undefined ? [] : [r.total])]) {
    expect(Number.isSafeInteger(n) && n >= 0).toBe(true)
  }
  expect(r.start).toBeLessThanOrEqual(r.end)
  if (r.total !== undefined) expect(r.end).toBeLessThan(r.total)
}

/** Header-ish noise: the characters the parsers look at, and any others. */
const headerText = fc.oneof(
  anyString(30),
  fc.array(fc.oneof(
    fc.constantFrom('bytes', ' ', '-', '/', '*', '"', 'W/', ',', '=', '0', '9', '+', '.', 'e', 'GMT', 'Thu, ', ':', '\t', '\r\n'),
    fc.nat().map(String),
    fc.string({ maxLength: 3 })
  ), { maxLength: 10 }).map(ps => ps.join(''))
)
const mutationText = fc.oneof(fc.string({ maxLength: 3 }), fc.constantFrom('-', '/', '*', ' ', '0', '9', '99999999999999999', '"', 'W/', '\u00a0'))

describe('Content-Range (properties)', () => {
  it('a consistent range parses to its values, whatever the case of the unit and the whitespace', () => {
    fc.assert(fc.property(consistent, bytesUnit, space, ows, ows, (r, unit, sp, before, after) => {
      expect(parseContentRange(contentRange(r, unit, sp, before, after))).toEqual(r)
    }), params(5))
  })

  it('an inconsistent range (end before start, end at or past the total) is never accepted', () => {
    const triple = fc.tuple(position, position, position)
    fc.assert(fc.property(triple, ([start, end, total]) => {
      const parsed = parseContentRange(contentRange({ start, end, total }))
      if (end < start || end >= total) expect(parsed).toBeUndefined()
      else expect(parsed).toEqual({ start, end, total })
      const open = parseContentRange(contentRange({ start, end, total: undefined }))
      if (end < start) expect(open).toBeUndefined()
      else expect(open).toEqual({ start, end, total: undefined })
    }), params(5))
  })

  it('numbers past the largest safe integer are refused, not rounded', () => {
    const big = fc.bigInt({ min: BigInt(SAFE) + 1n, max: 10n ** 16n - 1n })
    fc.assert(fc.property(big, position, (b, n) => {
      expect(parseContentRange(`bytes ${n}-${b}/*`)).toBeUndefined()
      expect(parseContentRange(`bytes 0-${n}/${b}`)).toBeUndefined()
      expect(parseUnsatisfiedRange(`bytes */${b}`)).toBeUndefined()
      expect(parseContentLength(String(b))).toBeUndefined()
    }), params(2))
  })

  it('any string or mutated value gives undefined or a consistent range, never an exception', () => {
    const mutated = fc.tuple(consistent, edits(mutationText)).map(([r, e]) => applyEdits(contentRange(r), e))
    fc.assert(fc.property(fc.oneof(headerText, mutated), v => {
      const r = parseContentRange(v)
      if (r !== undefined) {
        checkRange(r)
        // what was accepted reads back the same once written canonically
        expect(parseContentRange(contentRange(r))).toEqual(r)
      }
    }), params(10))
  })

  it('unsatisfied range: bytes */TOTAL gives TOTAL; anything else undefined or a safe integer', () => {
    fc.assert(fc.property(position, bytesUnit, space, ows, ows, (total, unit, sp, before, after) => {
      expect(parseUnsatisfiedRange(`${before}${unit}${sp}*/${total}${after}`)).toBe(total)
    }), params(3))
    const mutated = position.chain(t => edits(mutationText).map(e => applyEdits(`bytes */${t}`, e)))
    fc.assert(fc.property(fc.oneof(headerText, mutated), v => {
      const t = parseUnsatisfiedRange(v)
      if (t !== undefined) expect(Number.isSafeInteger(t) && t >= 0).toBe(true)
    }), params(5))
  })
})

describe('Content-Length (properties)', () => {
  it('a length parses to its value; anything else is undefined or the digits it holds', () => {
    fc.assert(fc.property(position, ows, ows, (n, before, after) => {
      expect(parseContentLength(`${before}${n}${after}`)).toBe(n)
    }), params(3))
    const mutated = position.chain(n => edits(mutationText).map(e => applyEdits(String(n), e)))
    fc.assert(fc.property(fc.oneof(headerText, mutated), v => {
      const n = parseContentLength(v)
      if (n === undefined) return
      expect(Number.isSafeInteger(n) && n >= 0).toBe(true)
      // only digits (and surrounding blanks) are ever read as a length
      expect(v.trim()).toMatch(/^\d+$/)
      expect(BigInt(v.trim())).toBe(BigInt(n))
    }), params(5))
    expect(parseContentLength(undefined)).toBeUndefined()
  })
})

/** etagc (RFC 9110 §8.8.3): any visible ASCII but DQUOTE, and obs-text. */
const etagc = fc.oneof(
  fc.integer({ min: 0x21, max: 0x7e }).filter(c => c !== 0x22),
  fc.integer({ min: 0x80, max: 0xff })
).map(c => String.fromCharCode(c))
const opaqueTag = fc.string({ unit: etagc, maxLength: 40 }).map(s => `"${s}"`)

describe('ETag (properties)', () => {
  it('every strong entity-tag is strong; its weak form is not', () => {
    fc.assert(fc.property(opaqueTag, ows, ows, (tag, before, after) => {
      expect(isStrongEtag(tag)).toBe(true)
      expect(isStrongEtag(`${before}${tag}${after}`)).toBe(true)
      expect(isStrongEtag(`W/${tag}`)).toBe(false)
    }), params(3))
  })

  it('a value accepted as strong is one quoted string, never a weak or a list of tags', () => {
    const mutated = fc.tuple(opaqueTag, edits(fc.oneof(etagc, fc.constantFrom('"', 'W/', 'w/', ' ', ', ', '\0', '😀')))).map(([t, e]) => applyEdits(t, e))
    const list = fc.array(fc.oneof(opaqueTag, opaqueTag.map(t => `W/${t}`)), { minLength: 2, maxLength: 4 }).map(ts => ts.join(', '))
    fc.assert(fc.property(fc.oneof(headerText, mutated, list), v => {
      if (!isStrongEtag(v)) return
      // lenient inside the quotes (a gateway's own validator is sent back as it came), strict around them
      const t = v.trim()
      expect(t.length).toBeGreaterThanOrEqual(2)
      expect(t.startsWith('"') && t.endsWith('"')).toBe(true)
      expect(t.slice(1, -1).includes('"')).toBe(false)
    }), params(10))
  })
})

/** A clock in 1970–2100. */
const now = fc.integer({ min: 0, max: Date.UTC(2100, 0) })
const cap = fc.oneof(fc.constant(DEFAULTS.MAX_RETRY_AFTER_MS), fc.nat(), fc.nat(1000))

describe('Retry-After (properties)', () => {
  it('delta-seconds: seconds × 1000, capped', () => {
    const seconds = fc.oneof(fc.nat(10_000), fc.nat(), fc.integer({ min: 0, max: SAFE }))
    fc.assert(fc.property(seconds, ows, ows, now, cap, (s, before, after, t, max) => {
      expect(parseRetryAfter(`${before}${s}${after}`, t, max)).toBe(Math.min(max, s * 1000))
    }), params(3))
  })

  it('delta-seconds too long for a number still give the cap', () => {
    fc.assert(fc.property(fc.stringMatching(/^[1-9]\d{16,400}$/), now, cap, (digits, t, max) => {
      expect(parseRetryAfter(digits, t, max)).toBe(max)
    }), params(1))
  })

  it('an HTTP-date: the time until it (whole seconds), 0 when past, capped', () => {
    const date = fc.integer({ min: Date.UTC(1970, 0), max: Date.UTC(2100, 0) }).map(ms => Math.floor(ms / 1000) * 1000)
    fc.assert(fc.property(date, now, cap, (at, t, max) => {
      const header = new Date(at).toUTCString() // IMF-fixdate: "Thu, 01 Jan 2026 00:00:05 GMT"
      expect(parseRetryAfter(header, t, max)).toBe(Math.max(0, Math.min(max, at - t)))
    }), params(3))
  })

  it('any value gives undefined or a wait in [0, cap], never an exception', () => {
    const dates = fc.integer({ min: -8.64e15, max: 8.64e15 }).map(ms => new Date(ms).toUTCString())
    const mutated = fc.tuple(fc.oneof(dates, fc.nat().map(String)), edits(fc.oneof(mutationText, fc.constantFrom('Mon', 'GMT', ',', ':', '+0100', 'Z')))).map(([v, e]) => applyEdits(v, e))
    fc.assert(fc.property(fc.oneof(headerText, mutated, dates), fc.oneof(now, fc.integer()), cap, (v, t, max) => {
      const ms = parseRetryAfter(v, t, max)
      if (ms === undefined) return
      expect(Number.isFinite(ms)).toBe(true)
      expect(ms).toBeGreaterThanOrEqual(0)
      expect(ms).toBeLessThanOrEqual(max)
    }), params(10))
    expect(parseRetryAfter(null)).toBeUndefined()
    expect(parseRetryAfter(undefined)).toBeUndefined()
  })
})
