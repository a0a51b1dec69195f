import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { CID } from 'multiformats/cid'
import { varint } from 'multiformats'
import * as dagPb from '@ipld/dag-pb'
import { createWriter, close as closeWriter, headerLength } from '@ipld/car/buffer-writer'
import { CidgetError, fsError, systemCode, toCidgetError } from '../../core/errors.js'
import { dirname } from 'node:path'
import { PartialFile, partialPath } from '../../sink/partial.js'
import { DiskSpace } from '../../sink/space.js'
import type { StrategyResult } from '../types.js'
import { checkRecordRename, committedOutput, restartWithoutPartial } from '../steps.js'
import { MAX_BLOCK_BYTES, verifyBlock } from '../../gateways/block.js'
import { Bitmap } from './bitmap.js'
import { DagReader } from './reader.js'
import type { VerifiedContext } from './index.js'

/** The CARv1 header naming `root`. */
function carHeader (root: CID): Uint8Array {
  const size = headerLength({ roots: [root] })
  return closeWriter(createWriter(new ArrayBuffer(size), { roots: [root], headerSize: size }))
}

/** One CAR section: varint(length) ‖ CID ‖ bytes. */
function carSection (cid: CID, bytes: Uint8Array): Uint8Array {
  const length = cid.bytes.byteLength + bytes.byteLength
  const prefix = varint.encodingLength(length)
  const out = new Uint8Array(prefix + length)
  varint.encodeTo(length, out, 0)
  out.set(cid.bytes, prefix)
  out.set(bytes, prefix + cid.bytes.byteLength)
  return out
}

/** The size of the file at `path`, or -1 when there is none. */
async function sizeOf (path: string): Promise<number> {
  try {
    return (await stat(path)).size
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return -1
    throw fsError(err, `look for ${path}`)
  }
}

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
  const { record, journal, policy, limits } = ctx
  // a run killed between the rename onto the output and the success record: the CAR is in place
  const committed = await committedOutput(record)
  if (committed !== undefined) return committed
  let stored = await journal.progress()
  const partial = partialPath(record.output)
  if (stored !== undefined && await sizeOf(partial) < record.currentSize) {
    // the blocks the progress counts are not in a partial CAR here (deleted, cut short, or written
    // on another machine): appending after them would leave a hole, so the CAR starts again
    stored = undefined
    await restartWithoutPartial(journal, `the partial CAR ${partial} does not hold the ${record.currentSize} bytes an earlier run recorded`)
  }
  const doneBits = new Bitmap(stored)
  const skip = stored === undefined ? 0 : prefixLength(doneBits) // blocks already in the CAR
  const reader = await DagReader.open(journal, ctx.blocks, ctx.signal, ctx.concurrency)
  const root = await reader.resolve(record.cid, record.path)
  const file = await PartialFile.open(record.output)
  let offset = skip === 0 ? 0 : record.currentSize
  // blocks after the recorded ones, on disk: the walk takes them as it meets them, in order
  let found = skip === 0 ? [] : await sectionsOnDisk(file, offset)
  let durable = offset
  let index = 0 // blocks met in walk order
  let appended = skip // blocks in the CAR file
  let entries = 0
  let lastSync = ctx.now()
  const seen = new Set<string>()

  /** fsyncs the CAR and records its length and blocks; `always`: records even when nothing was appended since. */
  const checkpoint = async (always = false): Promise<void> => {
    if (durable === offset && !always) return
    await file.sync()
    for (let i = 0; i < appended; i++) doneBits.add(i)
    durable = offset
    lastSync = ctx.now()
    await journal.checkpoint(doneBits.toBytes(), durable)
  }
  /** The CAR now holds `blocks` blocks and ends at `end` (recorded together at the next checkpoint). */
  const advance = async (end: number, blocks: number): Promise<void> => {
    offset = end
    appended = blocks
    ctx.onProgress(offset, null, ctx.lastGateway() ?? '')
    if (offset - durable >= policy.syncIntervalBytes || ctx.now() - lastSync >= policy.syncIntervalMs) await checkpoint()
  }
  // a CAR declares no size ahead: each block must fit in the free space as it comes
  const space = new DiskSpace(dirname(file.path))
  /** Appends `data`; `blocks` is how many blocks the CAR then holds. */
  const append = async (data: Uint8Array, blocks: number): Promise<void> => {
    await space.ensure(data.byteLength)
    await file.write(data, offset)
    space.wrote(data.byteLength)
    await advance(offset + data.byteLength, blocks)
  }

  const visit = async (cid: CID, depth: number): Promise<void> => {
    if (ctx.signal.aborted) throw ctx.signal.reason
    if (depth > limits.maxDepth) throw new CidgetError('CIDGET_ERR_DAG_LIMIT', `The DAG is deeper than ${limits.maxDepth} levels at ${cid.toString()}`)
    if (cid.multihash.code === 0x00) return
    const key = cid.toString()
    if (seen.has(key)) return
    seen.add(key)
    if (++entries > limits.maxEntries) throw new CidgetError('CIDGET_ERR_DAG_LIMIT', `The DAG has more than ${limits.maxEntries} blocks`)
    const i = index++
    let bytes: Uint8Array | undefined
    const onDisk = i >= skip && i === appended ? found[i - skip] : undefined
    if (i < skip) {
      // in the CAR already: only inner blocks matter now, and those were kept
      bytes = reader.cached(cid)
      if (bytes === undefined) return
    } else if (onDisk !== undefined && onDisk.cid === key) {
      // appended by a run killed before it recorded it: taken as it is
      await advance(onDisk.end, i + 1)
      if (onDisk.node === undefined) return
      bytes = onDisk.node
    } else {
      if (onDisk !== undefined) {
        // not the block the walk expects here: the CAR on disk is cut before it
        found = []
        await file.truncate(offset)
      }
      bytes = await reader.get(cid)
      await append(carSection(cid, bytes), i + 1)
    }
    if (cid.code !== dagPb.code) return
    let links: CID[]
    try {
      links = dagPb.decode(bytes).Links.map(l => l.Hash)
    } catch (err) {
      throw new CidgetError('CIDGET_ERR_DAG_INVALID', `Block ${key}: not a valid dag-pb node (${(err as Error).message})`, { cause: err })
    }
    if (links.length === 0) return
    await reader.keep(cid, bytes)
    for (let j = 0; j < links.length; j++) {
      if (j % ctx.concurrency === 0 && index >= skip + found.length) {
        for (const next of links.slice(j, j + ctx.concurrency * 2)) if (!seen.has(next.toString())) reader.readAhead(next)
      }
      await visit(links[j] as CID, depth + 1)
    }
  }

  try {
    if (skip === 0) {
      await file.truncate(0)
      await append(carHeader(root), 0)
    } else {
      // after the last whole, valid block: a torn one, or bytes that are not a block, go
      await file.truncate(found.at(-1)?.end ?? offset)
    }
    await visit(root, 0)
    // blocks on disk past the walk's end (none when the walk is the one that wrote them)
    if (found.length > 0 && (await file.size()) > offset) await file.truncate(offset)
    await checkpoint()
  } catch (err) {
    await checkpoint().catch(() => {})
    await file.close()
    if (ctx.signal.aborted) throw ctx.signal.reason
    throw toCidgetError(err)
  }
  let digest: string
  try {
    const hash = createHash('sha256')
    for await (const chunk of createReadStream(file.path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
    digest = hash.digest('hex')
    // recorded once more, also when nothing is pending: a run that lost its lease (it was stopped past
    // its end) stops here, before it deletes or renames what the process that took over works on
    await checkpoint(true)
  } catch (err) {
    await file.close()
    if (ctx.signal.aborted) throw ctx.signal.reason
    throw toCidgetError(err)
  }
  // its progress is forgotten with the success record (one transaction)
  await checkRecordRename(journal, file, record.expectedSha256, digest, offset,
    (hash) => `The CAR's SHA-256 is ${hash}, not the expected ${record.expectedSha256 ?? ''}`)
  return { hash: digest, size: offset, gateway: ctx.lastGateway() ?? record.gateways[0] ?? '' }
}
