/**
 * One block from one trustless gateway, verified against its CID.
 *
 * `fetchRawBlock` is the only way block bytes enter cidget in verified mode:
 * it asks for `application/vnd.ipld.raw`, refuses anything larger than the
 * block limit while it streams, and hashes the bytes before returning them.
 * Which gateway to ask, and what to do when one fails, is the pool's job
 * (`pool.ts`).
 *
 * @module
 */

import { createHash, hash as hashOnce } from 'node:crypto'
import { equals } from 'multiformats/bytes'
import type { CID } from 'multiformats/cid'
import { identity } from 'multiformats/hashes/identity'
import type { MultihashHasher } from 'multiformats/hashes/interface'
import { sha1 } from 'multiformats/hashes/sha1'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { CidgetError } from '../core/errors.js'
import { DEFAULTS } from '../core/defaults.js'
import { parseRetryAfter } from '../core/retry.js'
import { parseContentLength } from './headers.js'
import type { HttpClient } from './http.js'

/** Blocks are shared by multihash: the same bytes under a CIDv0 and a CIDv1 are one block. */
export function blockKey (cid: CID): string {
  const mh = cid.multihash.bytes
  // a view of the bytes, not a copy: only the string is kept
  return Buffer.from(mh.buffer, mh.byteOffset, mh.byteLength).toString('base64')
}

/**
 * Largest block cidget accepts: 2 MiB, the limit the trustless gateway
 * specification and bitswap implementations use. A larger answer cannot be
 * told apart from a gateway streaming garbage until it is hashed, so it is cut
 * off instead.
 */
export const MAX_BLOCK_BYTES = 2 * 1024 * 1024

/** Media type of a single raw block (trustless gateway specification). */
export const RAW_BLOCK_MEDIA_TYPE = 'application/vnd.ipld.raw'

/**
 * A block's bytes: one array, or the pieces it arrived in (views of the
 * network's chunks, in order), which are hashed and written as they are
 * instead of being copied into one array first.
 */
export type BlockBytes = Uint8Array | readonly Uint8Array[]

/** The length of a block in bytes. */
export function blockLength (bytes: BlockBytes): number {
  if (!Array.isArray(bytes)) return (bytes as Uint8Array).byteLength
  let n = 0
  for (const piece of bytes as readonly Uint8Array[]) n += piece.byteLength
  return n
}

/** A block's bytes as one array (a copy only when it is in pieces). */
export function joinBlock (bytes: BlockBytes): Uint8Array {
  if (!Array.isArray(bytes)) return bytes as Uint8Array
  const pieces = bytes as readonly Uint8Array[]
  if (pieces.length === 1) return pieces[0] as Uint8Array
  return Buffer.concat(pieces, blockLength(pieces))
}

interface HashSpec {
  /** node:crypto's name for it (a block in pieces is hashed piece by piece, without joining them). */
  node: string
  hasher: MultihashHasher
  /** Length of the untruncated digest in bytes. */
  length: number
  /** Shortest truncated digest accepted (multiformats' own floor for its hashers). */
  minLength: number
}

/** Hash functions cidget can verify: those that ship with `multiformats` itself. */
const HASHES = new Map<number, HashSpec>([
  [sha256.code, { node: 'sha256', hasher: sha256, length: 32, minLength: 20 }],
  [sha512.code, { node: 'sha512', hasher: sha512, length: 64, minLength: 20 }],
  [sha1.code, { node: 'sha1', hasher: sha1, length: 20, minLength: 20 }]
])

function hex (code: number): string {
  return `0x${code.toString(16)}`
}

/**
 * Throws CIDGET_ERR_DAG_INVALID when a block with this CID could never be
 * verified: an unsupported hash function, or a digest truncated below the
 * safe floor or longer than the hash. Cheap; call it before asking the
 * network.
 */
export function checkMultihash (cid: CID): void {
  const { code, size } = cid.multihash
  if (code === identity.code) return
  const spec = HASHES.get(code)
  if (spec === undefined) {
    throw new CidgetError('CIDGET_ERR_DAG_INVALID', `Block ${cid.toString()} uses multihash ${hex(code)}, which cidget cannot verify (supported: identity 0x0, sha1 0x11, sha2-256 0x12, sha2-512 0x13)`)
  }
  if (size > spec.length || size < spec.minLength) {
    throw new CidgetError('CIDGET_ERR_DAG_INVALID', `Block ${cid.toString()} has a ${spec.hasher.name} digest of ${size} bytes; it must be ${spec.minLength} to ${spec.length} bytes`)
  }
}

/** The inline bytes of an identity CID (multihash code 0x00), or undefined for any other CID. */
export function identityBytes (cid: CID): Uint8Array | undefined {
  return cid.multihash.code === identity.code ? cid.multihash.digest : undefined
}

/**
 * Resolves when `bytes` hash to `cid`'s multihash.
 *
 * @throws {CidgetError} CIDGET_ERR_BLOCK_INVALID when they do not;
 *   CIDGET_ERR_DAG_INVALID when the CID's hash function is not supported
 *   (see {@link checkMultihash}).
 */
export async function verifyBlock (cid: CID, bytes: Uint8Array): Promise<void> {
  await verifyBlockFrom(cid, bytes, undefined)
}

/** {@link verifyBlock} for bytes that `gateway` sent (one array or its pieces): the error names it (and its `gateway` detail is set). */
export async function verifyBlockFrom (cid: CID, bytes: BlockBytes, gateway: string | undefined): Promise<void> {
  const from = gateway === undefined ? '' : `${gateway}: `
  const inline = identityBytes(cid)
  if (inline !== undefined) {
    if (!equals(inline, joinBlock(bytes))) {
      throw new CidgetError('CIDGET_ERR_BLOCK_INVALID', `${from}the bytes of identity block ${cid.toString()} differ from the data inlined in the CID`, withGateway(gateway))
    }
    return
  }
  checkMultihash(cid)
  const spec = HASHES.get(cid.multihash.code) as HashSpec
  const expected = cid.multihash.digest
  // node:crypto, as multiformats' own hashers use; a truncated digest is the full one's prefix
  const digest = digestOf(spec.node, bytes).subarray(0, expected.length)
  if (!equals(digest, expected)) {
    throw new CidgetError('CIDGET_ERR_BLOCK_INVALID', `${from}block ${cid.toString()} does not match its ${spec.hasher.name} hash (${blockLength(bytes)} bytes received)`, withGateway(gateway))
  }
}

/** The digest of a block's bytes: one call for one array (no Hash object: small blocks come by the ten thousand), else piece by piece. */
function digestOf (algorithm: string, bytes: BlockBytes): Buffer {
  const pieces = Array.isArray(bytes) ? bytes as readonly Uint8Array[] : undefined
  if (pieces === undefined || pieces.length === 1) return hashOnce(algorithm, pieces?.[0] ?? bytes as Uint8Array, 'buffer')
  const hash = createHash(algorithm)
  for (const piece of pieces) hash.update(piece)
  return hash.digest()
}

function withGateway (gateway: string | undefined): { gateway?: string } {
  return gateway === undefined ? {} : { gateway }
}

export interface FetchRawBlockOptions {
  signal?: AbortSignal
  /** Largest block accepted, in bytes. @default MAX_BLOCK_BYTES */
  maxBytes?: number
  /** Cap on a Retry-After the gateway sends. @default DEFAULTS.MAX_RETRY_AFTER_MS */
  maxRetryAfterMs?: number
}

/**
 * GETs `${gateway}/ipfs/${cid}?format=raw` (`Accept: application/vnd.ipld.raw`)
 * and returns the block once its hash matches the CID; `ms` is the time from
 * sending the request to the last byte. Identity CIDs return their inline
 * bytes without a request.
 *
 * @throws {CidgetError}
 * - CIDGET_ERR_NOT_FOUND for 404 and 410;
 * - CIDGET_ERR_HTTP_STATUS for any other status but 200 (`status` set; for
 *   429 and 503 with a Retry-After, `retryAfterMs` too);
 * - CIDGET_ERR_BLOCK_TOO_LARGE when Content-Length, or the bytes streamed so
 *   far, exceed `maxBytes` (the body is abandoned at once);
 * - CIDGET_ERR_BLOCK_INVALID when the bytes do not hash to the CID;
 * - CIDGET_ERR_DAG_INVALID, before any request, for a hash cidget cannot verify;
 * - CIDGET_ERR_TIMEOUT, CIDGET_ERR_NETWORK, CIDGET_ERR_STREAM_RESET from the
 *   HTTP client; `signal.reason` when aborted.
 */
export async function fetchRawBlock (
  http: HttpClient,
  gateway: string,
  cid: CID,
  opts: FetchRawBlockOptions = {}
): Promise<{ bytes: Uint8Array, ms: number }> {
  const inline = identityBytes(cid)
  if (inline !== undefined) return { bytes: inline, ms: 0 }
  checkMultihash(cid)
  const maxBytes = opts.maxBytes ?? MAX_BLOCK_BYTES
  const id = cid.toString()
  const url = `${gateway.replace(/\/+$/, '')}/ipfs/${id}?format=raw`
  const started = performance.now()
  const res = await http.request(url, {
    gateway,
    headers: { accept: RAW_BLOCK_MEDIA_TYPE },
    ...(opts.signal === undefined ? {} : { signal: opts.signal })
  })
  let bytes: Uint8Array
  try {
    if (res.status !== 200) throw statusError(res.status, res.headers, gateway, `block ${id}`, opts.maxRetryAfterMs)
    const declared = parseContentLength(res.headers['content-length'])
    if (declared !== undefined && declared > maxBytes) {
      throw new CidgetError('CIDGET_ERR_BLOCK_TOO_LARGE', `${gateway}: block ${id} is declared as ${declared} bytes, over the ${maxBytes}-byte limit`, { gateway })
    }
    const chunks: Uint8Array[] = []
    let received = 0
    for await (const chunk of res.body) {
      received += chunk.length
      // Counted as it arrives, so a gateway streaming without a length cannot make us buffer more than the limit.
      if (received > maxBytes) {
        throw new CidgetError('CIDGET_ERR_BLOCK_TOO_LARGE', `${gateway}: block ${id} is over the ${maxBytes}-byte limit (more than ${maxBytes} bytes streamed)`, { gateway })
      }
      chunks.push(chunk)
    }
    if (declared !== undefined && received !== declared) {
      // A cut connection, not a bad block: the gateway must not be dropped for it.
      throw new CidgetError('CIDGET_ERR_STREAM_RESET', `${gateway}: block ${id} ended after ${received} of ${declared} bytes`, { gateway })
    }
    // Always a fresh, exact-size copy: a chunk may be a view of a larger socket buffer that would stay alive with it.
    bytes = new Uint8Array(received)
    let at = 0
    for (const chunk of chunks) {
      bytes.set(chunk, at)
      at += chunk.length
    }
  } catch (err) {
    res.discard()
    throw err
  }
  const ms = performance.now() - started
  await verifyBlockFrom(cid, bytes, gateway)
  return { bytes, ms }
}

/** The error for a trustless request's non-200 answer; `what` names what was asked for ("block bafy…"). */
export function statusError (status: number, headers: Record<string, string>, gateway: string, what: string, maxRetryAfterMs: number | undefined): CidgetError {
  if (status === 404 || status === 410) {
    return new CidgetError('CIDGET_ERR_NOT_FOUND', `${gateway}: ${what} not found (HTTP ${status})`, { gateway, status })
  }
  if (status === 429 || status === 503) {
    const retryAfterMs = parseRetryAfter(headers['retry-after'], Date.now(), maxRetryAfterMs ?? DEFAULTS.MAX_RETRY_AFTER_MS)
    if (retryAfterMs !== undefined) {
      return new CidgetError('CIDGET_ERR_HTTP_STATUS', `${gateway}: HTTP ${status} for ${what}, retry after ${retryAfterMs} ms`, { gateway, status, retryAfterMs })
    }
  }
  return new CidgetError('CIDGET_ERR_HTTP_STATUS', `${gateway}: HTTP ${status} for ${what}`, { gateway, status })
}
