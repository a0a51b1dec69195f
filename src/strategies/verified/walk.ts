import type { CID } from 'multiformats/cid'
import { code as DAG_PB } from '@ipld/dag-pb'
import * as rawCodec from 'multiformats/codecs/raw'
import { toCidgetError } from '../../core/errors.js'
import { MAX_BLOCK_BYTES } from '../../gateways/block.js'
import { FileHasher } from '../../sink/file-hash.js'
import { checkSymlink } from '../../sink/names.js'
import type { OutputTree } from '../../sink/tree.js'
import type { DiskSpace } from '../../sink/space.js'
import type { Bitmap } from './bitmap.js'
import { Checkpoints } from './checkpoint.js'
import type { VerifiedContext } from './context.js'
import { DagBudget, decode, declaredSize, invalid } from './dag.js'
import { DirectoryWalk } from './directories.js'
import { LeafWriter } from './leaves.js'
import type { DagReader } from './reader.js'
import type { DownloadJournal } from '../../core/journal.js'
import { RunPlanner, type PlannedLeaf } from './runs.js'

/** A leaf the planner holds, with where it is written: the file, and its offset there. */
interface WrittenLeaf extends PlannedLeaf {
  path: string
  at: number
}

/** CAR requests started ahead of the walk. */
const DEFAULT_RUNS_AHEAD = 4

const EMPTY = new Uint8Array(0)

export interface WalkInit {
  ctx: VerifiedContext
  /** Aborted when the download stops (or fails): every request of the walk ends with it. */
  internal: AbortController
  reader: DagReader
  tree: OutputTree
  space: DiskSpace
  journal: DownloadJournal
  /** Blocks durable from earlier runs. */
  done: Bitmap
  /** Their bytes. */
  durable: number
  root: CID
  rootBytes: Uint8Array
  isDirectory: boolean
  /** A file's size; null for a directory. */
  total: number | null
  /** A directory's size as its root declares it (unverified), shown as an estimate while the total is unknown. */
  estimate: number | null
  /** The stream of the root and the file's first bytes, if one was started. */
  early: ReturnType<DagReader['prefetchEntity']>
  /** The file's bytes below this come with the root. */
  earlyEnd: number
  /** Leaves per CAR run; 0 or 1: block by block. */
  runBlocks: number
}

/**
 * The walk of a verified download: the UnixFS DAG depth-first, by one cursor
 * that reads dag-pb nodes (a few ahead) while raw leaves are fetched in
 * parallel (in CAR runs where the source can) and written at their offsets.
 * Each data-bearing block gets the next number in walk order; blocks done in
 * an earlier run are skipped.
 */
export class VerifiedWalk {
  /** A single file's SHA-256, computed as its blocks arrive, mostly in order. */
  readonly hasher: FileHasher | undefined
  readonly checkpoints: Checkpoints
  readonly #init: WalkInit
  readonly #ctx: VerifiedContext
  readonly #reader: DagReader
  readonly #tree: OutputTree
  readonly #done: Bitmap
  readonly #signal: AbortSignal
  readonly #budget: DagBudget
  readonly #leaves: LeafWriter
  readonly #planner: RunPlanner<WrittenLeaf>
  /** The window of a node's children is topped up as soon as a whole run fits in it again. */
  readonly #runRefill: number
  /** Inner nodes whose leaves the planner has: their own walk leaves the runs to it. */
  readonly #plannedNodes = new Set<string>()
  /** Directories count finished files: a file is finished once walked and all its blocks written. */
  readonly #openFiles = new Map<string, { blocks: number, walked: boolean }>()
  #filesDone = 0
  /** The next data-bearing block, in walk order. */
  #index = 0
  /** Bytes written, durable or not. */
  #written: number
  #total: number | null
  #failure: unknown
  /** Directories' entries, and the streams of whole subtrees. */
  readonly #dirs: DirectoryWalk

  constructor (init: WalkInit) {
    const { ctx, reader, tree, done } = init
    this.#init = init
    this.#ctx = ctx
    this.#reader = reader
    this.#tree = tree
    this.#done = done
    this.#signal = init.internal.signal
    this.#budget = new DagBudget(ctx.limits)
    const fresh = done.last() + 1
    this.#dirs = new DirectoryWalk({
      reader,
      budget: this.#budget,
      concurrency: ctx.concurrency,
      signal: this.#signal,
      stopped: () => this.#stopped(),
      entry: async (cid, path, depth) => { await this.#entry(cid, path, depth) },
      readAhead: (cids) => { this.#readAhead(cids) },
      fresh: () => this.#index >= fresh,
      streams: init.runBlocks > 1
    })
    this.#written = init.durable
    this.#total = init.total
    const fail = (err: unknown): void => { this.#fail(err) }
    this.checkpoints = new Checkpoints({
      done,
      durable: init.durable,
      syncIntervalBytes: ctx.policy.syncIntervalBytes,
      syncIntervalMs: ctx.policy.syncIntervalMs,
      now: () => ctx.now(),
      sync: async () => { await tree.syncAll() },
      record: async (blocks, bytes) => { await init.journal.checkpoint(blocks, bytes) },
      signal: this.#signal,
      fail
    })
    this.hasher = init.isDirectory ? undefined : new FileHasher(tree.root, init.total ?? 0)
    this.#leaves = new LeafWriter({
      tree,
      space: init.space,
      hasher: this.hasher,
      reader,
      concurrency: ctx.concurrency,
      signal: this.#signal,
      unwritten: () => this.#budget.declared - this.#written,
      written: async (i, length) => { this.#wrote(i, length) },
      fail,
      stopped: () => this.#stopped()
    })
    const runWindow = init.runBlocks * (ctx.runsAhead ?? DEFAULT_RUNS_AHEAD)
    this.#runRefill = runWindow - init.runBlocks
    this.#planner = new RunPlanner<WrittenLeaf>({
      runBlocks: init.runBlocks,
      children: init.runBlocks > 1,
      spread: ctx.runSpread ?? 1,
      window: runWindow,
      isDone: (i) => done.has(i),
      start: (entity, range, leaves) => {
        if (!reader.prefetchRun(entity, range, leaves.map((l) => l.cid))) return false
        for (const leaf of leaves) this.#leaves.onArrival(leaf.index, leaf.cid, leaf.path, leaf.at, leaf.size)
        return true
      }
    })
  }

  /** Bytes written so far: once the walk is over, the output's size. */
  get written (): number {
    return this.#written
  }

  /**
   * Walks the DAG and writes it, then records the last checkpoint and checks
   * the tree's links on disk. On failure nothing of it goes on, what is
   * written is recorded, and the output is closed (a tree refused for a link
   * that leads out is removed).
   */
  async run (): Promise<void> {
    const { ctx, tree, isDirectory, root, rootBytes } = this.#init
    try {
      if (isDirectory) {
        await this.#entry(root, tree.root, 0, rootBytes)
      } else {
        this.#budget.declare(this.#total ?? 0)
        await this.#fileNode(root, tree.root, 0, undefined, 0, rootBytes)
      }
      await this.#leaves.drain() // none left: the walk reached every leaf it planned
      if (this.#failure !== undefined) throw this.#failure
      this.checkpoints.stop()
      await this.checkpoints.checkpoint()
      // every link resolved on disk, through the others: one that leads out is refused, or left out
      await tree.confineLinks(ctx.skipSymlinks)
      if (isDirectory) this.#total = this.#written
      this.#progress()
    } catch (thrown) {
      this.#init.internal.abort(thrown)
      this.checkpoints.stop()
      await this.#leaves.settle()
      // keep what is already written: durable, and recorded
      await this.checkpoints.checkpoint().catch(() => {})
      this.hasher?.close()
      const err = toCidgetError(this.#failure ?? thrown)
      if (isDirectory && err.code === 'CIDGET_ERR_UNSAFE_SYMLINK' && !ctx.signal.aborted) {
        // a tree holding a link that leads out keeps nothing on disk: no such link stays for a later
        // write to go through (a resume fetches it again, and refuses it again)
        // (its progress forgotten first: a run that lost its lease deletes nothing; a next run that finds
        // the staging directory without progress empties it as stale)
        let leaseLost = false
        await this.#init.journal.forgetProgress().catch((e: unknown) => { leaseLost = toCidgetError(e).code === 'CIDGET_ERR_LEASE_HELD' })
        if (leaseLost) await tree.close()
        else await tree.remove()
      } else {
        await tree.close()
      }
      if (ctx.signal.aborted) throw ctx.signal.reason
      throw err
    }
  }

  #fail (err: unknown): void {
    if (this.#failure === undefined) this.#failure = err
    this.#init.internal.abort(err)
  }

  /** What to throw once the download stopped: its first failure, or the reason it was stopped. */
  #stopped (): unknown {
    return this.#failure ?? this.#ctx.signal.reason
  }

  #progress (): void {
    const ctx = this.#ctx
    if (this.#init.isDirectory) ctx.onProgress(this.#written, this.#total, ctx.lastGateway() ?? '', this.#filesDone, this.#init.estimate ?? undefined)
    else ctx.onProgress(this.#written, this.#total, ctx.lastGateway() ?? '')
  }

  #fileEvent (path: string, change: 'block' | 'written' | 'walked'): void {
    const f = this.#openFiles.get(path) ?? { blocks: 0, walked: false }
    if (change === 'block') f.blocks++
    else if (change === 'written') f.blocks--
    else f.walked = true
    if (f.walked && f.blocks === 0) {
      this.#openFiles.delete(path)
      this.#filesDone++
      this.#progress()
    } else {
      this.#openFiles.set(path, f)
    }
  }

  /** Block `i` of `bytes` bytes is written: counted, and checkpointed in time. */
  #wrote (i: number, bytes: number): void {
    this.#written += bytes
    this.#progress()
    this.checkpoints.written(i, bytes)
  }

  /** Whether the leaf at `at` of `path` comes in the first request, with the root. */
  #comesEarly (path: string, at: number): boolean {
    return at < this.#init.earlyEnd && path === this.#tree.root
  }

  /**
   * Reads ahead the uncached dag-pb blocks among `cids` that are not done yet.
   * Their numbers can be predicted until the first cached (inner) node: an
   * uncached node is a leaf or was never reached, and in both cases it gets
   * the next number.
   */
  #readAhead (cids: CID[]): void {
    if (this.#dirs.covered()) return // the stream brings them
    let next = this.#index
    for (const cid of cids) {
      if (this.#reader.kept(cid)) return
      if (cid.code === DAG_PB && !this.#done.has(next)) this.#reader.readAhead(cid)
      next++
    }
  }

  /**
   * A raw leaf of a file at `offset`: written (once its run delivers it, or
   * fetched) by one of the `concurrency` writers. Its own method, called by
   * the parent's loop for each of its raw children: V8 then optimizes this
   * small function for the walk's hot path instead of all of fileNode, again
   * after each deoptimization (about 0.2 s of a compiler thread per GiB,
   * against 0.1 s now).
   */
  async #rawLeaf (cid: CID, path: string, offset: number, declared: number | undefined, given?: Uint8Array): Promise<void> {
    if (this.#signal.aborted) throw this.#stopped()
    const i = this.#index++
    if (this.#done.has(i)) {
      this.hasher?.written(offset, declared ?? 0) // on disk since an earlier run
      return
    }
    this.#fileEvent(path, 'block')
    const arrival = this.#leaves.take(i)
    await this.#leaves.dispatch(async () => {
      await (arrival ?? this.#leaves.writeLeaf(i, cid, path, offset, declared, given))
      this.#fileEvent(path, 'written')
    })
  }

  /** The data a file node carries itself, at `at` of `path`: the next block number. */
  async #nodeData (path: string, at: number, data: Uint8Array): Promise<void> {
    const i = this.#index++
    if (!this.#done.has(i)) await this.#leaves.write(i, path, at, data)
    else this.hasher?.written(at, data.byteLength)
  }

  /** One node of a file at `offset`; `declared` is the size its parent says it holds. */
  async #fileNode (cid: CID, path: string, offset: number, declared: number | undefined, depth: number, given?: Uint8Array): Promise<void> {
    this.#budget.depth(depth, cid)
    if (this.#signal.aborted) throw this.#stopped()
    if (cid.code === rawCodec.code) {
      await this.#rawLeaf(cid, path, offset, declared, given)
      return
    }
    if (cid.code !== DAG_PB) throw invalid(cid, `codec 0x${cid.code.toString(16)} inside a file`)
    let bytes = given ?? await this.#reader.keptBytes(cid)
    if (bytes === undefined) {
      if (this.#done.has(this.#index)) { // a leaf written in an earlier run
        this.#index++
        this.hasher?.written(offset, declared ?? 0)
        return
      }
      bytes = await this.#reader.get(cid)
    }
    const { node, fs } = decode(cid, bytes)
    if (fs.type !== 'file' && fs.type !== 'raw') throw invalid(cid, `UnixFS ${fs.type} inside a file`)
    const data = fs.data ?? EMPTY
    if (node.Links.length === 0) {
      if (declared !== undefined && data.byteLength !== declared) {
        throw invalid(cid, `holds ${data.byteLength} bytes where its parent declares ${declared}`)
      }
      await this.#nodeData(path, offset, data)
      return
    }
    if (fs.blockSizes.length !== node.Links.length) throw invalid(cid, `${node.Links.length} links but ${fs.blockSizes.length} block sizes`)
    const size = Number(fs.fileSize())
    if (declared !== undefined && size !== declared) throw invalid(cid, `declares ${size} bytes where its parent declares ${declared}`)
    await this.#reader.keep(cid, bytes)
    if (data.byteLength > 0) await this.#nodeData(path, offset, data)
    await this.#fileChildren(cid, node.Links.map(l => l.Hash), fs.blockSizes.map(Number), path, offset, offset + data.byteLength, depth)
  }

  /** The children of file node `cid` (at `offset` of `path`), from `at` on, with their runs. */
  async #fileChildren (cid: CID, children: CID[], sizes: number[], path: string, offset: number, at: number, depth: number): Promise<void> {
    const planner = this.#planner
    const concurrency = this.#ctx.concurrency
    const starts: number[] = []
    for (let j = 0, s = at - offset; j < sizes.length; s += sizes[j] as number, j++) starts.push(s)
    // the children that come with the root are waited for, not asked of a gateway again
    for (let j = 0; j < children.length && this.#comesEarly(path, offset + (starts[j] as number)); j++) this.#init.early?.expect(children[j] as CID)
    let covered = 0 // children below this one are in a run already, or not for runs
    // a node of inner nodes: the leaves of the next child are planned while the walk is in this one,
    // so that runs keep going across the children's boundaries
    const twoLevels = planner.children && planner.enabled && children.length > 0 && children.every(c => c.code === DAG_PB)
    const plannedLeaves = this.#plannedNodes.has(cid.toString())
    // a tree stream brings the leaves in the walk's order: no runs ask for them again
    const streamed = this.#dirs.covered()
    let planned = -1 // children up to this one are registered, or could not be
    let nextBase: number | undefined // the first block number of child planned + 1, when known now
    // a planning node reads ahead only the two children it plans first: more would take the
    // gateways' connections from its first runs (it plans each next child itself as the walk goes)
    const ahead = twoLevels ? 2 : concurrency * 2
    for (let j = 0; j < children.length; j++) {
      if (j % concurrency === 0) this.#readAhead(children.slice(j, j + ahead))
      if (streamed) {
        // the stream's blocks are taken as the walk and its writers ask for them
      } else if (twoLevels && planner.enabled) {
        if (planned < j) {
          nextBase = await this.#plan(cid, path, offset, children[j] as CID, sizes[j] as number, starts[j] as number, j, this.#index)
          planned = j
        }
        if (planned === j && j + 1 < children.length && nextBase !== undefined) {
          nextBase = await this.#plan(cid, path, offset, children[j + 1] as CID, sizes[j + 1] as number, starts[j + 1] as number, j + 1, nextBase)
          planned = j + 1
        }
        planner.advance(this.#index)
      } else if (plannedLeaves) {
        planner.advance(this.#index)
      } else if (planner.children && j >= covered - this.#runRefill) {
        covered = Math.max(covered, j)
        covered = this.#startChildren(cid, path, offset, children, starts, sizes, j, covered)
      }
      const len = sizes[j] as number
      const child = children[j] as CID
      if (child.code === rawCodec.code && this.#budget.allows(depth + 1)) await this.#rawLeaf(child, path, at, len)
      else await this.#fileNode(child, path, at, len, depth + 1)
      at += len
    }
  }

  /** Runs of the raw children of `node` from child `from` on, the walk being at child `current` (see {@link RunPlanner.startChildren}). */
  #startChildren (node: CID, path: string, offset: number, children: CID[], starts: number[], sizes: number[], current: number, from: number): number {
    const base = this.#index
    return this.#planner.startChildren(node, children, current, from, (k) => {
      const i = base + k - current
      const start = starts[k] as number
      if (this.#done.has(i) || this.#comesEarly(path, offset + start)) return undefined
      return { index: i, cid: children[k] as CID, offset: start, size: sizes[k] as number, parent: 0, path, at: offset + start }
    })
  }

  /**
   * Registers the raw leaves of child `k` of `node` (an inner node of a file:
   * more than a block's worth of bytes) with the planner, their first block
   * number being `base`. Returns the block number after them, or undefined
   * when the child is not a node of raw leaves only (then it plans its own runs).
   */
  async #plan (node: CID, path: string, offset: number, child: CID, size: number, start: number, k: number, base: number): Promise<number | undefined> {
    if (size <= MAX_BLOCK_BYTES) return undefined
    const bytes = await this.#reader.get(child)
    await this.#reader.keep(child, bytes)
    const { node: pb, fs } = decode(child, bytes)
    const sizes = fs.blockSizes.map(Number)
    if ((fs.type !== 'file' && fs.type !== 'raw') || (fs.data?.byteLength ?? 0) > 0 || pb.Links.length === 0 ||
      sizes.length !== pb.Links.length || sizes.reduce((a, b) => a + b, 0) !== size || pb.Links.some(l => l.Hash.code !== rawCodec.code)) return undefined
    const leaves: WrittenLeaf[] = []
    let at = start
    for (const [i, link] of pb.Links.entries()) {
      // `at` in the file too: a node's CID may stand at several offsets, its planned leaves belong to this one
      if (!this.#comesEarly(path, offset + at)) leaves.push({ index: base + i, cid: link.Hash, offset: at, size: sizes[i] as number, parent: k, path, at: offset + at })
      at += sizes[i] as number
    }
    this.#planner.add(node, leaves)
    this.#plannedNodes.add(child.toString())
    return base + pb.Links.length
  }

  /** A directory entry (or the root) at `path`. */
  async #entry (cid: CID, path: string, depth: number, given?: Uint8Array): Promise<void> {
    this.#budget.depth(depth, cid)
    this.#budget.entry()
    if (cid.code === rawCodec.code) {
      await this.#fileNode(cid, path, 0, undefined, depth)
      this.#fileEvent(path, 'walked')
      return
    }
    if (cid.code !== DAG_PB) throw invalid(cid, `codec 0x${cid.code.toString(16)} in a directory`)
    let bytes = given ?? await this.#reader.keptBytes(cid)
    if (bytes === undefined) {
      if (this.#done.has(this.#index)) { // a one-block file or symlink finished earlier
        this.#index++
        this.#fileEvent(path, 'walked')
        return
      }
      bytes = await this.#reader.get(cid)
    }
    const { node, fs } = decode(cid, bytes)
    switch (fs.type) {
      case 'directory':
      case 'hamt-sharded-directory':
        await this.#reader.keep(cid, bytes)
        await this.#tree.mkdir(path)
        await this.#dirs.streamed(cid, declaredSize(bytes, node), async () => {
          if (fs.type === 'directory') await this.#dirs.entries(cid, node.Links.map((l) => ({ name: l.Name ?? '', cid: l.Hash, size: l.Tsize ?? 0 })), path, depth)
          else await this.#dirs.shard(cid, node, fs, path, depth)
        })
        return
      case 'file':
      case 'raw':
        this.#budget.declare(Number(fs.fileSize()))
        // the tree's running total, not only a file at the root: a tree pauses before the space runs out too
        await this.#init.space.ensure(this.#budget.declared - this.#written)
        await this.#fileNode(cid, path, 0, undefined, depth, bytes)
        this.#fileEvent(path, 'walked')
        return
      case 'symlink':
        await this.#symlink(path, fs.data ?? EMPTY)
        return
      default:
        throw invalid(cid, `UnixFS type ${fs.type} cannot be written`)
    }
  }

  /** A symlink entry: its target checked as text, then written (or, unsafe and skipped, left out). */
  async #symlink (path: string, data: Uint8Array): Promise<void> {
    const i = this.#index++
    this.#fileEvent(path, 'walked')
    if (this.#done.has(i)) return
    const target = new TextDecoder().decode(data)
    try {
      checkSymlink(this.#tree.root, path, target)
    } catch (err) {
      if (!this.#ctx.skipSymlinks) throw err
      this.#wrote(i, 0)
      return
    }
    await this.#tree.symlink(path, target)
    this.#wrote(i, 0)
  }
}
