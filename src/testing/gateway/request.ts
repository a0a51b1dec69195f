/**
 * Reading a request: the `/ipfs/` path, the answer format, the CID in any
 * base, `Range`; the per-request context every answer writes through; and
 * errors as statuses.
 *
 * @module
 */

import type { IncomingMessage, ServerResponse } from 'node:http'
import { bases } from 'multiformats/basics'
import { CID } from 'multiformats/cid'
import { CidgetError } from '../../core/errors.js'
import type { RequestFormat, RequestRecord } from './types.js'

export const IMMUTABLE = 'public, max-age=29030400, immutable'
export const CAR_CONTENT_TYPE = 'application/vnd.ipld.car; version=1; order=dfs; dups=n'
export const RAW_CONTENT_TYPE = 'application/vnd.ipld.raw'
export const IPNS_RECORD_CONTENT_TYPE = 'application/vnd.ipfs.ipns-record'

/** One request being answered. */
export interface Ctx {
  req: IncomingMessage
  res: ServerResponse
  record: RequestRecord
  signal: AbortSignal
  abort: () => void
  query: URLSearchParams
  /** Path segments after the CID, decoded; `null` when the path is not `/ipfs/…`. */
  ipfs: { cidText: string, segments: string[] } | null
  /** The raw (encoded) URL path, for X-Ipfs-Path. */
  rawPath: string
}

/** An answer that is a status and a text message. */
export class HttpError extends Error {
  constructor (readonly status: number, message: string) {
    super(message)
  }
}

export function headerValue (value: string | string[] | undefined): string | null {
  if (value === undefined) return null
  return Array.isArray(value) ? value.join(', ') : value
}

/** `/ipfs/CID/a/b` → its parts, decoded; `null` for other paths; `'bad'` for undecodable ones. */
export function parseIpfsPath (pathname: string): { cidText: string, segments: string[] } | null | 'bad' {
  if (!pathname.startsWith('/ipfs/')) return null
  try {
    const parts = pathname.slice('/ipfs/'.length).split('/').map(decodeURIComponent)
    const [cidText = '', ...rest] = parts
    return { cidText, segments: rest.filter((s) => s !== '') }
  } catch {
    return 'bad'
  }
}

export function detectFormat (query: URLSearchParams, accept: string | undefined): RequestFormat | null {
  const format = query.get('format')
  if (format !== null) {
    if (format === 'raw' || format === 'car' || format === 'ipns-record') return format
    return format === '' ? 'path' : null
  }
  for (const item of (accept ?? '').split(',')) {
    const type = (item.split(';')[0] ?? '').trim().toLowerCase()
    if (type === RAW_CONTENT_TYPE) return 'raw'
    if (type === 'application/vnd.ipld.car') return 'car'
    if (type === IPNS_RECORD_CONTENT_TYPE) return 'ipns-record'
  }
  return 'path'
}

const BASES = new Map(Object.values(bases).map((b) => [b.prefix as string, b]))

/** Any CID string that multiformats can decode: CIDv0, and CIDv1 in any of its bundled bases. */
export function parseCid (text: string): CID {
  if (text === '') throw new Error('empty CID')
  const first = text[0]
  if (first === 'Q' || first === 'b' || first === 'z') return CID.parse(text)
  const base = first === undefined ? undefined : BASES.get(first)
  if (base === undefined) throw new Error(`unknown multibase prefix "${first ?? ''}"`)
  return CID.decode(base.decoder.decode(text))
}

export function errorStatus (err: unknown): number {
  if (err instanceof HttpError) return err.status
  if (err instanceof CidgetError && err.code === 'CIDGET_ERR_NOT_FOUND') return 404
  const name = err instanceof Error ? err.name : ''
  if (name === 'NotFoundError' || name === 'BadPathError') return 404
  return 500
}

export interface ByteRange { start: number, end: number }

/**
 * One `bytes=` range against `size`. `null` means "ignore the header and send
 * everything" (malformed, or several ranges); `'unsatisfiable'` means 416.
 */
export function parseRange (header: string, size: number): ByteRange | 'unsatisfiable' | null {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (m === null) return null
  const a = m[1] ?? ''
  const b = m[2] ?? ''
  if (a === '' && b === '') return null
  if (a === '') {
    const suffix = Number(b)
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(a)
  if (b !== '' && Number(b) < start) return null
  if (start >= size) return 'unsatisfiable'
  return { start, end: b === '' ? size - 1 : Math.min(Number(b), size - 1) }
}
