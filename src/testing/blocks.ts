/**
 * In-memory blocks and content builders for the test gateway.
 *
 * Everything here is synchronous where it can be: the blocks live in a `Map`,
 * so tests can plant, inspect or remove blocks without awaiting anything.
 *
 * @module
 */

import { createReadStream } from 'node:fs'
import { CarBlockIterator } from '@ipld/car/iterator'
import { importByteStream, importBytes, importer } from 'ipfs-unixfs-importer'
import type { ImporterOptions, WritableStorage } from 'ipfs-unixfs-importer'
import type { ReadableStorage } from 'ipfs-unixfs-exporter'
import type { CID } from 'multiformats/cid'
import { equals } from 'multiformats/bytes'
import { identity } from 'multiformats/hashes/identity'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { sha1 } from 'multiformats/hashes/sha1'
import type { MultihashHasher } from 'multiformats/hashes/interface'
import { CidgetError } from '../core/errors.js'

export type { ImporterOptions } from 'ipfs-unixfs-importer'

/** Multihash code of the identity "hash": the digest is the content itself. */
export const IDENTITY_CODE = 0x00

/**
 * The storage interface that `ipfs-unixfs-importer` and `ipfs-unixfs-exporter`
 * expect. Their (interface-blockstore 7) `get()` yields the block as chunks,
 * which is why {@link MemoryBlocks} adapts itself through
 * {@link MemoryBlocks.asBlockstore} instead of implementing it directly.
 */
export type UnixFSStorage = ReadableStorage & WritableStorage

interface Stored {
  cid: CID
  bytes: Uint8Array
}

/** Blocks are keyed by multihash, so CIDv0/v1 and raw/dag-pb CIDs of the same bytes share a block. */
function keyOf (cid: CID): string {
  return Buffer.from(cid.multihash.bytes).toString('base64')
}

/**
 * An in-memory blockstore.
 *
 * - Blocks are keyed by multihash: a block stored under a CIDv1 is also found
 *   under the CIDv0 (or another codec's CID) with the same multihash.
 * - Identity CIDs (multihash code `0x00`) are always present: {@link get}
 *   returns their digest and {@link has} returns `true`. They are not stored
 *   and not counted in {@link size}.
 * - {@link put} does **not** verify the hash, so a test can plant a corrupt
 *   block on purpose. {@link loadCar} does verify.
 * - {@link get} returns the stored array itself, not a copy: do not mutate it.
 */
export class MemoryBlocks {
  readonly #blocks = new Map<string, Stored>()

  /** Stores `bytes` under `cid` (replacing any block with the same multihash) and returns `cid`. */
  put (cid: CID, bytes: Uint8Array): CID {
    if (cid.multihash.code === IDENTITY_CODE) return cid
    this.#blocks.set(keyOf(cid), { cid, bytes })
    return cid
  }

  /**
   * The bytes of the block with `cid`'s multihash.
   *
   * @throws {CidgetError} `CIDGET_ERR_NOT_FOUND` when the block is missing.
   */
  get (cid: CID): Uint8Array {
    if (cid.multihash.code === IDENTITY_CODE) return cid.multihash.digest
    const found = this.#blocks.get(keyOf(cid))
    if (found === undefined) {
      throw new CidgetError('CIDGET_ERR_NOT_FOUND', `Block ${cid.toString()} is not in the test blockstore`)
    }
    return found.bytes
  }

  /** Whether a block with `cid`'s multihash is present (always `true` for identity CIDs). */
  has (cid: CID): boolean {
    return cid.multihash.code === IDENTITY_CODE || this.#blocks.has(keyOf(cid))
  }

  /** Removes the block with `cid`'s multihash; returns whether there was one. Handy for "missing block" tests. */
  delete (cid: CID): boolean {
    return this.#blocks.delete(keyOf(cid))
  }

  /** Number of stored blocks (identity CIDs are not stored). */
  get size (): number {
    return this.#blocks.size
  }

  /** Every stored block as `[cid, bytes]`, in insertion order; `cid` is the CID it was first stored under. */
  * entries (): Generator<[CID, Uint8Array]> {
    for (const { cid, bytes } of this.#blocks.values()) yield [cid, bytes]
  }

  /**
   * This store as the blockstore that `ipfs-unixfs-importer` and
   * `ipfs-unixfs-exporter` take: `get()` yields the block as one chunk (and
   * honours `options.signal`), `put()` accepts bytes or chunk iterables.
   */
  asBlockstore (): UnixFSStorage {
    const read = (cid: CID): Uint8Array => this.get(cid)
    const get = function * (cid: CID, options?: { signal?: AbortSignal }): Generator<Uint8Array> {
      options?.signal?.throwIfAborted()
      yield read(cid)
    }
    const put = (cid: CID, value: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): CID | Promise<CID> => {
      if (value instanceof Uint8Array) return this.put(cid, value)
      return collect(value).then((bytes) => this.put(cid, bytes))
    }
    return { get, put }
  }
}

async function collect (source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const part of source) parts.push(part)
  return Buffer.concat(parts)
}

/**
 * Deterministic pseudo-random bytes (xorshift32 over a `Uint32Array`), fast
 * enough for multi-hundred-MiB test files. The same `size` and `seed` always
 * give the same bytes; different seeds give unrelated bytes.
 *
 * @param size - number of bytes
 * @param seed - any integer; `0` is allowed
 */
export function seededBytes (size: number, seed = 1): Uint8Array {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `seededBytes: size must be a non-negative integer, got ${size}`)
  }
  const words = new Uint32Array(Math.ceil(size / 4))
  // Mix the seed so that small seeds (0, 1, 2…) start far apart; xorshift32 must not start at 0.
  let x = Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b) >>> 0
  x ^= x >>> 13
  if (x === 0) x = 0x6d2b79f5
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    words[i] = x
  }
  return new Uint8Array(words.buffer, 0, size)
}

/**
 * Imports one file with `ipfs-unixfs-importer` and returns its root CID.
 *
 * The importer's defaults apply (CIDv1, raw leaves, 256 KiB chunks, balanced
 * layout with 174 links per node); pass `opts` (for example
 * `chunker: fixedSize({ chunkSize: 1024 })`, `layout`, `rawLeaves`,
 * `cidVersion`) to shape the DAG.
 *
 * @param content - the bytes, or an (async) iterable of chunks for content too large to hold at once
 */
export async function addFile (
  blocks: MemoryBlocks,
  content: Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: ImporterOptions = {}
): Promise<CID> {
  const store = blocks.asBlockstore()
  const result = content instanceof Uint8Array
    ? await importBytes(content, store, opts)
    : await importByteStream(content, store, opts)
  return result.cid
}

/**
 * Imports a directory tree and returns the CID of the wrapping root directory
 * (`wrapWithDirectory` is always on).
 *
 * Paths use `/` and may be nested (`'a/b/c.txt'`); intermediate directories
 * are created. An entry without `content` is an (empty) directory. To get a
 * HAMT-sharded directory, pass a small `shardSplitThresholdBytes` (e.g. `1`).
 *
 * @example
 * ```ts
 * const root = await addDirectory(blocks, [
 *   { path: 'readme.txt', content: new TextEncoder().encode('hi') },
 *   { path: 'data/big.bin', content: seededBytes(1 << 20) },
 *   { path: 'empty' }
 * ])
 * ```
 */
export async function addDirectory (
  blocks: MemoryBlocks,
  entries: Array<{ path: string, content?: Uint8Array }>,
  opts: ImporterOptions = {}
): Promise<CID> {
  const candidates = entries.map((e) => e.content === undefined ? { path: e.path } : { path: e.path, content: e.content })
  let root: CID | undefined
  // With wrapWithDirectory the wrapping directory is the last result.
  for await (const result of importer(candidates, blocks.asBlockstore(), { ...opts, wrapWithDirectory: true })) {
    root = result.cid
  }
  if (root === undefined) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'addDirectory: the importer produced no root')
  }
  return root
}

const HASHERS = new Map<number, MultihashHasher<number>>([
  [sha256.code, sha256],
  [sha512.code, sha512],
  [sha1.code, sha1],
  [identity.code, identity]
])

/**
 * Loads every block of a CARv1 (bytes, or a file path read as a stream) into
 * `blocks` and returns the CAR's roots.
 *
 * Each block's hash is checked against its CID (sha2-256, sha2-512, sha1 and
 * identity are supported).
 *
 * @throws {CidgetError} `CIDGET_ERR_HASH_MISMATCH` when a block does not match its CID,
 *   `CIDGET_ERR_NOT_AVAILABLE` for a hash function this loader does not know.
 */
export async function loadCar (blocks: MemoryBlocks, car: Uint8Array | string): Promise<CID[]> {
  const iterator = typeof car === 'string'
    ? await CarBlockIterator.fromIterable(createReadStream(car))
    : await CarBlockIterator.fromBytes(car)
  const roots = await iterator.getRoots()
  for await (const { cid, bytes } of iterator) {
    const hasher = HASHERS.get(cid.multihash.code)
    if (hasher === undefined) {
      throw new CidgetError('CIDGET_ERR_NOT_AVAILABLE', `loadCar: block ${cid.toString()} uses hash function 0x${cid.multihash.code.toString(16)}, which the test blockstore cannot verify`)
    }
    const digest = await hasher.digest(bytes)
    const expected = cid.multihash.digest
    // Truncated multihashes carry fewer digest bytes than the hash function produces.
    if (!equals(digest.digest.subarray(0, expected.length), expected) || expected.length > digest.digest.length) {
      throw new CidgetError('CIDGET_ERR_HASH_MISMATCH', `loadCar: block ${cid.toString()} does not match its hash`)
    }
    blocks.put(cid, bytes)
  }
  return roots
}
