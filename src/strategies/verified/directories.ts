import type { CID } from 'multiformats/cid'
import type * as dagPb from '@ipld/dag-pb'
import type { UnixFS } from 'ipfs-unixfs'
import { CidgetError } from '../../core/errors.js'
import { checkName, safeJoin } from '../../sink/names.js'
import { decode, invalid, declaredSize, hamtHash, hashBits, shardLinks, type DagBudget } from './dag.js'
import type { DagReader } from './reader.js'
import type { TreePrefetch } from '../../gateways/pool.js'

/** Children streamed ahead of the walk at most, in all… */
const MAX_AHEAD = 8
/** …declaring this many bytes in all; a child declaring more is not streamed ahead. */
const AHEAD_BYTES = 16 * 1024 * 1024

/** The bucket a HAMT shard node sits in, in its parent: `bits` bits of the name hashes from `offset` on. */
interface Bucket {
  offset: number
  bits: number
  bucket: number
}

/** A child of a directory: an entry, or a sub-shard of a sharded directory. */
interface Child {
  cid: CID
  /** What its link declares (unverified: only for planning). */
  size: number
  walk: () => Promise<void>
}

export interface DirectoryWalkInit {
  reader: DagReader
  /** The walk's budget: entries and depth. */
  budget: DagBudget
  concurrency: number
  signal: AbortSignal
  /** What to throw once the download stopped. */
  stopped: () => unknown
  /** Walks an entry (file, directory, symlink) at `path`. */
  entry: (cid: CID, path: string, depth: number) => Promise<void>
  /** Reads ahead the blocks among `cids` the walk will ask for soon. */
  readAhead: (cids: CID[]) => void
  /** True when nothing from the walk's next block on was written in an earlier run. */
  fresh: () => boolean
  /** Whether subtrees may come as CAR streams (block by block only: false). */
  streams: boolean
}

/**
 * The entries of a directory, for the verified walk: each name checked (safe,
 * once in its directory, within the limits) before it is walked; a plain
 * directory's names all before the first, a sharded directory's as its shard
 * nodes come, in their order (depth-first, as a CAR of the DAG sends them),
 * so a directory of any size is walked without listing it in memory first.
 */
export class DirectoryWalk {
  readonly #init: DirectoryWalkInit
  /** The stream of the whole subtree the walk is in, if one brings it. */
  #stream: TreePrefetch | undefined
  /** Streams started ahead of the walk (not entered yet), and the bytes their subtrees declare. */
  readonly #ahead = { count: 0, bytes: 0 }

  constructor (init: DirectoryWalkInit) {
    this.#init = init
  }

  /** Whether a tree stream brings what the walk is in now (then nothing else asks for its blocks ahead). */
  covered (): boolean {
    return this.#stream?.covering === true
  }

  /**
   * Runs `walk` over the subtree of `cid` (a directory or HAMT shard that
   * declares `declared` bytes) with the whole subtree streamed in one request
   * where the source can, unless a stream brings it already, or part of it
   * may have been written in an earlier run (a resume fetches nothing twice).
   */
  async streamed (cid: CID, declared: number, walk: () => Promise<void>): Promise<void> {
    // a directory that came (in part) in a stream that broke off is not asked for whole again: its entries are, in turn
    const stream = !this.#init.streams || this.covered() || !this.#init.fresh() || this.#init.reader.brought(cid)
      ? undefined
      : this.#init.reader.prefetchTree(cid, declared)
    if (stream === undefined) {
      await walk()
      return
    }
    await this.#within(stream, walk)
  }

  /** Checks the name of an entry of directory `dir` (which holds `names` so far): a safe name, not there yet. */
  #name (dir: CID, names: Set<string>, name: string, path: string): void {
    checkName(name, dir.toString())
    if (names.has(name)) throw new CidgetError('CIDGET_ERR_UNSAFE_NAME', `Refusing duplicate name ${JSON.stringify(name)} in ${dir.toString()}`)
    names.add(name)
    this.#init.budget.listing(names.size, path)
  }

  /** The entries of the plain directory `dir` at `path`: every name checked before any is written. */
  async entries (dir: CID, listed: Array<{ name: string, cid: CID, size: number }>, path: string, depth: number): Promise<void> {
    const names = new Set<string>()
    for (const e of listed) this.#name(dir, names, e.name, path)
    const concurrency = this.#init.concurrency
    await this.#children(listed.map((e, j) => ({
      cid: e.cid,
      size: e.size,
      walk: async () => {
        if (j % concurrency === 0 && this.#ahead.count === 0) this.#init.readAhead(listed.slice(j, j + concurrency * 2).map(e => e.cid))
        await this.#init.entry(e.cid, safeJoin(path, [e.name], dir.toString()), depth + 1)
      }
    })))
  }

  /**
   * A HAMT shard node of the sharded directory at `path`, walked in its
   * links' order, depth-first (the order of a CAR of the DAG): each entry
   * as it comes, each sub-shard (streamed whole where it can be) in its turn.
   * Each entry must sit in the buckets its name hashes to, all the way down
   * (`above`: the buckets of the shard nodes on the way): two entries of one
   * name would then share a bucket of one node, which `shardLinks` refuses,
   * so no list of the directory's names is held, whatever its size.
   * `listed` counts its entries.
   */
  async shard (dir: CID, node: dagPb.PBNode, fs: UnixFS, path: string, depth: number, listed = { count: 0 }, above: Bucket[] = []): Promise<void> {
    const { links, bits } = shardLinks(dir, node, fs)
    const offset = above.reduce((sum, b) => sum + b.bits, 0)
    if (this.#ahead.count === 0) this.#init.readAhead(links.map((l) => 'shard' in l ? l.shard : l.cid).slice(0, this.#init.concurrency * 2))
    await this.#children(links.map((link) => 'shard' in link
      ? {
          cid: link.shard,
          size: link.size,
          walk: async () => {
            this.#init.budget.depth(depth + above.length + 1, link.shard)
            this.#init.budget.entry()
            const bytes = await this.#init.reader.get(link.shard)
            const sub = decode(link.shard, bytes)
            if (sub.fs.type !== 'hamt-sharded-directory') throw invalid(link.shard, `UnixFS ${sub.fs.type} where a HAMT shard belongs`)
            await this.#init.reader.keep(link.shard, bytes)
            const below = [...above, { offset, bits, bucket: link.bucket }]
            await this.streamed(link.shard, declaredSize(bytes, sub.node), async () => { await this.shard(link.shard, sub.node, sub.fs, path, depth, listed, below) })
          }
        }
      : {
          cid: link.cid,
          size: link.size,
          walk: async () => {
            checkName(link.name, dir.toString())
            const hash = hamtHash(link.name)
            for (const b of [...above, { offset, bits, bucket: link.bucket }]) {
              if (hashBits(hash, b.offset, b.bits) !== b.bucket) throw invalid(dir, `HAMT entry ${JSON.stringify(link.name)} is not in the bucket its name hashes to`)
            }
            this.#init.budget.listing(++listed.count, path)
            await this.#init.entry(link.cid, safeJoin(path, [link.name], dir.toString()), depth + 1)
          }
        }))
  }

  /**
   * Walks the children of a directory (entries, or a shard node's links) in
   * order. Where no stream brings them (the directory was too large to come
   * whole from one gateway while several can share it, or its stream broke
   * off), each child that declares at most AHEAD_BYTES is streamed whole on
   * its own, several ahead of the walk (spread over the gateways by the
   * pool, within AHEAD_BYTES and MAX_AHEAD for the whole walk), and the walk
   * takes each stream over when it gets there.
   */
  async #children (children: Child[]): Promise<void> {
    const ahead = new Map<number, { stream: TreePrefetch, size: number }>()
    let next = 0
    let able = this.#init.streams
    try {
      for (let j = 0; j < children.length; j++) {
        if (this.#init.signal.aborted) throw this.#init.stopped()
        if (able && !this.covered() && this.#init.fresh()) {
          for (next = Math.max(next, j); next < children.length && this.#ahead.count < MAX_AHEAD; next++) {
            const { cid, size } = children[next] as Child
            // walked when reached: its own children, or runs of a file's leaves (as a child a broken stream brought in part)
            if (size > AHEAD_BYTES || this.#init.reader.brought(cid)) continue
            if (this.#ahead.bytes + size > AHEAD_BYTES) break
            const stream = this.#init.reader.prefetchTree(cid, size, true)
            if (stream === undefined) {
              able = false
              break
            }
            ahead.set(next, { stream, size })
            this.#ahead.count++
            this.#ahead.bytes += size
          }
        }
        const child = children[j] as Child
        const mine = ahead.get(j)
        if (mine === undefined) {
          await child.walk()
          continue
        }
        ahead.delete(j)
        this.#ahead.count--
        this.#ahead.bytes -= mine.size
        await this.#within(mine.stream, child.walk)
      }
    } finally {
      for (const { stream, size } of ahead.values()) {
        stream.release()
        this.#ahead.count--
        this.#ahead.bytes -= size
      }
    }
  }

  /** Runs `walk` with `stream` bringing what it walks: entered first, released after. */
  async #within (stream: TreePrefetch, walk: () => Promise<void>): Promise<void> {
    const outer = this.#stream
    this.#stream = stream
    stream.enter()
    try {
      await walk()
    } finally {
      this.#stream = outer
      stream.release()
    }
  }
}
