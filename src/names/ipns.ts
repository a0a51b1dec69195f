/**
 * IPNS records, fetched trustlessly and verified before use: from trustless
 * gateways (`GET /ipns/<key>?format=ipns-record`) and from delegated routers
 * (`GET /routing/v1/ipns/<key>`), both with `Accept: application/vnd.ipfs.ipns-record`.
 * Every record is checked with the `ipns` package (signature V2 over the CBOR
 * data, V1 fields consistent with it, the key matching the name, the validity
 * not passed, at most 10 KiB); among valid records the highest sequence wins,
 * then the longest validity (the IPNS specification's order).
 *
 * @module
 */

import { unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'
import { CidgetError } from '../core/errors.js'
import { readBody, type HttpClient } from '../gateways/http.js'

export const IPNS_RECORD_TYPE = 'application/vnd.ipfs.ipns-record'
/** The IPNS specification's bound on a record. */
export const MAX_IPNS_RECORD_BYTES = 10 * 1024

/** A verified record: what the name points to, and which record said so. */
export interface IpnsRecordAnswer {
  /** The record's value: `/ipfs/<cid>[/path]` or `/ipns/<name>[/path]`. */
  value: string
  sequence: bigint
  /** The record's validity (an RFC 3339 time with nanoseconds, as the record carries it). */
  validity: string
  /** The validity in milliseconds since the epoch. */
  validUntil: number
  /** The record's TTL in milliseconds, when it carries one. */
  ttlMs: number | undefined
  /** The gateway or router it came from. */
  source: string
}

/** Where a record is asked for: a trustless gateway's base URL or a delegated router's. */
export interface RecordSource {
  kind: 'gateway' | 'router'
  url: string
}

/** The URL a record of `name` is fetched from at `source`. */
export function recordUrl (source: RecordSource, name: string): string {
  return source.kind === 'gateway'
    ? `${source.url}/ipns/${name}?format=ipns-record`
    : `${source.url}/routing/v1/ipns/${name}`
}

function invalid (source: string, why: string, cause?: unknown): CidgetError {
  return new CidgetError('CIDGET_ERR_IPNS_RECORD_INVALID', `${source}: ${why}`, { gateway: source, ...(cause === undefined ? {} : { cause }) })
}

/**
 * Fetches the record of `name` (a `k51…` key) from `source`, at most
 * {@link MAX_IPNS_RECORD_BYTES} read. Throws CIDGET_ERR_NOT_FOUND for a 404,
 * CIDGET_ERR_HTTP_STATUS for another status, CIDGET_ERR_IPNS_RECORD_INVALID
 * for an answer that is not a record or is too large, and the client's errors.
 */
export async function fetchIpnsRecord (http: HttpClient, source: RecordSource, name: string, signal?: AbortSignal): Promise<Uint8Array> {
  const res = await http.request(recordUrl(source, name), {
    gateway: source.url,
    headers: { accept: IPNS_RECORD_TYPE },
    ...(signal === undefined ? {} : { signal })
  })
  if (res.status !== 200) {
    res.discard()
    if (res.status === 404) throw new CidgetError('CIDGET_ERR_NOT_FOUND', `${source.url}: no record for /ipns/${name} (HTTP 404)`, { gateway: source.url })
    throw new CidgetError('CIDGET_ERR_HTTP_STATUS', `${source.url}: HTTP ${res.status} for the record of /ipns/${name}`, { gateway: source.url, status: res.status })
  }
  const type = (res.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== IPNS_RECORD_TYPE) {
    res.discard()
    throw invalid(source.url, `answered ${type === '' || type === undefined ? 'without a content type' : type} for the record of /ipns/${name}, not ${IPNS_RECORD_TYPE}`)
  }
  return await readBody(res, MAX_IPNS_RECORD_BYTES, () => invalid(source.url, `the record of /ipns/${name} is over ${MAX_IPNS_RECORD_BYTES} bytes`))
}

/** Milliseconds since the epoch of an RFC 3339 time with up to nine digits of fraction. */
function parseValidity (text: string): number {
  // Date keeps milliseconds: the digits past the third only make the time later, never earlier
  const ms = Date.parse(text.replace(/(\.\d{3})\d+/, '$1'))
  return Number.isNaN(ms) ? NaN : ms
}

/**
 * Verifies `bytes` as the record of the key `multihash` (the name's) and
 * returns what it says. Throws CIDGET_ERR_IPNS_RECORD_INVALID naming `source`
 * and the reason (too large, bad signature, V1 and V2 disagreeing, signed by
 * another key, expired, a value that is not a path).
 */
export async function verifyIpnsRecord (bytes: Uint8Array, multihash: Uint8Array, source: string, now = Date.now()): Promise<IpnsRecordAnswer> {
  if (bytes.byteLength > MAX_IPNS_RECORD_BYTES) throw invalid(source, `the record is over ${MAX_IPNS_RECORD_BYTES} bytes`)
  try {
    await ipnsValidator(routingKey(multihash), bytes)
  } catch (err) {
    const name = err instanceof Error ? err.name : ''
    const why = WHY[name] ?? `not a valid record (${err instanceof Error ? err.message : String(err)})`
    throw invalid(source, why, err)
  }
  const record = unmarshalIPNSRecord(bytes)
  const validUntil = parseValidity(record.validity)
  if (Number.isNaN(validUntil)) throw invalid(source, `the record's validity "${record.validity.slice(0, 64)}" is not a time`)
  // the validator read its own clock; an injected one is checked too
  if (validUntil < now) throw invalid(source, `the record expired at ${record.validity}`)
  if (!/^\/(ipfs|ipns)\/[^/]/.test(record.value)) throw invalid(source, `the record's value "${record.value.slice(0, 100)}" is not an /ipfs/ or /ipns/ path`)
  const ttl = record.ttl
  return {
    value: record.value,
    sequence: record.sequence,
    validity: record.validity,
    validUntil,
    ttlMs: ttl === undefined ? undefined : Number(ttl / 1_000_000n),
    source
  }
}

/** The routing key of a name: `/ipns/` followed by its multihash. */
function routingKey (multihash: Uint8Array): Uint8Array {
  const prefix = new TextEncoder().encode('/ipns/')
  const key = new Uint8Array(prefix.length + multihash.length)
  key.set(prefix)
  key.set(multihash, prefix.length)
  return key
}

const WHY: Record<string, string> = {
  SignatureVerificationError: 'the record\'s signature does not verify',
  RecordExpiredError: 'the record has expired',
  RecordTooLargeError: `the record is over ${MAX_IPNS_RECORD_BYTES} bytes`,
  InvalidEmbeddedPublicKeyError: 'the record is signed by another key than the name\'s',
  InvalidRecordDataError: 'the record\'s V1 fields disagree with its signed data',
  UnsupportedValidityError: 'the record\'s validity type is unsupported'
}

/**
 * Orders verified records as the IPNS specification does: the highest
 * sequence first, then the longest validity.
 */
export function betterRecord (a: IpnsRecordAnswer, b: IpnsRecordAnswer): IpnsRecordAnswer {
  if (a.sequence !== b.sequence) return a.sequence > b.sequence ? a : b
  return b.validUntil > a.validUntil ? b : a
}
