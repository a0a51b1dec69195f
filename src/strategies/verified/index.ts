import { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import * as rawCodec from 'multiformats/codecs/raw'
import { UnixFS } from 'ipfs-unixfs'
import { lstat, rename } from 'node:fs/promises'
import { CidgetError, fsError, systemCode, toCidgetError } from '../../core/errors.js'
import { DEFAULTS } from '../../core/defaults.js'
import { dirname } from 'node:path'
import { ensureFreeSpace, committedAlready } from '../../sink/partial.js'
import { DiskSpace } from '../../sink/space.js'
import type { StrategyContext, StrategyResult } from '../types.js'
import { Bitmap } from './bitmap.js'
import { FileHasher } from '../../sink/file-hash.js'
import { RunPlanner, type PlannedLeaf } from './runs.js'
import { MAX_BLOCK_BYTES, blockLength, type BlockBytes } from '../../gateways/block.js'

/** A leaf the planner holds, with where it is written: the file, and its offset there. */
interface WrittenLeaf extends PlannedLeaf {
  path: string
  at: number
}

/** Leaves per CAR request. */
const DEFAULT_RUN_BLOCKS = 16
/** CAR requests started ahead of the walk. */
const DEFAULT_RUNS_AHEAD = 4
/** A new download's first request: the root and the first bytes of the file, a run's worth (at most 16) of leaves of the importers' default size. */
const EARLY_LEAF_BYTES = 256 * 1024
/** Inner nodes that first request may carry (the root and a path down a deep DAG). */
const EARLY_NODES = 8
import { OutputTree } from '../../sink/tree.js'
import { LeafFinder } from './recover.js'
import { checkName, checkSymlink, safeJoin } from '../../sink/names.js'
import { DagReader, exporterError, type BlockSource } from './reader.js'

export type { BlockSource } from './reader.js'

/** Limits that keep a hostile DAG from exhausting disk, memory or the stack. */
export interface DagLimits {
  /** Deepest node below the root. @default 256 */
  maxDepth: number
  /** Files, directories and links in one download. @default 1000000 */
  maxEntries: number
  /** Total size the DAG may declare. @default 16 TiB */
  maxSize: number
}

export const DEFAULT_DAG_LIMITS: Readonly<DagLimits> = Object.freeze({
  maxDepth: DEFAULTS.MAX_DAG_DEPTH,
  maxEntries: DEFAULTS.MAX_DAG_ENTRIES,
  maxSize: DEFAULTS.MAX_DAG_SIZE
})

export interface VerifiedContext extends StrategyContext {
  blocks: BlockSource
  limits: DagLimits
  /** Leave symlinks out instead of refusing unsafe ones. */
  skipSymlinks: boolean
  /** Blocks fetched in parallel (leaves) and dag-pb blocks read ahead. */
  concurrency: number
  /**
   * Consecutive raw leaves asked for in one CAR request (IPIP-402 entity
   * bytes) where the block source can; 0 or 1: block by block. @default 16
   */
  runBlocks?: number
  /** Runs started ahead of the leaf being written. @default 4 */
  runsAhead?: number
  /** Gateways the runs are spread over: the file's last leaves are split into as many runs. @default 1 */
  runSpread?: number
  /** The gateway that served the latest block, for progress. */
  lastGateway: () => string | null
}

const EMPTY = new Uint8Array(0)

function invalid (cid: CID, why: string, cause?: unknown): CidgetError {
  return new CidgetError('CIDGET_ERR_DAG_INVALID', `Block ${cid.toString()}: ${why}`, cause === undefined ? {} : { cause })
}

interface Decoded {
  node: dagPb.PBNode
  fs: UnixFS
}

function decode (cid: CID, bytes: Uint8Array): Decoded {
  let node: dagPb.PBNode
  try {
    node = dagPb.decode(bytes)
  } catch (err) {
    throw invalid(cid, `not a valid dag-pb node (${(err as Error).message})`, err)
  }
  if (node.Data === undefined) throw invalid(cid, 'dag-pb node without UnixFS data')
  let fs: UnixFS
  try {
    fs = UnixFS.unmarshal(node.Data)
  } catch (err) {
    throw invalid(cid, `bad UnixFS data (${(err as Error).message})`, err)
  }
  return { node, fs }
}

/** True when `path` is a directory (not through a symlink). */
async function isDirectoryPath (path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory()
  } catch {
    return false
  }
}

/** True when the partial file or staging directory is there (it is never a symlink). */
async function partialExists (path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return false
    throw fsError(err, `look for ${path}`)
  }
}

/** The abort reason of a download's own requests once it is over; not an error. */
const OVER: unique symbol = Symbol('download over')

/**
 * Verified mode: every block is checked against its CID (by the block source)
 * before a byte of it is written. The UnixFS DAG is walked depth-first by one
 * cursor that reads dag-pb nodes (a few ahead) while raw leaves are fetched in
 * parallel and written at their offsets. Each data-bearing block gets the next
 * number in walk order; the numbers of blocks that are written and fsynced go
 * into a bitmap in the store, and inner nodes are kept there too, so a resume
 * fetches nothing that was verified.
 */
export async function runVerifiedDownload (ctx: VerifiedContext): Promise<StrategyResult> {
  if (ctx.signal.aborted) throw ctx.signal.reason
  // every request of this download (the walk's, the runs', the first CAR's) ends with it
  const internal = new AbortController()
  const onAbort = (): void => { internal.abort(ctx.signal.reason) }
  ctx.signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await verifiedDownload(ctx, internal)
  } finally {
    // however it ended, even by a failure before the walk began: nothing of it goes on in the background
    internal.abort(OVER)
    ctx.signal.removeEventListener('abort', onAbort)
  }
}

async function verifiedDownload (ctx: VerifiedContext, internal: AbortController): Promise<StrategyResult> {
  const { record, store, policy, limits } = ctx
  const id = record.id
  if (await committedAlready(record.output, record.size, record.hash, record.expectedSha256)) {
    return { hash: record.hash, size: record.size as number, gateway: record.gateway ?? record.gateways[0] ?? '' }
  }
  let stored = await store.getProgress(id)
  const partial = record.output + DEFAULTS.PARTIAL_SUFFIX
  if (stored !== undefined && !await partialExists(partial) && await isDirectoryPath(record.output)) {
    // A directory is renamed into place only when every block is written and fsynced, and its
    // progress is cleared just after: progress, no staging directory and the directory in place
    // mean a run stopped between the two. Moved back, it is resumed (nothing is left to fetch) and
    // renamed again.
    await rename(record.output, partial).catch((err: unknown) => { throw fsError(err, `move ${record.output} back to ${partial}`) })
  }
  if (stored !== undefined && !await partialExists(partial)) {
    // progress without its data (deleted, or recorded on another machine): the blocks it counts are not here
    stored = undefined
    await store.clearProgress(id)
    await store.updateDownload(id, {
      currentSize: 0,
      error: `Restarted from the beginning: the partial data ${record.output}${DEFAULTS.PARTIAL_SUFFIX} recorded by an earlier run is not on this machine`,
      errorCode: null
    })
  }
  const done = new Bitmap(stored)
  // a partial file without progress: a run killed before its first record wrote it
  const resumed = stored !== undefined || await partialExists(partial)
  let durableBytes = stored === undefined ? 0 : record.currentSize
  let writtenBytes = durableBytes
  const signal = internal.signal

  const reader = await DagReader.open(id, store, ctx.blocks, signal, ctx.concurrency)
  const storage = reader.storage()
  const getBlock = async (cid: CID): Promise<Uint8Array> => await reader.get(cid)
  const keep = async (cid: CID, bytes: Uint8Array): Promise<void> => { await reader.keep(cid, bytes) }

  // the entity to write: the CID, or what the path names inside it
  const root = await reader.resolve(record.cid, record.path)
  const runBlocks = ctx.runBlocks ?? DEFAULT_RUN_BLOCKS
  // A new download of a CID asks for its first run with the root: the root, the inner nodes on the
  // way and the first leaves in one request, rather than one round trip per level before data flows.
  let earlyEnd = !resumed && record.path === '' && runBlocks > 1 ? Math.min(runBlocks, DEFAULT_RUN_BLOCKS) * EARLY_LEAF_BYTES : 0
  const early = earlyEnd > 0 ? reader.prefetchEntity(root, { from: 0, to: earlyEnd - 1, nodes: EARLY_NODES }) : undefined
  if (early === undefined) earlyEnd = 0
  const rootBytes = await getBlock(root)
  let isDirectory = false
  let fileSize: number | null = null
  if (root.code === dagPb.code) {
    const { fs } = decode(root, rootBytes)
    if (fs.type === 'directory' || fs.type === 'hamt-sharded-directory') isDirectory = true
    else if (fs.type === 'symlink') throw new CidgetError('CIDGET_ERR_UNSAFE_SYMLINK', `${record.cid}${record.path} is a symlink; there is nothing to download`)
    else if (fs.type !== 'file' && fs.type !== 'raw') throw invalid(root, `UnixFS type ${fs.type} cannot be written`)
    else {
      const size = Number(fs.fileSize())
      fileSize = size
      if (size > limits.maxSize) throw new CidgetError('CIDGET_ERR_DAG_LIMIT', `The file declares ${size} bytes, over the limit of ${limits.maxSize}`)
      if (record.size !== size) await store.updateDownload(id, { size })
      await ensureFreeSpace(record.output + DEFAULTS.PARTIAL_SUFFIX, size - durableBytes)
    }
  } else if (root.code === rawCodec.code) {
    if (record.size !== rootBytes.byteLength) await store.updateDownload(id, { size: rootBytes.byteLength })
  } else {
    throw invalid(root, `codec 0x${root.code.toString(16)} is not UnixFS (dag-pb or raw)`)
  }

  // leaves of a file's first `earlyEnd` bytes come with the root (a directory or a one-block file has none)
  if (isDirectory || root.code !== dagPb.code) earlyEnd = 0
  /** Whether the leaf at `at` of `path` comes in the first request, with the root. */
  const comesEarly = (path: string, at: number): boolean => at < earlyEnd && path === tree.root
  let runs = runBlocks > 1
  const runWindow = runBlocks * (ctx.runsAhead ?? DEFAULT_RUNS_AHEAD)
  // the window is topped up as soon as a whole run fits in it again
  const runRefill = runWindow - runBlocks
  /**
   * Asks for the leaves of `node` from child `from` on, up to the window past
   * child `current` (the one the walk is at), in runs: consecutive raw leaves
   * not done yet. Returns the first child not covered. Only raw leaves are
   * looked at: each takes exactly one block number, so whether one is done can
   * be told before the walk gets there.
   */
  const startRuns = (node: CID, path: string, offset: number, children: CID[], starts: number[], sizes: number[], current: number, from: number): number => {
    const end = Math.min(children.length, current + runWindow)
    let j = from
    while (j < end && runs) {
      const first = j
      while (j < end && j - first < runBlocks && (children[j] as CID).code === rawCodec.code && !done.has(index + j - current) &&
        !comesEarly(path, offset + (starts[j] as number))) j++
      if (j - first > 1) {
        const last = j - 1
        const range = { from: starts[first] as number, to: (starts[last] as number) + (sizes[last] as number) - 1, sizes: sizes.slice(first, j) }
        if (!reader.prefetchRun(node, range, children.slice(first, j))) runs = false
        else {
          for (let k = first; k < j; k++) {
            writeOnArrival(index + k - current, children[k] as CID, path, offset + (starts[k] as number), sizes[k] as number)
          }
        }
      }
      if (j === first) {
        if ((children[j] as CID).code !== rawCodec.code) return j // the block numbers after it are not known yet
        j++ // done already, or coming with the root
      }
    }
    return j
  }
  const planner = new RunPlanner<WrittenLeaf>({
    runBlocks,
    spread: ctx.runSpread ?? 1,
    window: runWindow,
    isDone: (i) => done.has(i),
    start: (entity, range, leaves) => {
      if (!reader.prefetchRun(entity, range, leaves.map((l) => l.cid))) return false
      for (const leaf of leaves) writeOnArrival(leaf.index, leaf.cid, leaf.path, leaf.at, leaf.size)
      return true
    }
  })
  /** Inner nodes whose leaves the planner has: their own walk leaves the runs to it. */
  const plannedNodes = new Set<string>()
  /**
   * Registers the raw leaves of child `k` of `node` (an inner node of a file:
   * more than a block's worth of bytes) with the planner, their first block
   * number being `base`. Returns the block number after them, or undefined
   * when the child is not a node of raw leaves only (then it plans its own runs).
   */
  const plan = async (node: CID, path: string, offset: number, child: CID, size: number, start: number, k: number, base: number): Promise<number | undefined> => {
    if (size <= MAX_BLOCK_BYTES) return undefined
    const bytes = reader.cached(child) ?? await getBlock(child)
    await keep(child, bytes)
    const { node: pb, fs } = decode(child, bytes)
    const sizes = fs.blockSizes.map(Number)
    if ((fs.type !== 'file' && fs.type !== 'raw') || (fs.data?.byteLength ?? 0) > 0 || pb.Links.length === 0 ||
      sizes.length !== pb.Links.length || sizes.reduce((a, b) => a + b, 0) !== size || pb.Links.some(l => l.Hash.code !== rawCodec.code)) return undefined
    const leaves: WrittenLeaf[] = []
    let at = start
    for (const [i, link] of pb.Links.entries()) {
      // `at` in the file too: a node's CID may stand at several offsets, its planned leaves belong to this one
      if (!comesEarly(path, offset + at)) leaves.push({ index: base + i, cid: link.Hash, offset: at, size: sizes[i] as number, parent: k, path, at: offset + at })
      at += sizes[i] as number
    }
    planner.add(node, leaves)
    plannedNodes.add(child.toString())
    return base + pb.Links.length
  }

  // a partial no progress counts is stale: a directory is emptied, a file cut to its size (its leaves are checked below)
  const tree = await OutputTree.open(record.output, isDirectory, { stale: stored === undefined, size: fileSize ?? rootBytes.byteLength })
  // what the DAG declares and is not written yet must fit in the free space, looked at as bytes arrive
  const space = new DiskSpace(dirname(tree.root))
  if (resumed) {
    // leaves a killed run wrote after its last record: kept when they hash to their CIDs (their files
    // fsynced first), instead of being fetched again
    try {
      const finder = new LeafFinder(done, (cid) => reader.cached(cid), signal)
      const found = isDirectory ? await finder.tree(tree.root, root, rootBytes) : await finder.file(tree.root, root, rootBytes)
      if (found.count > 0) {
        done.union(found.blocks)
        durableBytes += found.bytes
        writtenBytes = durableBytes
        await store.saveProgress(id, done.toBytes(), durableBytes, ctx.owner)
      }
    } catch (err) {
      await tree.close() // a pause, a lost lease or an I/O error here leaves no handle open
      throw err
    }
  }
  let index = 0 // next data-bearing block, in walk order
  let entries = 0
  let declaredTotal = 0
  // the size just learned from the root, not the record's (null on a first run)
  let total: number | null = isDirectory ? null : (fileSize ?? (root.code === rawCodec.code ? rootBytes.byteLength : record.size))
  let pending: number[] = []
  let pendingBytes = 0
  let lastCheckpoint = ctx.now()
  let checkpointing: Promise<void> | undefined
  let failure: unknown
  const inflight = new Set<Promise<void>>()
  /** Leaves written as their runs deliver them, until the walk reaches them: block number → the write. */
  const arriving = new Map<number, Promise<void>>()

  const fail = (err: unknown): void => {
    if (failure === undefined) failure = err
    internal.abort(err)
  }
  /** fsync what was written, then record it: only durable blocks enter the bitmap. One at a time. */
  const startCheckpoint = (): Promise<void> => {
    const batch = pending
    const bytes = pendingBytes
    pending = []
    pendingBytes = 0
    lastCheckpoint = ctx.now()
    const run = (async () => {
      try {
        await tree.syncAll()
        for (const i of batch) done.add(i)
        durableBytes += bytes
        await store.saveProgress(id, done.toBytes(), durableBytes, ctx.owner)
      } finally {
        checkpointing = undefined
      }
      // blocks written meanwhile: due now, or within the interval even if no write follows (a stall)
      if (pending.length > 0 && !signal.aborted) {
        if (pendingBytes >= policy.syncIntervalBytes) startCheckpoint().catch(fail)
        else laterCheckpoint()
      }
    })()
    checkpointing = run
    return run
  }
  let timer: NodeJS.Timeout | undefined
  const laterCheckpoint = (): void => {
    if (timer !== undefined) return
    timer = setTimeout(() => {
      timer = undefined
      if (checkpointing === undefined && pending.length > 0 && !signal.aborted) startCheckpoint().catch(fail)
    }, policy.syncIntervalMs)
    timer.unref()
  }
  /** Waits for the checkpoint under way, then records what is pending; `always`: records even when nothing is. */
  const checkpoint = async (always = false): Promise<void> => {
    while (checkpointing !== undefined) await checkpointing.catch(() => {})
    if (pending.length > 0 || always) await startCheckpoint()
  }
  // directories count finished files: a file is finished once walked and all its blocks written
  let filesDone = 0
  const openFiles = new Map<string, { blocks: number, walked: boolean }>()
  const progress = (): void => {
    if (isDirectory) ctx.onProgress(writtenBytes, total, ctx.lastGateway() ?? '', filesDone)
    else ctx.onProgress(writtenBytes, total, ctx.lastGateway() ?? '')
  }
  const fileEvent = (path: string, change: 'block' | 'written' | 'walked'): void => {
    const f = openFiles.get(path) ?? { blocks: 0, walked: false }
    if (change === 'block') f.blocks++
    else if (change === 'written') f.blocks--
    else f.walked = true
    if (f.walked && f.blocks === 0) {
      openFiles.delete(path)
      filesDone++
      progress()
    } else {
      openFiles.set(path, f)
    }
  }
  const written = async (i: number, bytes: number): Promise<void> => {
    pending.push(i)
    pendingBytes += bytes
    writtenBytes += bytes
    progress()
    // writers do not wait for the fsyncs: fetching goes on while a checkpoint runs
    if (checkpointing === undefined) {
      if (pendingBytes >= policy.syncIntervalBytes || ctx.now() - lastCheckpoint >= policy.syncIntervalMs) startCheckpoint().catch(fail)
      else laterCheckpoint()
    }
  }
  // a single file's SHA-256 is computed as its blocks arrive, mostly in order
  const hasher = isDirectory ? undefined : new FileHasher(tree.root, total ?? 0)
  const write = async (i: number, path: string, offset: number, data: BlockBytes): Promise<void> => {
    const length = blockLength(data)
    if (length === 0) await tree.touch(path)
    else {
      await space.ensure(Math.max(length, declaredTotal - writtenBytes))
      await tree.write(path, offset, data)
      space.wrote(length)
    }
    hasher?.written(offset, length)
    await written(i, length)
  }
  /** Raw leaf `i` (`given`, or fetched), of the size its parent declares, written at `offset` of `path`. */
  const writeLeaf = async (i: number, cid: CID, path: string, offset: number, declared: number | undefined, given?: Uint8Array): Promise<void> => {
    const data = given ?? await reader.getLeaf(cid)
    const length = blockLength(data)
    if (declared !== undefined && length !== declared) throw invalid(cid, `holds ${length} bytes where its parent declares ${declared}`)
    await write(i, path, offset, data)
  }
  /**
   * Writes leaf `i` (a raw leaf of `size` bytes at `at` in `path`) as soon as
   * its run delivers it, wherever the walk is: its bytes (views of the
   * socket's chunks) are not held until the walk gets there. The walk awaits
   * the write when it reaches the leaf.
   */
  const writeOnArrival = (i: number, cid: CID, path: string, at: number, size: number): void => {
    const task = writeLeaf(i, cid, path, at, size)
    task.catch(fail) // the download stops at once, as when the walk's own write fails; the walk reads the outcome too
    arriving.set(i, task)
  }
  /** Runs `task` with at most `concurrency` tasks in flight. */
  const dispatch = async (task: () => Promise<void>): Promise<void> => {
    while (inflight.size >= ctx.concurrency) await Promise.race(inflight)
    if (signal.aborted) throw failure ?? ctx.signal.reason
    const p: Promise<void> = task().catch(fail).finally(() => { inflight.delete(p) })
    inflight.add(p)
  }
  /**
   * Reads ahead the uncached dag-pb blocks among `cids` that are not done yet.
   * Their numbers can be predicted until the first cached (inner) node: an
   * uncached node is a leaf or was never reached, and in both cases it gets
   * the next number.
   */
  const readAhead = (cids: CID[]): void => {
    let next = index
    for (const cid of cids) {
      if (reader.kept(cid)) return
      if (cid.code === dagPb.code && !done.has(next)) reader.readAhead(cid)
      next++
    }
  }
  const count = (): void => {
    entries++
    if (entries > limits.maxEntries) {
      throw new CidgetError('CIDGET_ERR_DAG_LIMIT', `The DAG has more than ${limits.maxEntries} entries`)
    }
  }
  const deep = (depth: number, cid: CID): void => {
    if (depth > limits.maxDepth) throw new CidgetError('CIDGET_ERR_DAG_LIMIT', `The DAG is deeper than ${limits.maxDepth} levels at ${cid.toString()}`)
  }
  const declare = (size: number): void => {
    declaredTotal += size
    if (declaredTotal > limits.maxSize) {
      throw new CidgetError('CIDGET_ERR_DAG_LIMIT', `The DAG declares more than ${limits.maxSize} bytes`)
    }
  }

  /**
   * A raw leaf of a file at `offset`: written (once its run delivers it, or
   * fetched) by one of the `concurrency` writers. Its own function, called by
   * the parent's loop for each of its raw children: V8 then optimizes this
   * small function for the walk's hot path instead of all of fileNode, again
   * after each deoptimization (about 0.2 s of a compiler thread per GiB,
   * against 0.1 s now).
   */
  const rawLeaf = async (cid: CID, path: string, offset: number, declared: number | undefined, given?: Uint8Array): Promise<void> => {
    if (signal.aborted) throw failure ?? ctx.signal.reason
    const i = index++
    if (done.has(i)) {
      hasher?.written(offset, declared ?? 0) // on disk since an earlier run
      return
    }
    fileEvent(path, 'block')
    const arrival = arriving.get(i)
    arriving.delete(i)
    await dispatch(async () => {
      await (arrival ?? writeLeaf(i, cid, path, offset, declared, given))
      fileEvent(path, 'written')
    })
  }

  /** One node of a file at `offset`; `declared` is the size its parent says it holds. */
  const fileNode = async (cid: CID, path: string, offset: number, declared: number | undefined, depth: number, given?: Uint8Array): Promise<void> => {
    deep(depth, cid)
    if (signal.aborted) throw failure ?? ctx.signal.reason
    if (cid.code === rawCodec.code) {
      await rawLeaf(cid, path, offset, declared, given)
      return
    }
    if (cid.code !== dagPb.code) throw invalid(cid, `codec 0x${cid.code.toString(16)} inside a file`)
    let bytes = given ?? reader.cached(cid)
    if (bytes === undefined) {
      if (done.has(index)) { // a leaf written in an earlier run
        index++
        hasher?.written(offset, declared ?? 0)
        return
      }
      bytes = await getBlock(cid)
    }
    const { node, fs } = decode(cid, bytes)
    if (fs.type !== 'file' && fs.type !== 'raw') throw invalid(cid, `UnixFS ${fs.type} inside a file`)
    const data = fs.data ?? EMPTY
    if (node.Links.length === 0) {
      if (declared !== undefined && data.byteLength !== declared) {
        throw invalid(cid, `holds ${data.byteLength} bytes where its parent declares ${declared}`)
      }
      const i = index++
      if (!done.has(i)) await write(i, path, offset, data)
      else hasher?.written(offset, data.byteLength)
      return
    }
    if (fs.blockSizes.length !== node.Links.length) throw invalid(cid, `${node.Links.length} links but ${fs.blockSizes.length} block sizes`)
    const size = Number(fs.fileSize())
    if (declared !== undefined && size !== declared) throw invalid(cid, `declares ${size} bytes where its parent declares ${declared}`)
    await keep(cid, bytes)
    let at = offset
    if (data.byteLength > 0) {
      const i = index++
      if (!done.has(i)) await write(i, path, at, data)
      else hasher?.written(at, data.byteLength)
      at += data.byteLength
    }
    const children = node.Links.map(l => l.Hash)
    const sizes = fs.blockSizes.map(Number)
    const starts: number[] = []
    for (let j = 0, s = at - offset; j < sizes.length; s += sizes[j] as number, j++) starts.push(s)
    // the children that come with the root are waited for, not asked of a gateway again
    for (let j = 0; j < children.length && comesEarly(path, offset + (starts[j] as number)); j++) early?.expect(children[j] as CID)
    let covered = 0 // children below this one are in a run already, or not for runs
    // a node of inner nodes: the leaves of the next child are planned while the walk is in this one,
    // so that runs keep going across the children's boundaries
    const twoLevels = runs && planner.enabled && children.length > 0 && children.every(c => c.code === dagPb.code)
    const plannedLeaves = plannedNodes.has(cid.toString())
    let planned = -1 // children up to this one are registered, or could not be
    let nextBase: number | undefined // the first block number of child planned + 1, when known now
    // a planning node reads ahead only the two children it plans first: more would take the
    // gateways' connections from its first runs (it plans each next child itself as the walk goes)
    const ahead = twoLevels ? 2 : ctx.concurrency * 2
    for (let j = 0; j < children.length; j++) {
      if (j % ctx.concurrency === 0) readAhead(children.slice(j, j + ahead))
      if (twoLevels && planner.enabled) {
        if (planned < j) {
          nextBase = await plan(cid, path, offset, children[j] as CID, sizes[j] as number, starts[j] as number, j, index)
          planned = j
        }
        if (planned === j && j + 1 < children.length && nextBase !== undefined) {
          nextBase = await plan(cid, path, offset, children[j + 1] as CID, sizes[j + 1] as number, starts[j + 1] as number, j + 1, nextBase)
          planned = j + 1
        }
        planner.advance(index)
      } else if (plannedLeaves) {
        planner.advance(index)
      } else if (runs && j >= covered - runRefill) {
        covered = Math.max(covered, j)
        covered = startRuns(cid, path, offset, children, starts, sizes, j, covered)
      }
      const len = sizes[j] as number
      const child = children[j] as CID
      if (child.code === rawCodec.code && depth + 1 <= limits.maxDepth) await rawLeaf(child, path, at, len)
      else await fileNode(child, path, at, len, depth + 1)
      at += len
    }
  }

  /** A directory entry (or the root) at `path`. */
  const entry = async (cid: CID, path: string, depth: number, given?: Uint8Array): Promise<void> => {
    deep(depth, cid)
    count()
    if (cid.code === rawCodec.code) {
      await fileNode(cid, path, 0, undefined, depth)
      fileEvent(path, 'walked')
      return
    }
    if (cid.code !== dagPb.code) throw invalid(cid, `codec 0x${cid.code.toString(16)} in a directory`)
    let bytes = given ?? reader.cached(cid)
    if (bytes === undefined) {
      if (done.has(index)) { // a one-block file or symlink finished earlier
        index++
        fileEvent(path, 'walked')
        return
      }
      bytes = await getBlock(cid)
    }
    const { node, fs } = decode(cid, bytes)
    switch (fs.type) {
      case 'directory':
      case 'hamt-sharded-directory':
        await keep(cid, bytes)
        await directory(cid, fs.type, node, path, depth)
        return
      case 'file':
      case 'raw':
        declare(Number(fs.fileSize()))
        // the tree's running total, not only a file at the root: a tree pauses before the space runs out too
        await space.ensure(declaredTotal - writtenBytes)
        await fileNode(cid, path, 0, undefined, depth, bytes)
        fileEvent(path, 'walked')
        return
      case 'symlink': {
        const i = index++
        fileEvent(path, 'walked')
        if (done.has(i)) return
        const target = new TextDecoder().decode(fs.data ?? EMPTY)
        try {
          checkSymlink(tree.root, path, target)
        } catch (err) {
          if (!ctx.skipSymlinks) throw err
          await written(i, 0)
          return
        }
        await tree.symlink(path, target)
        await written(i, 0)
        return
      }
      default:
        throw invalid(cid, `UnixFS type ${fs.type} cannot be written`)
    }
  }

  const directory = async (cid: CID, type: string, node: dagPb.PBNode, path: string, depth: number): Promise<void> => {
    await tree.mkdir(path)
    const listed: Array<{ name: string, cid: CID }> = []
    if (type === 'directory') {
      for (const link of node.Links) listed.push({ name: link.Name ?? '', cid: link.Hash })
    } else {
      try {
        // loaded when needed: most downloads never list a sharded directory
        const { exporter } = await import('ipfs-unixfs-exporter')
        const dir = await exporter(cid, storage, { signal })
        if (dir.type !== 'directory') throw invalid(cid, 'sharded directory did not list as a directory')
        for await (const e of dir.entries({ signal })) {
          listed.push({ name: e.name, cid: e.cid })
          if (listed.length > limits.maxEntries) throw new CidgetError('CIDGET_ERR_DAG_LIMIT', `The directory ${path} has more than ${limits.maxEntries} entries`)
        }
      } catch (err) {
        if (signal.aborted) throw failure ?? ctx.signal.reason
        throw exporterError(err, `Listing sharded directory ${cid.toString()}`)
      }
    }
    const seen = new Set<string>()
    for (const e of listed) {
      checkName(e.name, cid.toString())
      if (seen.has(e.name)) throw new CidgetError('CIDGET_ERR_UNSAFE_NAME', `Refusing duplicate name ${JSON.stringify(e.name)} in ${cid.toString()}`)
      seen.add(e.name)
    }
    for (let j = 0; j < listed.length; j++) {
      if (j % ctx.concurrency === 0) readAhead(listed.slice(j, j + ctx.concurrency * 2).map(e => e.cid))
      const e = listed[j] as { name: string, cid: CID }
      await entry(e.cid, safeJoin(path, [e.name], cid.toString()), depth + 1)
    }
  }

  try {
    if (isDirectory) {
      await entry(root, tree.root, 0, rootBytes)
    } else {
      declare(total ?? 0)
      await fileNode(root, tree.root, 0, undefined, 0, rootBytes)
    }
    while (inflight.size > 0) await Promise.race(inflight)
    await Promise.all(arriving.values()) // none left: the walk reached every leaf it planned
    if (failure !== undefined) throw failure
    clearTimeout(timer)
    await checkpoint()
    // every link resolved on disk, through the others: one that leads out is refused, or left out
    await tree.confineLinks(ctx.skipSymlinks)
    if (isDirectory) total = writtenBytes
    progress()
  } catch (thrown) {
    internal.abort(thrown)
    clearTimeout(timer)
    await Promise.allSettled([...inflight, ...arriving.values()])
    // keep what is already written: durable, and recorded
    await checkpoint().catch(() => {})
    hasher?.close()
    const err = toCidgetError(failure ?? thrown)
    if (isDirectory && err.code === 'CIDGET_ERR_UNSAFE_SYMLINK' && !ctx.signal.aborted) {
      // a tree holding a link that leads out keeps nothing on disk: no such link stays for a later
      // write to go through (a resume fetches it again, and refuses it again)
      await tree.remove()
      await store.clearProgress(id).catch(() => {}) // else the next run finds progress without its data, and starts again anyway
    } else {
      await tree.close()
    }
    if (ctx.signal.aborted) throw ctx.signal.reason
    throw err
  }

  let hash: string | null = null
  try {
    if (!isDirectory) {
      await tree.syncAll()
      hash = await (hasher as FileHasher).digest(writtenBytes, ctx.signal)
    }
    // recorded once more, also when nothing is pending: a run that lost its lease (it was stopped past
    // its end) stops here, before it deletes or renames what the process that took over works on
    await checkpoint(true)
  } catch (err) {
    hasher?.close()
    await tree.close()
    if (ctx.signal.aborted) throw ctx.signal.reason
    throw toCidgetError(err)
  }
  if (hash !== null && record.expectedSha256 !== null && hash !== record.expectedSha256.toLowerCase()) {
    await tree.remove()
    await store.clearProgress(id)
    await store.updateDownload(id, { currentSize: 0 })
    throw new CidgetError('CIDGET_ERR_HASH_MISMATCH',
      `The content of ${record.cid}${record.path} is verified against its CID, but its SHA-256 is ${hash}, not the expected ${record.expectedSha256}`)
  }
  // the hash first: a kill after the rename leaves a record that says what the output must hold
  if (hash !== null) await store.updateDownload(id, { hash })
  // its progress is forgotten with the success record (one transaction): a kill between the two
  // leaves progress beside the output in place, which the next run recognizes as done
  await tree.commit()
  return { hash, size: writtenBytes, gateway: ctx.lastGateway() ?? record.gateways[0] ?? '' }
}
