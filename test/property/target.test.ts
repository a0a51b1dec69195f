/**
 * Properties of target parsing: generated targets in every accepted form parse
 * back to their CID, path and gateway; anything else is refused with
 * CIDGET_ERR_BAD_TARGET, never another exception, and quickly.
 */
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import { bases } from 'multiformats/basics'
import { create as createDigest } from 'multiformats/hashes/digest'
import { parseTarget, gatewayUrl, normalizeGateway, defaultName, type Target } from '../../src/target/index.js'
import { params, attempt, expectCoded, edits, applyEdits, anyString } from './fc.js'

type Base = (typeof bases)[keyof typeof bases]

/** Bases whose alphabet is safe in a path and in a URL (no '/', '?', '#', '%'). */
const URL_BASES: Base[] = [
  bases.base2, bases.base8, bases.base10, bases.base16, bases.base16upper,
  bases.base32, bases.base32upper, bases.base32pad, bases.base32padupper, bases.base32hex, bases.base32hexupper,
  bases.base32hexpad, bases.base32hexpadupper, bases.base32z, bases.base36, bases.base36upper,
  bases.base58btc, bases.base58flickr, bases.base64url, bases.base64urlpad
]
/** Bases usable outside a URL too (an emoji base: the target is not a URL there). */
const TEXT_BASES: Base[] = [...URL_BASES, bases.base256emoji]

const HASHES = [
  { code: 0x12, length: 32 }, // sha2-256
  { code: 0x13, length: 64 }, // sha2-512
  { code: 0x11, length: 20 }, // sha1
  { code: 0xb220, length: 32 }, // blake2b-256: parsing does not care whether cidget can verify it
  { code: 0x00, length: -1 } // identity: any length
]
const CODECS = [0x55, 0x70, 0x71, 0x0129, 0x72]

const cidV0 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(d => CID.create(0, 0x70, createDigest(0x12, d)))
const cidV1 = fc.tuple(fc.constantFrom(...CODECS), fc.constantFrom(...HASHES), fc.uint8Array({ maxLength: 64 }))
  .map(([codec, hash, bytes]) => {
    const digest = hash.length === -1 ? bytes.subarray(0, 40) : Uint8Array.from({ length: hash.length }, (_, i) => bytes[i] ?? i)
    return CID.create(1, codec, createDigest(hash.code, digest))
  })
const anyCid: fc.Arbitrary<CID> = fc.oneof(cidV0, cidV1)

/** A CID and one way to write it. */
function writtenCid (choices: Base[]): fc.Arbitrary<{ cid: CID, text: string }> {
  return fc.oneof(
    cidV0.map(cid => ({ cid, text: cid.toString() })),
    fc.tuple(cidV1, fc.constantFrom(...choices)).map(([cid, base]) => ({ cid, text: cid.toString(base.encoder) }))
  )
}

/** A path segment a target may name: not '', '.' or '..', no separator, NUL or other control character. */
const segment = fc.string({ unit: 'binary', minLength: 1, maxLength: 12 })
  // eslint-disable-next-line no-control-regex -- control characters are what a target may not name
  .filter(s => s !== '.' && s !== '..' && !/[/\\\u0000-\u001f\u007f-\u009f]/.test(s))
const segments = fc.array(segment, { maxLength: 5 })

const PCHAR = /^[A-Za-z0-9._~!$&'()*+,;=:@-]+$/
/** Writes a segment percent-encoded, or as it is where that is unambiguous (`url`: inside a URL). */
function writeSegment (s: string, raw: boolean, url: boolean): string {
  if (!raw) return encodeURIComponent(s)
  if (url) return PCHAR.test(s) ? s : encodeURIComponent(s)
  return /[%?#\s]/u.test(s) ? encodeURIComponent(s) : s
}

interface Written {
  /** The segments as the path inside the target, with optional empty segments and a trailing slash. */
  text: string
  path: string
}
function writtenPath (url: boolean): fc.Arbitrary<Written> {
  return fc.tuple(segments, fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }), fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }))
    .map(([segs, raw, doubled]) => ({
      text: segs.map((s, i) => (doubled[i] === true ? '//' : '/') + writeSegment(s, raw[i] ?? false, url)).join('') + (doubled[5] === true ? '/' : ''),
      path: segs.length === 0 ? '' : '/' + segs.join('/')
    }))
}

/** Nothing, a query or a fragment: never part of the path. */
const suffix = fc.oneof(fc.constant(''), fc.string({ maxLength: 8 }).map(s => '?' + s), fc.string({ maxLength: 8 }).map(s => '#' + s))
/** Blanks around the target, which are ignored. */
const blank = fc.constantFrom('', ' ', '\t', '\n ')

const label = fc.stringMatching(/^[a-z]([a-z0-9-]{0,8}[a-z0-9])?$/).filter(l => !l.startsWith('xn--') && l !== 'ipfs')
const host = fc.oneof(
  fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.stringMatching(/^[a-z]{2,6}$/)).map(([ls, tld]) => [...ls, tld].join('.')),
  fc.ipV4(),
  fc.constantFrom('localhost', '[::1]')
)
const scheme = fc.constantFrom('http', 'https', 'HTTPS', 'Http')
const port = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined })
/** Path prefix of a gateway (before /ipfs/): segments other than 'ipfs'. */
const prefix = fc.array(fc.stringMatching(/^[a-z0-9_-]{1,8}$/).filter(s => s !== 'ipfs'), { maxLength: 2 }).map(ps => ps.map(p => '/' + p).join(''))

function origin (s: string, h: string, p: number | undefined): string {
  const lower = s.toLowerCase()
  const implicit = (lower === 'http' && p === 80) || (lower === 'https' && p === 443)
  return `${lower}://${h}${p === undefined || implicit ? '' : `:${p}`}`
}

interface Case {
  input: string
  cid: string
  path: string
  gateway: string | undefined
}

const bareCase: fc.Arbitrary<Case> = fc.tuple(writtenCid(TEXT_BASES), writtenPath(false), suffix, blank, blank)
  .map(([c, p, q, b1, b2]) => ({ input: `${b1}${c.text}${p.text}${q}${b2}`, cid: c.cid.toString(), path: p.path, gateway: undefined }))
const ipfsPathCase: fc.Arbitrary<Case> = fc.tuple(writtenCid(TEXT_BASES), writtenPath(false), suffix)
  .map(([c, p, q]) => ({ input: `/ipfs/${c.text}${p.text}${q}`, cid: c.cid.toString(), path: p.path, gateway: undefined }))
const ipfsUrlCase: fc.Arbitrary<Case> = fc.tuple(writtenCid(TEXT_BASES), writtenPath(false), suffix, fc.constantFrom('ipfs', 'IPFS', 'Ipfs'))
  .map(([c, p, q, s]) => ({ input: `${s}://${c.text}${p.text}${q}`, cid: c.cid.toString(), path: p.path, gateway: undefined }))
const pathGatewayCase: fc.Arbitrary<Case> = fc.tuple(scheme, host, port, prefix, writtenCid(URL_BASES), writtenPath(true), suffix)
  .map(([s, h, p, pre, c, path, q]) => ({
    input: `${origin(s, h, p)}${pre}/ipfs/${c.text}${path.text}${q}`,
    cid: c.cid.toString(),
    path: path.path,
    gateway: origin(s, h, p) + pre
  }))
/** Subdomain gateways carry a case-insensitive (base32 or base36) CIDv1 in the host name. */
const subdomainCase: fc.Arbitrary<Case> = fc.tuple(scheme, host.filter(h => !h.startsWith('[') && !/^\d/.test(h)), port, cidV1, fc.constantFrom(bases.base32, bases.base36), writtenPath(true), suffix)
  .filter(([, , , , , path]) => !path.text.includes('/ipfs/'))
  .map(([s, h, p, cid, base, path, q]) => ({
    input: `${origin(s, h, p)}${path.text}${q}`.replace('://', `://${cid.toString(base.encoder)}.ipfs.`),
    cid: cid.toString(),
    path: path.path,
    gateway: origin(s, h, p)
  }))
const anyCase = fc.oneof(bareCase, ipfsPathCase, ipfsUrlCase, pathGatewayCase, subdomainCase)

/** What every successful parse satisfies, whatever the input. */
function checkTarget (t: Target, input: string): void {
  expect(t.input).toBe(input)
  const cid = CID.parse(t.cid)
  expect(cid.toString()).toBe(t.cid)
  expect(t.cid.startsWith(cid.version === 0 ? 'Qm' : 'b')).toBe(true)
  if (t.path !== '') {
    expect(t.path.startsWith('/')).toBe(true)
    for (const s of t.path.slice(1).split('/')) {
      expect(s === '' || s === '.' || s === '..').toBe(false)
      expect(/[\\\0]/.test(s)).toBe(false)
    }
  }
  const name = defaultName(t)
  expect(name).not.toBe('')
  expect(name.includes('/')).toBe(false)
  if (t.gateway !== undefined) expect(t.gateway).toMatch(/^https?:\/\/[^/?#]+(\/[^?#]*)?$/)
}

/** parseTarget either returns a valid target or throws CIDGET_ERR_BAD_TARGET; never anything else, never slowly. */
function parsesOrRefuses (input: string): void {
  const started = performance.now()
  const r = attempt(() => parseTarget(input))
  const ms = performance.now() - started
  expect(ms, `parseTarget took ${ms.toFixed(0)} ms on ${input.length} characters`).toBeLessThan(1_000)
  if (r.ok) checkTarget(r.value, input)
  else expectCoded(r.error, ['CIDGET_ERR_BAD_TARGET'])
}

describe('parseTarget (properties)', () => {
  it('round-trips generated targets of every form: CID, path and gateway', () => {
    fc.assert(fc.property(anyCase, c => {
      const t = parseTarget(c.input)
      expect(t.cid).toBe(c.cid)
      expect(t.path).toBe(c.path)
      expect(t.gateway).toBe(c.gateway)
      checkTarget(t, c.input)
    }), params(5))
  })

  it('gatewayUrl and parseTarget are inverse: same CID, path and gateway', () => {
    const gateway = fc.tuple(scheme, host, port, prefix, fc.constantFrom('', '/', '/ipfs', '/ipfs/'))
      .map(([s, h, p, pre, tail]) => normalizeGateway(`${origin(s, h, p)}${pre}${tail}`))
    fc.assert(fc.property(gateway, anyCid, segments, (gw, cid, segs) => {
      expect(normalizeGateway(gw)).toBe(gw)
      const path = segs.length === 0 ? '' : '/' + segs.join('/')
      const t = parseTarget(gatewayUrl(gw, cid.toString(), path))
      expect(t.cid).toBe(cid.toString())
      expect(t.path).toBe(path)
      expect(t.gateway).toBe(gw)
    }), params(3))
  })

  it('any string parses to a valid target or is refused with CIDGET_ERR_BAD_TARGET', () => {
    const tokens = fc.constantFrom('/ipfs/', 'ipfs://', 'https://', 'http://h/ipfs/', '.ipfs.', '/', '//', '..', '.', '%', '%2e', '%2F', '%00', '%zz', '?', '#', '\\', '\0', ' ', ':', 'Qm', 'bafy', 'z', 'k', '🚀', '/ipns/')
    const arb = fc.oneof(anyString(60), fc.array(fc.oneof(tokens, anyString(6)), { maxLength: 12 }).map(ps => ps.join('')))
    fc.assert(fc.property(arb, parsesOrRefuses), params(10))
  })

  it('mutated valid targets parse to a valid target or are refused with CIDGET_ERR_BAD_TARGET', () => {
    const text = fc.oneof(anyString(3), fc.constantFrom('/', '.', '..', '%', '%2e', '%00', '?', '#', '\\', '\0', ':', '@', '[', '.ipfs.', '/ipfs/'))
    fc.assert(fc.property(anyCase, edits(text), (c, e) => { parsesOrRefuses(applyEdits(c.input, e)) }), params(10))
  })

  it('long inputs are answered quickly', () => {
    const alphabet = fc.constantFrom('z', 'Qm', 'k', 'b', 'f', '9', 'bafy', '/ipfs/', 'https://h/ipfs/', 'ipfs://')
    const filler = fc.constantFrom('2', 'a', 'Z', '0', '/', 'a/', '%41', '.')
    fc.assert(fc.property(alphabet, filler, fc.integer({ min: 1_000, max: 100_000 }), (head, fill, n) => {
      parsesOrRefuses(head + fill.repeat(Math.ceil(n / fill.length)))
    }), params(0.2))
  })
})
