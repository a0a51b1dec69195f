import { setMaxListeners } from 'node:events'
import { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import { CidgetError } from '../../core/errors.js'
import type { DownloadJournal } from '../../core/journal.js'
import type { RunRange } from '../../gateways/car.js'
import type { BlockBytes } from '../../gateways/block.js'
import type { EntityPrefetch, TreePrefetch } from '../../gateways/pool.js'

/** Where verified blocks come from (the gateway pool). Every block it returns matches its CID. */
export interface BlockSource {
  get: (cid: CID, signal?: AbortSignal) => Promise<Uint8Array>
  /** Optional: `get`, but a block may come as the pieces it arrived in (for leaves that are only hashed and written). */
  getPieces?: (cid: CID, signal?: AbortSignal) => Promise<BlockBytes>
  /**
   * Optional: starts fetching consecutive leaves of the file node `entity`,
   * which fill its bytes `range`, in one request; their `get()` calls then
   * take them from it. False when the source cannot (the caller asks block by block).
   */
  prefetchRun?: (entity: CID, range: RunRange, leaves: CID[], signal: AbortSignal) => boolean
  /**
   * Optional: starts streaming bytes `range` of `entity` in one request before
   * its DAG is known (root, inner nodes, first leaves); `get()` of `entity` and
   * of the blocks then passed to `expect` wait for it. Undefined when the
   * source cannot.
   */
  prefetchEntity?: (entity: CID, range: RunRange, signal: AbortSignal) => EntityPrefetch | undefined
  /**
   * Optional: starts streaming the whole DAG of `root` (which declares
   * `declared` bytes) in one request; `get()` of its blocks then waits for
   * the stream while it goes (`ahead`: once it is entered). Undefined when the source cannot, or would
   * rather not (see the pool's `prefetchTree`).
   */
  prefetchTree?: (root: CID, declared: number, signal: AbortSignal, ahead?: boolean) => TreePrefetch | undefined
  /** Optional: whether a tree stream brought `cid` already (then its subtree is not asked for whole again). */
  brought?: (cid: CID) => boolean
}

/** The part of a download's journal that keeps its inner blocks between runs. */
export type KeptBlocks = Pick<DownloadJournal, 'keptBlockKeys' | 'keptBlock' | 'keepBlock'>

/** The multicodec of raw blocks (leaves). */
const RAW = 0x55

/** 32-bit FNV-1a of a kept block's CID (as a small integer, which a Set holds without an object). */
export function fingerprint (key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return h | 0
}

/** Bytes of kept blocks held in memory at most: the rest are read back from the record when needed. */
const KEPT_CACHE_BYTES = 2 * 1024 * 1024

/** The storage interface ipfs-unixfs-exporter reads blocks through. */
export interface ExporterStorage {
  get: (cid: CID) => AsyncGenerator<Uint8Array>
}

/**
 * Reads the blocks of one download: from the record's copy of its inner blocks
 * first, else from the block source (verified). Inner blocks are kept in the
 * record, so a resume never fetches them again; a bounded number of blocks can
 * be read ahead of the walk. Only a 32-bit fingerprint of each kept block's
 * CID stays in memory (about 20 bytes each, against 100 for the CID: a
 * million-entry tree keeps some 70,000 directory shards), with the last 2 MiB
 * of their bytes: a tree of millions of entries keeps its
 * directories in the record, not in memory.
 */
export class DagReader {
  readonly #journal: KeptBlocks
  readonly #source: BlockSource
  readonly #signal: AbortSignal
  /**
   * The fingerprints of the CIDs of every kept block ({@link fingerprint}). Two CIDs may share
   * one (a given pair once in 4 billion): the second is then looked up in the record and not
   * found (fetched), or not kept (fetched again by a resume).
   */
  readonly #keys: Set<number>
  /** Bytes of kept blocks lately used, least recently used first. */
  readonly #cache = new Map<string, Uint8Array>()
  #cacheBytes = 0
  readonly #ahead = new Map<string, Promise<Uint8Array>>()
  readonly #maxAhead: number
  #resolved: { cid: CID, bytes: Uint8Array } | undefined

  private constructor (journal: KeptBlocks, source: BlockSource, signal: AbortSignal, keys: Set<string>, maxAhead: number) {
    this.#journal = journal
    this.#source = source
    this.#signal = signal
    // every block request in flight listens on it: many listeners are expected, not a leak
    setMaxListeners(0, signal)
    this.#keys = new Set()
    for (const key of keys) this.#keys.add(fingerprint(key))
    this.#maxAhead = maxAhead
  }

  static async open (journal: KeptBlocks, source: BlockSource, signal: AbortSignal, maxAhead: number): Promise<DagReader> {
    return new DagReader(journal, source, signal, await journal.keptBlockKeys(), maxAhead)
  }

  /** True when the block is one of the kept inner blocks. */
  kept (cid: CID): boolean {
    return this.#keys.has(fingerprint(cid.toString()))
  }

  /** A kept block (from memory, else from the record), without any request; undefined when it is not kept. */
  async keptBytes (cid: CID): Promise<Uint8Array | undefined> {
    const key = cid.toString()
    if (!this.#keys.has(fingerprint(key))) return undefined
    const hit = this.#cache.get(key)
    if (hit !== undefined) {
      this.#cache.delete(key)
      this.#cache.set(key, hit)
      return hit
    }
    const bytes = await this.#journal.keptBlock(key)
    if (bytes !== undefined) this.#remember(key, bytes)
    return bytes
  }

  #remember (key: string, bytes: Uint8Array): void {
    this.#cache.set(key, bytes)
    this.#cacheBytes += bytes.byteLength
    for (const [k, b] of this.#cache) {
      if (this.#cacheBytes <= KEPT_CACHE_BYTES) break
      this.#cache.delete(k)
      this.#cacheBytes -= b.byteLength
    }
  }

  /** The block: kept, read ahead, just read by path resolution, or fetched now. */
  async get (cid: CID): Promise<Uint8Array> {
    const key = cid.toString()
    if (this.#keys.has(fingerprint(key))) {
      const local = await this.keptBytes(cid)
      if (local !== undefined) return local
    }
    const early = this.#ahead.get(key)
    if (early !== undefined) {
      this.#ahead.delete(key)
      return await early
    }
    if (this.#resolved !== undefined && this.#resolved.cid.equals(cid)) return this.#resolved.bytes
    return await this.#source.get(cid, this.#signal)
  }

  /** A leaf that is only written: as {@link get}, but it may come as the pieces it arrived in (no copy). */
  async getLeaf (cid: CID): Promise<BlockBytes> {
    // a raw block is a leaf, never kept; its CID is made a string only when some blocks are read ahead
    // (a tree of small files takes tens of thousands of leaves a second from its streams)
    if (this.#source.getPieces === undefined || (cid.code !== RAW && this.kept(cid)) ||
      (this.#ahead.size > 0 && this.#ahead.has(cid.toString())) || (this.#resolved !== undefined && this.#resolved.cid.equals(cid))) {
      return await this.get(cid)
    }
    return await this.#source.getPieces(cid, this.#signal)
  }

  /** Keeps an inner block in the download's record (once). */
  async keep (cid: CID, bytes: Uint8Array): Promise<void> {
    const key = cid.toString()
    const print = fingerprint(key)
    // a fingerprint seen before: this block, kept already, or another one that shares it (kept too,
    // or keptBytes would find nothing for it and the walk take it for a leaf done earlier)
    if (this.#keys.has(print) && (this.#cache.has(key) || await this.#journal.keptBlock(key) !== undefined)) return
    this.#keys.add(print)
    this.#remember(key, bytes)
    await this.#journal.keepBlock(key, bytes)
  }

  /** Starts fetching a block that the walk will ask for soon (bounded; errors surface at `get`). */
  readAhead (cid: CID): void {
    const key = cid.toString()
    if (this.#ahead.has(key) || this.#keys.has(fingerprint(key)) || this.#ahead.size >= this.#maxAhead) return
    const p = this.#source.get(cid, this.#signal)
    p.catch(() => {})
    this.#ahead.set(key, p)
  }

  /** Asks the source to stream the first bytes of `entity` (see {@link BlockSource.prefetchEntity}); undefined when it cannot. */
  prefetchEntity (entity: CID, range: RunRange): EntityPrefetch | undefined {
    return this.#source.prefetchEntity?.(entity, range, this.#signal)
  }

  /** Asks the source to stream the whole DAG of `root` (see {@link BlockSource.prefetchTree}); undefined when it cannot. */
  prefetchTree (root: CID, declared: number, ahead = false): TreePrefetch | undefined {
    return this.#source.prefetchTree?.(root, declared, this.#signal, ahead)
  }

  /** Whether a tree stream of the source brought `cid` already (see {@link BlockSource.brought}). */
  brought (cid: CID): boolean {
    return this.#source.brought?.(cid) ?? false
  }

  /** Asks the source for a run of leaves in one request (see {@link BlockSource.prefetchRun}); false when it cannot. */
  prefetchRun (entity: CID, range: RunRange, leaves: CID[]): boolean {
    return this.#source.prefetchRun?.(entity, range, leaves, this.#signal) ?? false
  }

  /** For ipfs-unixfs-exporter: verified blocks, dag-pb ones kept (directories, shards). */
  storage (): ExporterStorage {
    const get = this.get.bind(this)
    const keep = this.keep.bind(this)
    const remember = (cid: CID, bytes: Uint8Array): void => { this.#resolved = { cid, bytes } }
    return {
      get: async function * (cid: CID): AsyncGenerator<Uint8Array> {
        const bytes = await get(cid)
        if (cid.code === dagPb.code) await keep(cid, bytes)
        remember(cid, bytes)
        yield bytes
      }
    }
  }

  /** The CID that `path` names inside `root` ('' for the root itself), walking verified blocks. */
  async resolve (root: string, path: string): Promise<CID> {
    if (path === '') return CID.parse(root)
    try {
      let last: CID | undefined
      // loaded when needed: a CID without a path never walks one
      const { walkPath } = await import('ipfs-unixfs-exporter')
      for await (const entry of walkPath(`${root}${path}`, this.storage(), { signal: this.#signal })) last = entry.cid
      if (last === undefined) throw new CidgetError('CIDGET_ERR_NOT_FOUND', `${path} not found in ${root}`)
      return last
    } catch (err) {
      if (this.#signal.aborted) throw this.#signal.reason
      throw exporterError(err, `Resolving ${path} in ${root}`)
    }
  }
}

/** Maps errors of ipfs-unixfs-exporter (path resolution, HAMT listing) onto our codes. */
export function exporterError (err: unknown, what: string): unknown {
  if (err instanceof CidgetError) return err
  const name = (err as { name?: string }).name ?? ''
  const message = (err as Error).message ?? String(err)
  if (name === 'NotFoundError' || /not found|no link named/i.test(message)) {
    return new CidgetError('CIDGET_ERR_NOT_FOUND', `${what}: ${message}`, { cause: err })
  }
  if (name === 'AbortError') return err
  return new CidgetError('CIDGET_ERR_DAG_INVALID', `${what}: ${message}`, { cause: err })
}
