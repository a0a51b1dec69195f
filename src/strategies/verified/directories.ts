import type { CID } from 'multiformats/cid'
import type * as dagPb from '@ipld/dag-pb'
import type { UnixFS } from 'ipfs-unixfs'
import { CidgetError } from '../../core/errors.js'
import { checkName, safeJoin } from '../../sink/names.js'
import { decode, invalid, declaredSize, shardLinks, type DagBudget } from './dag.js'
import type { DagReader } from './reader.js'
import type { TreePrefetch } from '../../gateways/pool.js'

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
    const stream = this.covered() || !this.#init.fresh() ? undefined : this.#init.reader.prefetchTree(cid, declared)
    if (stream === undefined) {
      await walk()
      return
    }
    const outer = this.#stream
    this.#stream = stream
    try {
      await walk()
    } finally {
      this.#stream = outer
      stream.release()
    }
  }

  /** Checks the name of an entry of directory `dir` (which holds `names` so far): a safe name, not there yet. */
  #name (dir: CID, names: Set<string>, name: string, path: string): void {
    checkName(name, dir.toString())
    if (names.has(name)) throw new CidgetError('CIDGET_ERR_UNSAFE_NAME', `Refusing duplicate name ${JSON.stringify(name)} in ${dir.toString()}`)
    names.add(name)
    this.#init.budget.listing(names.size, path)
  }

  /** The entries of the plain directory `dir` at `path`: every name checked before any is written. */
  async entries (dir: CID, listed: Array<{ name: string, cid: CID }>, path: string, depth: number): Promise<void> {
    const names = new Set<string>()
    for (const e of listed) this.#name(dir, names, e.name, path)
    const concurrency = this.#init.concurrency
    for (let j = 0; j < listed.length; j++) {
      if (j % concurrency === 0) this.#init.readAhead(listed.slice(j, j + concurrency * 2).map(e => e.cid))
      const e = listed[j] as { name: string, cid: CID }
      await this.#init.entry(e.cid, safeJoin(path, [e.name], dir.toString()), depth + 1)
    }
  }

  /**
   * A HAMT shard node of the sharded directory at `path`, walked in its
   * links' order, depth-first (the order of a CAR of the DAG): each entry
   * as it comes, each sub-shard (streamed whole where it can be) in its turn.
   * Names are checked as they come; `names` holds those of the directory so far.
   */
  async shard (dir: CID, node: dagPb.PBNode, fs: UnixFS, path: string, depth: number, names = new Set<string>(), level = 0): Promise<void> {
    const links = shardLinks(dir, node, fs)
    this.#init.readAhead(links.map((l) => 'shard' in l ? l.shard : l.cid).slice(0, this.#init.concurrency * 2))
    for (const link of links) {
      if (this.#init.signal.aborted) throw this.#init.stopped()
      if (!('shard' in link)) {
        this.#name(dir, names, link.name, path)
        await this.#init.entry(link.cid, safeJoin(path, [link.name], dir.toString()), depth + 1)
        continue
      }
      this.#init.budget.depth(depth + level + 1, link.shard)
      this.#init.budget.entry()
      const bytes = this.#init.reader.cached(link.shard) ?? await this.#init.reader.get(link.shard)
      const sub = decode(link.shard, bytes)
      if (sub.fs.type !== 'hamt-sharded-directory') throw invalid(link.shard, `UnixFS ${sub.fs.type} where a HAMT shard belongs`)
      await this.#init.reader.keep(link.shard, bytes)
      await this.streamed(link.shard, declaredSize(bytes, sub.node), async () => { await this.shard(link.shard, sub.node, sub.fs, path, depth, names, level + 1) })
    }
  }
}
