/**
 * A run of a file's leaves in one request: a CAR stream of an entity byte
 * range (IPIP-402 `entity-bytes`) from a trustless gateway.
 *
 * One request for many blocks saves the per-request cost of asking for each
 * 256 KiB leaf alone. Nothing in the stream is trusted: every block is hashed
 * against the CID it comes with, only the blocks the caller expects (by
 * multihash) are handed over, others are skipped (a gateway sends the
 * entity's own node first), and
 * the stream is cut off once it carries more than the expected bytes plus a
 * small allowance, so a gateway cannot make cidget buffer without end.
 *
 * @module
 */

import { CarBlockIterator } from '@ipld/car/iterator'
import type { CID } from 'multiformats/cid'
import { CidgetError, isCidgetError } from '../core/errors.js'
import { statusError, verifyBlockFrom } from './block.js'
import type { HttpClient } from './http.js'

/** What the request asks for: one CARv1, blocks depth-first, no duplicates (trustless gateway specification). */
export const CAR_MEDIA_TYPE = 'application/vnd.ipld.car; version=1; order=dfs; dups=n'

/** Statuses by which a gateway says it does not serve CAR entity ranges (rather than that it failed). */
const UNSUPPORTED_STATUSES = new Set([400, 406, 415, 501])

/** The bytes of a run: `from` to `to` (inclusive) of the entity; `nodes` inner nodes may come with the leaves. */
export interface RunRange {
  from: number
  to: number
  /** Inner nodes the CAR may carry besides the leaves, the entity's own included. @default 1 */
  nodes?: number
}

export interface CarRunOptions {
  signal?: AbortSignal
  /** Largest block accepted, in bytes. */
  maxBlockBytes: number
  /** Cap on a Retry-After the gateway sends. @default DEFAULTS.MAX_RETRY_AFTER_MS */
  maxRetryAfterMs?: number
}

/**
 * The gateway answered in a way that says it does not serve CAR entity ranges
 * (400, 406, 415, 501, or a body that is not a CAR): it is not asked for runs
 * again, but it is not scored down either.
 */
export class CarUnsupportedError extends CidgetError {
  constructor (message: string, gateway: string, status: number) {
    super('CIDGET_ERR_HTTP_STATUS', message, { gateway, status })
  }
}

/**
 * GETs `${gateway}/ipfs/${entity}?format=car&dag-scope=entity&entity-bytes=${from}:${to}`
 * and calls `onBlock` (awaited: a slow consumer slows the stream) for each
 * block of `expected` (keyed by the multihash's bytes in base64), once each.
 * Every block in the stream must hash to its CID. Returns how many bytes the
 * stream carried.
 *
 * @throws {CidgetError} CIDGET_ERR_BLOCK_INVALID for a block that does not hash
 *   to its CID or a malformed CAR; CIDGET_ERR_BLOCK_TOO_LARGE for a block over
 *   the limit; CIDGET_ERR_HTTP_STATUS ({@link CarUnsupportedError} for
 *   400/406/415/501, a body that is not a CAR, or a stream longer than the range can be),
 *   CIDGET_ERR_NOT_FOUND, and the HTTP client's TIMEOUT / NETWORK /
 *   STREAM_RESET. Blocks delivered before an error stay delivered.
 */
export async function fetchCarRun (
  http: HttpClient,
  gateway: string,
  entity: CID,
  range: RunRange,
  expected: ReadonlyMap<string, CID>,
  onBlock: (key: string, bytes: Uint8Array) => Promise<void> | void,
  opts: CarRunOptions
): Promise<number> {
  const id = entity.toString()
  const url = `${gateway}/ipfs/${id}?format=car&dag-scope=entity&entity-bytes=${range.from}:${range.to}`
  const res = await http.request(url, {
    gateway,
    headers: { accept: CAR_MEDIA_TYPE },
    ...(opts.signal === undefined ? {} : { signal: opts.signal })
  })
  const what = `CAR of ${id} bytes ${range.from}-${range.to}`
  if (res.status !== 200) {
    res.discard()
    if (UNSUPPORTED_STATUSES.has(res.status)) throw new CarUnsupportedError(`${gateway}: HTTP ${res.status} for ${what}`, gateway, res.status)
    throw statusError(res.status, res.headers, gateway, what, opts.maxRetryAfterMs)
  }
  const type = (res.headers['content-type'] ?? '').toLowerCase()
  if (!type.startsWith('application/vnd.ipld.car')) {
    res.discard()
    throw new CarUnsupportedError(`${gateway}: answered ${type === '' ? 'without a content type' : type} for ${what}, not a CAR`, gateway, res.status)
  }
  // the range's leaves, the inner nodes on the way to them, and each section's length and CID
  const nodes = range.nodes ?? 1
  const allowance = (range.to - range.from + 1) + nodes * opts.maxBlockBytes + (expected.size + nodes + 1) * 128
  let received = 0
  async function * counted (): AsyncGenerator<Uint8Array> {
    for await (const chunk of res.body) {
      received += chunk.length
      if (received > allowance) {
        // more than the range can hold: a gateway that ignores entity-bytes (it may still serve single blocks well)
        throw new CarUnsupportedError(`${gateway}: ${what} is over ${allowance} bytes, more than its blocks can hold`, gateway, res.status)
      }
      yield chunk
    }
  }
  const seen = new Set<string>()
  try {
    let blocks: AsyncIterable<{ cid: CID, bytes: Uint8Array }>
    try {
      blocks = await CarBlockIterator.fromIterable(counted())
    } catch (err) {
      throw carError(err, gateway, what)
    }
    const iterator = blocks[Symbol.asyncIterator]()
    for (;;) {
      let next: IteratorResult<{ cid: CID, bytes: Uint8Array }>
      try {
        next = await iterator.next()
      } catch (err) {
        throw carError(err, gateway, what)
      }
      if (next.done === true) break
      const { cid, bytes } = next.value
      if (bytes.length > opts.maxBlockBytes) {
        throw new CidgetError('CIDGET_ERR_BLOCK_TOO_LARGE', `${gateway}: block ${cid.toString()} in the ${what} is ${bytes.length} bytes, over the ${opts.maxBlockBytes}-byte limit`, { gateway })
      }
      // every block is checked, also those not asked for: a gateway that sends one wrong block is not trusted
      try {
        await verifyBlockFrom(cid, bytes, gateway)
      } catch (err) {
        if (!isCidgetError(err, 'CIDGET_ERR_DAG_INVALID')) throw err
        throw new CidgetError('CIDGET_ERR_BLOCK_INVALID', `${gateway}: the ${what} holds a block cidget cannot verify (${err.message})`, { gateway, cause: err })
      }
      const key = Buffer.from(cid.multihash.bytes).toString('base64')
      if (!expected.has(key) || seen.has(key)) continue
      seen.add(key)
      await onBlock(key, bytes)
    }
  } catch (err) {
    res.discard()
    throw err
  }
  return received
}

/** A CAR that cannot be decoded is the gateway's fault, unless the body was cut off. */
function carError (err: unknown, gateway: string, what: string): unknown {
  if (err instanceof CidgetError) return err
  const message = err instanceof Error ? err.message : String(err)
  if (/unexpected end of data/i.test(message)) {
    return new CidgetError('CIDGET_ERR_STREAM_RESET', `${gateway}: the ${what} ended in the middle of a block`, { gateway, cause: err })
  }
  return new CidgetError('CIDGET_ERR_BLOCK_INVALID', `${gateway}: the ${what} is not a valid CAR (${message})`, { gateway, cause: err })
}
