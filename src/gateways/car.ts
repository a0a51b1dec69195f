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

import { readBlockHead, readHeader } from '@ipld/car/decoder'
import { CID } from 'multiformats/cid'
import { varint } from 'multiformats'
import { CidgetError, isCidgetError } from '../core/errors.js'
import { blockKey, statusError, verifyBlockFrom, type BlockBytes } from './block.js'
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
  /**
   * The leaves' sizes, in order (they fill the range). Optional; with them a
   * pool can hand the rest of a slow run to an idle gateway (a range of its own).
   */
  sizes?: readonly number[]
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
 * block of `expected` (keyed by the multihash's bytes in base64), once each;
 * with `expected` undefined, for every block (then the range's `nodes` bounds
 * the inner nodes it may carry, and blocks may be as small as 1 KiB).
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
  expected: ReadonlyMap<string, CID> | undefined,
  onBlock: (key: string, bytes: BlockBytes, cid: CID) => Promise<void> | void,
  opts: CarRunOptions
): Promise<number> {
  const id = entity.toString()
  // the range's leaves, the inner nodes on the way to them, and each section's length and CID
  const nodes = range.nodes ?? 1
  const span = range.to - range.from + 1
  const allowance = span + nodes * opts.maxBlockBytes + ((expected?.size ?? Math.ceil(span / 1024)) + nodes + 1) * 128
  return await fetchCar(http, gateway, {
    url: `${gateway}/ipfs/${id}?format=car&dag-scope=entity&entity-bytes=${range.from}:${range.to}`,
    what: `CAR of ${id} bytes ${range.from}-${range.to}`,
    allowance,
    // more than the range can hold: a gateway that ignores entity-bytes (it may still serve single blocks well)
    over: 'unsupported'
  }, expected, onBlock, opts)
}

/**
 * GETs `${gateway}/ipfs/${root}?format=car&dag-scope=all`: the whole DAG of
 * `root` (a directory, a HAMT shard, a file) in one stream, depth-first, each
 * block once. Every block must hash to its CID and fit `maxBlockBytes`; each
 * is handed to `onBlock` (awaited: a slow consumer slows the stream), also
 * blocks the caller may not need (it judges). The stream is cut, without an
 * error, once it carried `allowance` bytes (what the DAG declares, with room
 * for the framing): a gateway cannot make cidget read without end. Returns the
 * bytes received; throws as {@link fetchCarRun} does.
 */
export async function fetchCarTree (
  http: HttpClient,
  gateway: string,
  root: CID,
  allowance: number,
  onBlock: (key: string, bytes: BlockBytes, cid: CID) => Promise<void> | void,
  opts: CarRunOptions
): Promise<number> {
  const id = root.toString()
  return await fetchCar(http, gateway, {
    url: `${gateway}/ipfs/${id}?format=car&dag-scope=all`,
    what: `CAR of the DAG of ${id}`,
    allowance,
    over: 'stop'
  }, undefined, onBlock, opts)
}

interface CarAsk {
  url: string
  /** The request in words, for messages. */
  what: string
  /** Bytes the body may carry. */
  allowance: number
  /** Past the allowance: the gateway does not serve what was asked (an error), or the stream just ends there. */
  over: 'unsupported' | 'stop'
}

async function fetchCar (
  http: HttpClient,
  gateway: string,
  ask: CarAsk,
  expected: ReadonlyMap<string, CID> | undefined,
  onBlock: (key: string, bytes: BlockBytes, cid: CID) => Promise<void> | void,
  opts: CarRunOptions
): Promise<number> {
  const { what, allowance } = ask
  const res = await http.request(ask.url, {
    gateway,
    headers: { accept: CAR_MEDIA_TYPE },
    ...(opts.signal === undefined ? {} : { signal: opts.signal })
  })
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
  let received = 0
  let over = false
  async function * counted (): AsyncGenerator<Uint8Array> {
    for await (const chunk of res.body) {
      received += chunk.length
      if (received > allowance) {
        if (ask.over === 'unsupported') throw new CarUnsupportedError(`${gateway}: ${what} is over ${allowance} bytes, more than its blocks can hold`, gateway, res.status)
        // the blocks wholly within the allowance are read; the rest of the stream is not
        over = true
        yield chunk.subarray(0, chunk.length - (received - allowance))
        return
      }
      yield chunk
    }
  }
  const seen = new Set<string>()
  try {
    const blocks = carBlocks(new ChunkReader(counted()), (cid, length) => {
      if (length > opts.maxBlockBytes) {
        throw new CidgetError('CIDGET_ERR_BLOCK_TOO_LARGE', `${gateway}: block ${cid.toString()} in the ${what} is ${length} bytes, over the ${opts.maxBlockBytes}-byte limit`, { gateway })
      }
    })
    for (;;) {
      // stopped (the caller has what it wants): nothing more is read, nor checked
      opts.signal?.throwIfAborted()
      let next: IteratorResult<{ cid: CID, bytes: BlockBytes }>
      try {
        next = await blocks.next()
      } catch (err) {
        if (over) break // a block cut by the allowance is not the gateway's fault
        throw carError(err, gateway, what)
      }
      if (next.done === true) break
      const { cid, bytes } = next.value
      // every block is checked, also those not asked for: a gateway that sends one wrong block is not trusted
      try {
        await verifyBlockFrom(cid, bytes, gateway)
      } catch (err) {
        if (!isCidgetError(err, 'CIDGET_ERR_DAG_INVALID')) throw err
        throw new CidgetError('CIDGET_ERR_BLOCK_INVALID', `${gateway}: the ${what} holds a block cidget cannot verify (${err.message})`, { gateway, cause: err })
      }
      const key = blockKey(cid)
      if ((expected !== undefined && !expected.has(key)) || seen.has(key)) continue
      // a tree's blocks are many (not held here): its caller tells repeats apart
      if (ask.over === 'unsupported') seen.add(key)
      await onBlock(key, bytes, cid)
    }
  } catch (err) {
    res.discard()
    throw err
  }
  if (over) res.discard()
  return received
}

/**
 * The blocks of a CAR (v1, or the data section of a v2) read with
 * `@ipld/car`'s own header and section decoding, each block's bytes taken as
 * the pieces they arrived in ({@link ChunkReader.pieces}), not copied.
 * `onHead` sees each block's CID and length before its bytes are read, and
 * may throw to refuse it.
 */
export async function * carBlocks (reader: ChunkReader, onHead?: (cid: CID, length: number) => void): AsyncGenerator<{ cid: CID, bytes: BlockBytes }> {
  const header = await readHeader(reader)
  // a CARv2's blocks end where its data section does (its index follows)
  const end = header.version === 2 ? header.dataOffset + header.dataSize : Infinity
  while (reader.pos < end) {
    // most sections' heads lie whole in the chunk at hand: read at once, not through the library's awaits
    let head = reader.sectionHead()
    if (head === undefined) {
      if ((await reader.upTo(8)).length === 0) break
      head = await readBlockHead(reader)
    }
    const { cid, blockLength } = head
    onHead?.(cid, blockLength)
    if (blockLength < 0) throw new Error('Invalid CAR section (its CID is longer than the section)')
    const bytes = reader.piecesNow(blockLength) ?? await reader.pieces(blockLength)
    if (reader.pos > end) throw new Error('Unexpected end of data')
    yield { cid, bytes }
  }
}

/** Above this many chunks a block is copied into one array rather than kept as pieces. */
const MAX_PIECES = 64
/**
 * A block whose chunks hold more than this many times its bytes is copied out
 * of them: a view keeps its whole chunk (64 KiB off a socket) alive for as
 * long as it lives, and small blocks live long (a stream's buffer, the walk's
 * kept inner blocks, recently taken blocks), so a 300-byte file node kept
 * a 64 KiB chunk: 57 MB for 1,000 files of 1 MiB.
 */
const MAX_PINNED_RATIO = 2

/**
 * The reading interface of `@ipld/car`'s decoder (`BytesReader`) over a
 * stream of chunks, copying as little as it can. The decoder asks for a few
 * bytes at a time (lengths, CIDs); a read that lies within one chunk is a
 * view of it, one that spans chunks is copied once into a buffer of its own
 * size. A block's bytes are taken with {@link ChunkReader.pieces}: the views
 * of the chunks that hold them, copied only when a view would keep much more
 * than the block alive. (The library's own stream reader copies
 * every read into a buffer holding all it has, the remainder included, so
 * bytes that straddle a block boundary are copied again and again, and every
 * block allocates twice.)
 */
export class ChunkReader {
  readonly #source: AsyncIterator<Uint8Array>
  /** Chunks not read yet, the first one from #offset on. */
  readonly #chunks: Uint8Array[] = []
  #offset = 0
  /** Bytes in #chunks from #offset on. */
  #buffered = 0
  /** Bytes a seek went past the end of what had arrived: dropped as they come. */
  #skip = 0
  #done = false
  /** Bytes read (or sought past) so far. */
  pos = 0

  constructor (source: AsyncIterable<Uint8Array>) {
    this.#source = source[Symbol.asyncIterator]()
  }

  /** Up to `length` bytes from the current position (fewer at the end of the stream), without moving it. */
  async upTo (length: number): Promise<Uint8Array> {
    await this.#fill(length)
    return this.#view(Math.min(length, this.#buffered))
  }

  /** Exactly `length` bytes from the current position, moving past them when `seek` is true. */
  async exactly (length: number, seek = false): Promise<Uint8Array> {
    await this.#fill(length)
    if (this.#buffered < length) throw new Error('Unexpected end of data')
    if (!seek) return this.#view(length)
    // bytes moved past are the caller's to keep (a CID's digest): not a view that keeps a whole chunk alive
    return this.#copy(length)
  }

  /**
   * Exactly `length` bytes from the current position as views of the chunks
   * that hold them, in order (no copy), moving past them; as one copy
   * instead when they lie in very many chunks or are much smaller than their
   * chunks (see MAX_PINNED_RATIO).
   */
  async pieces (length: number): Promise<Uint8Array[]> {
    await this.#fill(length)
    if (this.#buffered < length) throw new Error('Unexpected end of data')
    return this.#pieces(length)
  }

  /** {@link ChunkReader.pieces} when all `length` bytes have arrived; undefined otherwise (nothing moves). */
  piecesNow (length: number): Uint8Array[] | undefined {
    return this.#buffered < length ? undefined : this.#pieces(length)
  }

  /**
   * The head of the next CAR section (its length and its CID, as `@ipld/car`'s
   * `readBlockHead` gives them) when the chunk at hand holds it whole and its
   * CID is a CIDv0 or a CIDv1, moving past it; the CID's bytes are copied
   * (not a view that keeps the chunk alive). Undefined otherwise, nothing
   * moved: the caller reads it the library's way, which also says what is wrong.
   */
  sectionHead (): { cid: CID, blockLength: number } | undefined {
    const first = this.#chunks[0]
    if (first === undefined) return undefined
    const at = this.#offset
    try {
      const [length, n] = varint.decode(first, at)
      if (length === 0) return undefined
      const start = at + n
      // what the library reads: 0x12 0x20 and a SHA-256 digest (CIDv0), or version 1
      const b0 = first[start]
      if (!((b0 === 0x12 && first[start + 1] === 0x20) || b0 === 0x01)) return undefined
      let size = 34
      if (b0 === 0x01) {
        // the version, the codec, the multihash's code and its digest's length, then the digest
        let p = start + 1
        p += varint.decode(first, p)[1]
        p += varint.decode(first, p)[1]
        const [digest, d] = varint.decode(first, p)
        size = p + d + digest - start
      }
      if (start + size > first.length) return undefined
      // a copy (a Buffer's slice() would be a view, keeping the whole chunk alive for as long as the CID)
      const bytes = new Uint8Array(size)
      bytes.set(first.subarray(start, start + size))
      const cid = CID.decode(bytes)
      this.seek(n + size)
      // the section's length counts its CID and its block, not the varint itself
      return { cid, blockLength: length - size }
    } catch {
      // a varint or CID cut at the chunk's end, or malformed: the library's way reads on, or throws its own error
      return undefined
    }
  }

  #pieces (length: number): Uint8Array[] {
    // a block in very many small chunks (a gateway that trickles bytes) is copied into one array
    // instead: it would cost an object and an iovec per chunk until it is written; a block much
    // smaller than its chunks too, so that it does not keep them alive
    const { chunks, pinned } = this.#spans(length)
    if (chunks > MAX_PIECES || pinned > MAX_PINNED_RATIO * length) return [this.#copy(length)]
    const out: Uint8Array[] = []
    let left = length
    let offset = this.#offset
    for (const chunk of this.#chunks) {
      if (left === 0) break
      const n = Math.min(chunk.length - offset, left)
      out.push(chunk.subarray(offset, offset + n))
      left -= n
      offset = 0
    }
    this.seek(length)
    return out
  }

  /** How many chunks the next `length` bytes (all buffered) lie in, and the bytes of their buffers. */
  #spans (length: number): { chunks: number, pinned: number } {
    let chunks = 0
    let pinned = 0
    let previous: ArrayBufferLike | undefined
    let left = length + this.#offset
    for (const chunk of this.#chunks) {
      if (left <= 0) break
      chunks++
      // chunks that share a buffer (slices of one read) keep it once
      if (chunk.buffer !== previous) pinned += chunk.buffer.byteLength
      previous = chunk.buffer
      left -= chunk.length
    }
    return { chunks, pinned }
  }

  /** The next `length` bytes (all buffered) copied into an array of their own, moving past them. */
  #copy (length: number): Uint8Array {
    const out = this.#gather(length)
    this.seek(length)
    return out
  }

  /** The next `length` bytes (at most #buffered) copied into an array of their own. */
  #gather (length: number): Uint8Array {
    // its own memory (not a slice of Node's shared pool, which a kept block would keep alive in turn); filled whole below
    const out = Buffer.allocUnsafeSlow(length)
    let at = 0
    let offset = this.#offset
    for (const chunk of this.#chunks) {
      const n = Math.min(chunk.length - offset, length - at)
      out.set(chunk.subarray(offset, offset + n), at)
      at += n
      offset = 0
      if (at === length) break
    }
    return out
  }

  seek (length: number): void {
    this.pos += length
    if (length > this.#buffered) {
      this.#skip += length - this.#buffered
      this.#chunks.length = 0
      this.#offset = 0
      this.#buffered = 0
      return
    }
    this.#buffered -= length
    let offset = this.#offset + length
    for (let first = this.#chunks[0]; first !== undefined && offset >= first.length; first = this.#chunks[0]) {
      offset -= first.length
      this.#chunks.shift()
    }
    this.#offset = offset
  }

  async #fill (length: number): Promise<void> {
    while (this.#buffered < length && !this.#done) {
      const next = await this.#source.next()
      if (next.done === true) {
        this.#done = true
        return
      }
      let chunk = next.value
      if (this.#skip > 0) {
        const dropped = Math.min(this.#skip, chunk.length)
        this.#skip -= dropped
        chunk = chunk.subarray(dropped)
      }
      if (chunk.length === 0) continue
      this.#chunks.push(chunk)
      this.#buffered += chunk.length
    }
  }

  /** The next `length` bytes (at most #buffered): a view when one chunk holds them, else one copy. */
  #view (length: number): Uint8Array {
    const first = this.#chunks[0]
    if (first === undefined || length === 0) return new Uint8Array(0)
    if (first.length - this.#offset >= length) return first.subarray(this.#offset, this.#offset + length)
    return this.#gather(length)
  }
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
