import type { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import * as rawCodec from 'multiformats/codecs/raw'
import { lstat, rename } from 'node:fs/promises'
import { dirname } from 'node:path'
import { CidgetError, fsError, toCidgetError } from '../../core/errors.js'
import { DEFAULTS } from '../../core/defaults.js'
import { ensureFreeSpace, present } from '../../sink/partial.js'
import { DiskSpace } from '../../sink/space.js'
import { OutputTree } from '../../sink/tree.js'
import type { DownloadJournal } from '../../core/journal.js'
import type { StrategyResult } from '../types.js'
import { checkRecordRename, committedOutput, restartWithoutPartial } from '../steps.js'
import { Bitmap } from './bitmap.js'
import type { VerifiedContext } from './context.js'
import { DagBudget, declaredSize, decode, invalid } from './dag.js'
import { DagReader } from './reader.js'
import { LeafFinder } from './recover.js'
import { UpdateSeeder, type Seeded } from './seed.js'
import { carryOver, settleSwap, swapIn, updateReport } from './update.js'
import { VerifiedWalk } from './walk.js'

export type { BlockSource } from './reader.js'
export type { VerifiedContext } from './context.js'
export { DEFAULT_DAG_LIMITS, type DagLimits } from './dag.js'

/** Leaves per CAR request. */
const DEFAULT_RUN_BLOCKS = 16
/** A new download's first request: the root and the first bytes of the file, a run's worth (at most 16) of leaves of the importers' default size. */
const EARLY_LEAF_BYTES = 256 * 1024
/** Inner nodes that first request may carry (the root and a path down a deep DAG). */
const EARLY_NODES = 8

/** True when `path` is a directory (not through a symlink). */
async function isDirectoryPath (path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory()
  } catch {
    return false
  }
}


/** The abort reason of a download's own requests once it is over; not an error. */
const OVER: unique symbol = Symbol('download over')

/**
 * Verified mode: every block is checked against its CID (by the block source)
 * before a byte of it is written. The UnixFS DAG is walked depth-first by one
 * cursor that reads dag-pb nodes (a few ahead) while raw leaves are fetched in
 * parallel and written at their offsets (walk.ts). Each data-bearing block
 * gets the next number in walk order; the numbers of blocks that are written
 * and fsynced go into a bitmap in the record, through the journal (checkpoint.ts), and inner nodes
 * are kept there too, so a resume fetches nothing that was verified.
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
  const { record, journal } = ctx
  // an update stopped between its two renames: one whole version is put back in place first
  if (ctx.update !== undefined) await settleSwap(record.output)
  const committed = await committedOutput(record)
  if (committed !== undefined) return committed
  const partial = record.output + DEFAULTS.PARTIAL_SUFFIX
  const stored = await progressWithData(ctx, partial)
  const done = new Bitmap(stored)
  // a partial file without progress: a run killed before its first record wrote it
  const resumed = stored !== undefined || await present(partial)
  let durable = stored === undefined ? 0 : record.currentSize
  const reader = await DagReader.open(journal, ctx.blocks, internal.signal, ctx.concurrency)
  // an update asks for no leaves with the root: the old output may hold them
  const start = await openRoot(ctx, journal, reader, resumed || ctx.update !== undefined, durable)
  const { root, rootBytes, isDirectory, fileSize } = start
  // a partial no progress counts is stale: a directory is emptied, a file cut to its size (its leaves are checked below)
  const tree = await OutputTree.open(record.output, isDirectory, { stale: stored === undefined, size: fileSize ?? rootBytes.byteLength })
  // what the DAG declares and is not written yet must fit in the free space, looked at as bytes arrive
  const space = new DiskSpace(dirname(tree.root))
  let seeded: Seeded | undefined
  if (ctx.update !== undefined && stored === undefined) {
    seeded = await seedUpdate(ctx, tree, reader, done, start, internal.signal)
    durable += seeded.bytes
  } else if (resumed) {
    durable += await recoverLeaves(journal, tree, reader, done, start, durable, internal.signal)
  }
  const walk = new VerifiedWalk({
    ctx,
    internal,
    reader,
    tree,
    space,
    journal,
    done,
    durable,
    root,
    rootBytes,
    isDirectory,
    // the size just learned from the root, not the record's (null on a first run)
    total: isDirectory ? null : (fileSize ?? (root.code === rawCodec.code ? rootBytes.byteLength : record.size)),
    estimate: start.estimate,
    early: start.early,
    earlyEnd: start.earlyEnd,
    runBlocks: start.runBlocks
  })
  await walk.run()
  return await finish(ctx, journal, tree, walk, reader, seeded)
}

/**
 * An update's first run: the blocks of the new version that the old output
 * holds at the same places are placed (files found whole are hard-linked),
 * made durable and recorded as done; the walk fetches only the rest. What was
 * kept is written to the record's report at once, so that a resumed run
 * reports it too.
 */
async function seedUpdate (ctx: VerifiedContext, tree: OutputTree, reader: DagReader, done: Bitmap, start: RootStart, signal: AbortSignal): Promise<Seeded> {
  try {
    const seeded = await new UpdateSeeder(reader, tree, ctx.limits, signal).run(ctx.record.output, start.root, start.rootBytes)
    if (seeded.blocks.count > 0) {
      done.union(seeded.blocks)
      await tree.syncAll()
      await ctx.journal.checkpoint(done.toBytes(), seeded.bytes)
    }
    await ctx.journal.report(updateReport(seeded, seeded.bytes, { removed: [], removedCount: 0, carried: [], carriedCount: 0, previousUnknown: false }, false))
    return seeded
  } catch (err) {
    await tree.close()
    throw err
  }
}

/**
 * The progress an earlier run recorded, when its data is here. A directory
 * found renamed into place with its progress still recorded is moved back (a
 * run stopped between the two); progress whose partial data is gone is
 * forgotten, and the download restarts from zero.
 */
async function progressWithData (ctx: VerifiedContext, partial: string): Promise<Uint8Array | undefined> {
  const { record, journal } = ctx
  const stored = await journal.progress()
  if (stored === undefined) return undefined
  // an update's output is the old version until its swap began (its complete report is written first)
  const swapped = ctx.update === undefined || record.updateReport?.complete === true
  if (swapped && !await present(partial) && await isDirectoryPath(record.output)) {
    // A directory is renamed into place only when every block is written and fsynced, and its
    // progress is cleared just after: progress, no staging directory and the directory in place
    // mean a run stopped between the two. Moved back, it is resumed (nothing is left to fetch) and
    // renamed again.
    await rename(record.output, partial).catch((err: unknown) => { throw fsError(err, `move ${record.output} back to ${partial}`) })
  }
  if (await present(partial)) return stored
  // progress without its data (deleted, or recorded on another machine): the blocks it counts are not here
  await restartWithoutPartial(journal, `the partial data ${record.output}${DEFAULTS.PARTIAL_SUFFIX} recorded by an earlier run is not on this machine`)
  return undefined
}

interface RootStart {
  /** The entity to write: the CID, or what the path names inside it. */
  root: CID
  rootBytes: Uint8Array
  isDirectory: boolean
  /** The size a file's dag-pb root declares. */
  fileSize: number | null
  /** A directory's size as its root's links declare it (unverified: for people, marked as an estimate). */
  estimate: number | null
  early: ReturnType<DagReader['prefetchEntity']>
  /** The file's bytes below this come with the root. */
  earlyEnd: number
  runBlocks: number
}

/**
 * Resolves and reads the root (a new download of a CID asks for its first
 * leaves with it), and learns what it is: a directory, or a file whose size is
 * recorded and must fit in the free space.
 */
async function openRoot (ctx: VerifiedContext, journal: DownloadJournal, reader: DagReader, resumed: boolean, durable: number): Promise<RootStart> {
  const { record } = ctx
  const root = await reader.resolve(record.cid, record.path)
  const runBlocks = ctx.runBlocks ?? DEFAULT_RUN_BLOCKS
  // A new download of a CID asks for its first run with the root: the root, the inner nodes on the
  // way and the first leaves in one request, rather than one round trip per level before data flows.
  let earlyEnd = !resumed && record.path === '' && runBlocks > 1 ? Math.min(runBlocks, DEFAULT_RUN_BLOCKS) * EARLY_LEAF_BYTES : 0
  const early = earlyEnd > 0 ? reader.prefetchEntity(root, { from: 0, to: earlyEnd - 1, nodes: EARLY_NODES }) : undefined
  if (early === undefined) earlyEnd = 0
  const rootBytes = await reader.get(root)
  let isDirectory = false
  let fileSize: number | null = null
  let estimate: number | null = null
  if (root.code === dagPb.code) {
    const { node, fs } = decode(root, rootBytes)
    if (fs.type === 'directory' || fs.type === 'hamt-sharded-directory') {
      isDirectory = true
      estimate = declaredSize(rootBytes, node)
    }
    else if (fs.type === 'symlink') throw new CidgetError('CIDGET_ERR_UNSAFE_SYMLINK', `${record.cid}${record.path} is a symlink; there is nothing to download`)
    else if (fs.type !== 'file' && fs.type !== 'raw') throw invalid(root, `UnixFS type ${fs.type} cannot be written`)
    else {
      const size = Number(fs.fileSize())
      fileSize = size
      new DagBudget(ctx.limits).file(size)
      if (record.size !== size) await journal.describe(size)
      await ensureFreeSpace(record.output + DEFAULTS.PARTIAL_SUFFIX, size - durable)
    }
  } else if (root.code === rawCodec.code) {
    if (record.size !== rootBytes.byteLength) await journal.describe(rootBytes.byteLength)
  } else {
    throw invalid(root, `codec 0x${root.code.toString(16)} is not UnixFS (dag-pb or raw)`)
  }
  // leaves of a file's first `earlyEnd` bytes come with the root (a directory or a one-block file has none)
  if (isDirectory || root.code !== dagPb.code) earlyEnd = 0
  return { root, rootBytes, isDirectory, fileSize, estimate, early, earlyEnd, runBlocks }
}

/**
 * Leaves a killed run wrote after its last record: kept when they hash to
 * their CIDs (their files fsynced first), and recorded, instead of being
 * fetched again. Returns their bytes.
 */
async function recoverLeaves (journal: DownloadJournal, tree: OutputTree, reader: DagReader, done: Bitmap, start: RootStart, durable: number, signal: AbortSignal): Promise<number> {
  try {
    const finder = new LeafFinder(done, async (cid) => await reader.keptBytes(cid), signal)
    const found = start.isDirectory ? await finder.tree(tree.root, start.root, start.rootBytes) : await finder.file(tree.root, start.root, start.rootBytes)
    if (found.count === 0) return 0
    done.union(found.blocks)
    await journal.checkpoint(done.toBytes(), durable + found.bytes)
    return found.bytes
  } catch (err) {
    await tree.close() // a pause, a lost lease or an I/O error here leaves no handle open
    throw err
  }
}

/**
 * A walked output's end: a file's SHA-256, the last checkpoint, the expected
 * SHA-256 checked, then the hash recorded and the output renamed into place.
 */
async function finish (ctx: VerifiedContext, journal: DownloadJournal, tree: OutputTree, walk: VerifiedWalk, reader: DagReader, seeded: Seeded | undefined): Promise<StrategyResult> {
  const { record } = ctx
  const update = ctx.update
  const size = walk.written
  let hash: string | null = null
  try {
    if (walk.hasher !== undefined) {
      await tree.syncAll()
      hash = await walk.hasher.digest(size, ctx.signal)
    }
    // recorded once more, also when nothing is pending: a run that lost its lease (it was stopped past
    // its end) stops here, before it deletes or renames what the process that took over works on
    await walk.checkpoints.checkpoint(true)
  } catch (err) {
    walk.hasher?.close()
    await tree.close()
    if (ctx.signal.aborted) throw ctx.signal.reason
    throw toCidgetError(err)
  }
  try {
    // an update: the old output's entries that the new version lacks, removed or carried over when the user added
    // them; then the report, complete (a run stopped after the swap finds the lists there, and the old output gone)
    if (update !== undefined && record.updateReport?.complete !== true) {
      const carried = await carryOver(tree.root, record.output, update.previous, reader)
      // what the first run kept (a resumed run did not seed), from the record
      const kept = seeded ?? record.updateReport ?? { keptFiles: 0, keptBytes: 0, reusedBytes: 0 }
      await journal.report(updateReport(kept, size, carried, true))
    }
    const partial = update === undefined
      ? tree
      : { remove: async () => { await tree.remove() }, commit: async () => { await tree.syncAll(); await tree.close(); await swapIn(tree.root, record.output) } }
    // its progress is forgotten with the success record (one transaction): a kill between the two
    // leaves progress beside the output in place, which the next run recognizes as done
    await checkRecordRename(journal, partial, record.expectedSha256, hash, undefined, (h) =>
      `The content of ${record.cid}${record.path} is verified against its CID, but its SHA-256 is ${h}, not the expected ${record.expectedSha256 ?? ''}`)
  } finally {
    // closed in every case (a lost lease, a failed report): a tree's writer thread and descriptors are not left behind
    await tree.close().catch(() => {})
  }
  return { hash, size, gateway: ctx.lastGateway() ?? record.gateways[0] ?? '' }
}
