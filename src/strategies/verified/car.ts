import { CID } from 'multiformats/cid'
import { varint } from 'multiformats'
import * as dagPb from '@ipld/dag-pb'
import { toCidgetError } from '../../core/errors.js'
import { partialPath, type PartialFile } from '../../sink/partial.js'
import { CarWriter, carHeader, carSection, sizeOf } from '../../sink/car-writer.js'
import { MAX_BLOCK_BYTES, verifyBlock } from '../../gateways/block.js'
import type { DownloadJournal } from '../../core/journal.js'
import type { StrategyResult } from '../types.js'
import { checkRecordRename, committedOutput, restartWithoutPartial } from '../steps.js'
import { Bitmap } from './bitmap.js'
import type { VerifiedContext } from './context.js'
import { DagBudget, decodePb, decodeUnixFS, declaredSize } from './dag.js'
import { DagReader } from './reader.js'

/** A whole CAR section found on disk past the recorded end: its block's CID, where it ends, its bytes when dag-pb. */
interface FoundSection {
  cid: string
  end: number
  node?: Uint8Array
}

/**
 * The sections of the CAR at `file` from `from` to its end that are whole and
 * hash to their CIDs, up to the first that is not: what a run killed after its
 * last record appended. The CAR is cut after them.
 */
async function sectionsOnDisk (file: PartialFile, from: number): Promise<FoundSection[]> {
  const found: FoundSection[] = []
  const size = await file.size()
  let at = from
  while (at < size) {
    const head = await file.read(at, Math.min(10, size - at))
    let length: number
    let prefix: number
    try {
      ;[length, prefix] = varint.decode(head)
    } catch {
      break
    }
    if (length <= 0 || length > MAX_BLOCK_BYTES + 128 || at + prefix + length > size) break
    const section = await file.read(at + prefix, length)
    let cid: CID
    let bytes: Uint8Array
    try {
      ;[cid, bytes] = CID.decodeFirst(section)
      await verifyBlock(cid, bytes)
    } catch {
      break
    }
    at += prefix + length
    found.push({ cid: cid.toString(), end: at, ...(cid.code === dagPb.code ? { node: bytes } : {}) })
  }
  return found
}

/** How many leading bits of the bitmap are set. */
function prefixLength (bits: Bitmap): number {
  let n = 0
  while (bits.has(n)) n++
  return n
}

/**
 * CAR output: the DAG's verified blocks, depth-first, each once, as a CARv1
 * (`order=dfs`, `dups=n`) rooted at the target. Blocks are appended in walk
 * order while the next ones are read ahead; the CAR is fsynced and its length
 * and block count recorded at each checkpoint. A resume keeps the whole,
 * valid blocks a killed run appended after its last record (each is checked
 * against the block the walk expects there, and recorded after an fsync),
 * truncates the CAR after the last of them, and walks on from there. dag-pb and raw blocks are
 * followed; identity blocks are left out, as gateways do.
 */
export async function runCarDownload (ctx: VerifiedContext): Promise<StrategyResult> {
  const { record, journal } = ctx
  // a run killed between the rename onto the output and the success record: the CAR is in place
  const committed = await committedOutput(record)
  if (committed !== undefined) return committed
  const stored = await restartShortCar(ctx, journal)
  const done = new Bitmap(stored)
  const skip = stored === undefined ? 0 : prefixLength(done) // blocks already in the CAR
  const reader = await DagReader.open(journal, ctx.blocks, ctx.signal, ctx.concurrency)
  const root = await reader.resolve(record.cid, record.path)
  const writer = await CarWriter.open(record.output, skip === 0 ? 0 : record.currentSize)
  // blocks after the recorded ones, on disk: the walk takes them as it meets them, in order
  const walk = new CarWalk(ctx, journal, reader, writer, done, skip, skip === 0 ? [] : await sectionsOnDisk(writer.file, writer.end))
  await walk.run(root)
  return await finishCar(ctx, journal, writer, walk)
}

/**
 * The progress an earlier run recorded, when the partial CAR holds the bytes
 * it counts; else the CAR starts again (appending after them would leave a
 * hole): deleted, cut short, or written on another machine.
 */
async function restartShortCar (ctx: VerifiedContext, journal: DownloadJournal): Promise<Uint8Array | undefined> {
  const { record } = ctx
  const stored = await journal.progress()
  const partial = partialPath(record.output)
  if (stored === undefined || await sizeOf(partial) >= record.currentSize) return stored
  await restartWithoutPartial(journal, `the partial CAR ${partial} does not hold the ${record.currentSize} bytes an earlier run recorded`)
  return undefined
}

/** The depth-first walk of a CAR download, appending each block met the first time. */
class CarWalk {
  readonly #ctx: VerifiedContext
  readonly #journal: DownloadJournal
  readonly #reader: DagReader
  readonly #writer: CarWriter
  readonly #done: Bitmap
  /** Blocks in the CAR when the run began. */
  readonly #skip: number
  readonly #budget: DagBudget
  readonly #seen = new Set<string>()
  /** Sections on disk past the recorded end, not met by the walk yet. */
  #found: FoundSection[]
  #durable: number
  /** Blocks met in walk order. */
  #index = 0
  /** Blocks in the CAR file. */
  #appended: number
  #lastSync: number
  /** The whole DAG comes in one stream: nothing is read ahead. */
  #streaming = false

  constructor (ctx: VerifiedContext, journal: DownloadJournal, reader: DagReader, writer: CarWriter, done: Bitmap, skip: number, found: FoundSection[]) {
    this.#ctx = ctx
    this.#journal = journal
    this.#reader = reader
    this.#writer = writer
    this.#done = done
    this.#skip = skip
    this.#found = found
    this.#budget = new DagBudget(ctx.limits, 'blocks')
    this.#durable = writer.end
    this.#appended = skip
    this.#lastSync = ctx.now()
  }

  /** fsyncs the CAR and records its length and blocks; `always`: records even when nothing was appended since. */
  async checkpoint (always = false): Promise<void> {
    const end = this.#writer.end
    if (this.#durable === end && !always) return
    await this.#writer.file.sync()
    for (let i = 0; i < this.#appended; i++) this.#done.add(i)
    this.#durable = end
    this.#lastSync = this.#ctx.now()
    await this.#journal.checkpoint(this.#done.toBytes(), this.#durable)
  }

  /**
   * Writes the CAR from `root`, and records the last checkpoint. On failure
   * what is written is recorded and the CAR closed.
   */
  async run (root: CID): Promise<void> {
    const writer = this.#writer
    try {
      if (this.#skip === 0) {
        await writer.truncate(0)
        await this.#append(carHeader(root), 0)
      } else {
        // after the last whole, valid block: a torn one, or bytes that are not a block, go
        await writer.truncate(this.#found.at(-1)?.end ?? writer.end)
      }
      await this.#streamed(root, async () => { await this.#visit(root, 0) })
      // blocks on disk past the walk's end (none when the walk is the one that wrote them)
      if (this.#found.length > 0 && (await writer.file.size()) > writer.end) await writer.truncate(writer.end)
      await this.checkpoint()
    } catch (err) {
      await this.checkpoint().catch(() => {})
      await writer.file.close()
      if (this.#ctx.signal.aborted) throw this.#ctx.signal.reason
      throw toCidgetError(err)
    }
  }

  /**
   * Runs `walk` with the whole DAG of `root`, a directory, streamed in one
   * CAR request (`dag-scope=all`, in the walk's order) where the source can,
   * when the CAR starts empty (a resume appends after what it holds: the
   * stream would bring that again). What it does not bring is fetched block
   * by block. A file comes as in the other modes, in runs of its leaves.
   */
  async #streamed (root: CID, walk: () => Promise<void>): Promise<void> {
    const runBlocks = this.#ctx.runBlocks ?? 16
    if (this.#skip > 0 || runBlocks <= 1 || root.code !== dagPb.code) {
      await walk()
      return
    }
    const bytes = await this.#reader.get(root)
    await this.#reader.keep(root, bytes) // the walk takes it from there, not from the network again
    let type: string | undefined
    try {
      type = decodeUnixFS(bytes).fs.type
    } catch {
      // not UnixFS: walked block by block (the walk judges the node)
    }
    const stream = type === 'directory' || type === 'hamt-sharded-directory' ? this.#reader.prefetchTree(root, declaredSize(bytes, decodePb(root, bytes))) : undefined
    this.#streaming = stream !== undefined
    try {
      await walk()
    } finally {
      this.#streaming = false
      stream?.release()
    }
  }

  /** The CAR now holds `blocks` blocks (recorded together with its end at the next checkpoint). */
  async #advance (blocks: number): Promise<void> {
    const ctx = this.#ctx
    const end = this.#writer.end
    this.#appended = blocks
    ctx.onProgress(end, null, ctx.lastGateway() ?? '')
    if (end - this.#durable >= ctx.policy.syncIntervalBytes || ctx.now() - this.#lastSync >= ctx.policy.syncIntervalMs) await this.checkpoint()
  }

  /** Appends `data`; `blocks` is how many blocks the CAR then holds. */
  async #append (data: Uint8Array, blocks: number): Promise<void> {
    await this.#writer.append(data)
    await this.#advance(blocks)
  }

  /** The bytes of block `cid`, the `i`th met, appended unless the CAR holds it already; undefined when nothing of it matters now. */
  async #block (cid: CID, key: string, i: number): Promise<Uint8Array | undefined> {
    const onDisk = i >= this.#skip && i === this.#appended ? this.#found[i - this.#skip] : undefined
    if (i < this.#skip) {
      // in the CAR already: only inner blocks matter now, and those were kept
      return await this.#reader.keptBytes(cid)
    }
    if (onDisk !== undefined && onDisk.cid === key) {
      // appended by a run killed before it recorded it: taken as it is
      this.#writer.keepTo(onDisk.end)
      await this.#advance(i + 1)
      return onDisk.node
    }
    if (onDisk !== undefined) {
      // not the block the walk expects here: the CAR on disk is cut before it
      this.#found = []
      await this.#writer.truncate(this.#writer.end)
    }
    const bytes = await this.#reader.get(cid)
    await this.#append(carSection(cid, bytes), i + 1)
    return bytes
  }

  async #visit (cid: CID, depth: number): Promise<void> {
    const ctx = this.#ctx
    if (ctx.signal.aborted) throw ctx.signal.reason
    this.#budget.depth(depth, cid)
    if (cid.multihash.code === 0x00) return
    const key = cid.toString()
    if (this.#seen.has(key)) return
    this.#seen.add(key)
    this.#budget.entry()
    const bytes = await this.#block(cid, key, this.#index++)
    if (bytes === undefined || cid.code !== dagPb.code) return
    const links = decodePb(cid, bytes).Links.map(l => l.Hash)
    if (links.length === 0) return
    await this.#reader.keep(cid, bytes)
    for (let j = 0; j < links.length; j++) {
      if (j % ctx.concurrency === 0 && this.#index >= this.#skip + this.#found.length && !this.#streaming) {
        for (const next of links.slice(j, j + ctx.concurrency * 2)) if (!this.#seen.has(next.toString())) this.#reader.readAhead(next)
      }
      await this.#visit(links[j] as CID, depth + 1)
    }
  }
}

/** The CAR's end: its SHA-256, the last checkpoint, the expected SHA-256 checked, then the hash and size recorded and the CAR renamed into place. */
async function finishCar (ctx: VerifiedContext, journal: DownloadJournal, writer: CarWriter, walk: CarWalk): Promise<StrategyResult> {
  const { record } = ctx
  const size = writer.end
  let digest: string
  try {
    digest = await writer.digest()
    // recorded once more, also when nothing is pending: a run that lost its lease (it was stopped past
    // its end) stops here, before it deletes or renames what the process that took over works on
    await walk.checkpoint(true)
  } catch (err) {
    await writer.file.close()
    if (ctx.signal.aborted) throw ctx.signal.reason
    throw toCidgetError(err)
  }
  // its progress is forgotten with the success record (one transaction)
  await checkRecordRename(journal, writer.file, record.expectedSha256, digest, size,
    (hash) => `The CAR's SHA-256 is ${hash}, not the expected ${record.expectedSha256 ?? ''}`)
  return { hash: digest, size, gateway: ctx.lastGateway() ?? record.gateways[0] ?? '' }
}
