import type { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import * as rawCodec from 'multiformats/codecs/raw'
import type { UnixFS } from 'ipfs-unixfs'
import { CidgetError } from '../../core/errors.js'
import { MAX_BLOCK_BYTES, verifyBlock } from '../../gateways/block.js'
import type { PartialFile } from '../../sink/partial.js'
import { DagReader, type BlockSource, type KeptBlocks } from './reader.js'
import { DagBudget, decodeUnixFS, type DagLimits } from './dag.js'

export interface RepairReport {
  /** Data blocks whose bytes on disk did not match the DAG, rewritten from verified blocks. */
  blocks: number
  bytes: number
}

export interface CheckOptions {
  cid: string
  path: string
  /** Where the download's inner blocks are kept (its journal). */
  journal: KeptBlocks
  blocks: BlockSource
  limits: DagLimits
  signal: AbortSignal
  concurrency: number
}

function equal (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)
}

/**
 * Checks a file downloaded in path mode against its CID: fetches only the DAG's
 * inner nodes, and for each leaf hashes the matching range of the file (raw
 * leaves) or compares it with the leaf's data (dag-pb leaves, which must be
 * fetched to be known). A range that does not match is rewritten from the
 * verified block. Throws CIDGET_ERR_LENGTH_MISMATCH when the file's size is not
 * the DAG's, CIDGET_ERR_DAG_INVALID when the CID does not name a file.
 */
export async function checkFileAgainstDag (file: PartialFile, size: number, opts: CheckOptions): Promise<RepairReport> {
  const reader = await DagReader.open(opts.journal, opts.blocks, opts.signal, opts.concurrency)
  const root = await reader.resolve(opts.cid, opts.path)
  const report: RepairReport = { blocks: 0, bytes: 0 }
  const budget = new DagBudget(opts.limits)

  const repair = async (offset: number, data: Uint8Array): Promise<void> => {
    await file.write(data, offset)
    report.blocks++
    report.bytes += data.byteLength
  }
  /** One leaf whose bytes are known (verified) against the file's range. */
  const compare = async (offset: number, data: Uint8Array): Promise<void> => {
    if (!equal(await file.read(offset, data.byteLength), data)) await repair(offset, data)
  }

  let running = 0
  const slots = new Set<Promise<number>>()
  const visit = async (cid: CID, offset: number, declared: number | undefined, depth: number, given?: Uint8Array): Promise<number> => {
    if (opts.signal.aborted) throw opts.signal.reason
    budget.depth(depth)
    if (cid.code === rawCodec.code && cid.multihash.code !== 0x00 && declared !== undefined) {
      // what a parent declares is read into memory below: no block can be larger than the limit
      if (declared > MAX_BLOCK_BYTES) {
        throw new CidgetError('CIDGET_ERR_DAG_INVALID', `Block ${cid.toString()} is declared as ${declared} bytes, over the ${MAX_BLOCK_BYTES}-byte block limit`)
      }
      // a raw leaf: its CID is the hash of the range, so the range is checked without fetching it
      const local = await file.read(offset, declared)
      try {
        await verifyBlock(cid, local)
      } catch (err) {
        if (!(err instanceof CidgetError) || err.code !== 'CIDGET_ERR_BLOCK_INVALID') throw err
        const good = await reader.get(cid)
        if (good.byteLength !== declared) throw new CidgetError('CIDGET_ERR_DAG_INVALID', `Block ${cid.toString()} holds ${good.byteLength} bytes where its parent declares ${declared}`)
        await repair(offset, good)
      }
      return declared
    }
    const bytes = given ?? await reader.get(cid)
    if (cid.code === rawCodec.code) {
      await compare(offset, bytes)
      return bytes.byteLength
    }
    if (cid.code !== dagPb.code) throw new CidgetError('CIDGET_ERR_DAG_INVALID', `${cid.toString()}: codec 0x${cid.code.toString(16)} is not a UnixFS file`)
    let node: dagPb.PBNode
    let fs: UnixFS
    try {
      ;({ node, fs } = decodeUnixFS(bytes))
    } catch (err) {
      throw new CidgetError('CIDGET_ERR_DAG_INVALID', `${cid.toString()}: not a UnixFS node (${(err as Error).message})`, { cause: err })
    }
    if (fs.type !== 'file' && fs.type !== 'raw') throw new CidgetError('CIDGET_ERR_DAG_INVALID', `${opts.cid}${opts.path} is a ${fs.type}, not a file; path mode writes files only`)
    const data = fs.data ?? new Uint8Array(0)
    if (data.byteLength > 0) await compare(offset, data)
    if (node.Links.length > 0) await reader.keep(cid, bytes)
    if (fs.blockSizes.length !== node.Links.length) throw new CidgetError('CIDGET_ERR_DAG_INVALID', `${cid.toString()}: ${node.Links.length} links but ${fs.blockSizes.length} block sizes`)
    // checked before the children are visited, so that no child is read with a size its parent made up
    const sum = fs.blockSizes.reduce((a, b) => a + b, BigInt(data.byteLength))
    if (declared !== undefined && sum !== BigInt(declared)) {
      throw new CidgetError('CIDGET_ERR_DAG_INVALID', `${cid.toString()} holds ${sum} bytes where its parent declares ${declared}`)
    }
    let at = offset + data.byteLength
    const leaves: Array<Promise<number>> = []
    for (let j = 0; j < node.Links.length; j++) {
      const link = node.Links[j] as dagPb.PBLink
      if (j % opts.concurrency === 0) {
        // dag-pb children are fetched anyway; raw ones only when bad
        for (const next of node.Links.slice(j, j + opts.concurrency)) if (next.Hash.code === dagPb.code) reader.readAhead(next.Hash)
      }
      const size = Number(fs.blockSizes[j])
      if (link.Hash.code === rawCodec.code) {
        // raw leaves are checked several at a time (a read and a hash each); their offsets are known
        while (running >= opts.concurrency) await Promise.race(slots)
        const slot = visit(link.Hash, at, size, depth + 1).finally(() => { running--; slots.delete(slot) })
        running++
        slots.add(slot)
        slot.catch(() => {})
        leaves.push(slot)
      } else {
        await visit(link.Hash, at, size, depth + 1)
      }
      at += size
    }
    await Promise.all(leaves)
    const total = at - offset
    if (declared !== undefined && total !== declared) throw new CidgetError('CIDGET_ERR_DAG_INVALID', `${cid.toString()} holds ${total} bytes where its parent declares ${declared}`)
    return total
  }

  // the DAG's size first: a file of another size is not this content at all
  const rootBytes = await reader.get(root)
  const dagSize = sizeOfRoot(root, rootBytes)
  if (dagSize !== size) {
    throw new CidgetError('CIDGET_ERR_LENGTH_MISMATCH', `The file has ${size} bytes but ${opts.cid}${opts.path} has ${dagSize}`)
  }
  await visit(root, 0, undefined, 0, rootBytes)
  await file.sync()
  return report
}

/** The size a file's root block declares (a raw block: its length); -1 for a codec that is not UnixFS. */
function sizeOfRoot (root: CID, bytes: Uint8Array): number {
  try {
    if (root.code === rawCodec.code) return bytes.byteLength
    if (root.code === dagPb.code) return Number(decodeUnixFS(bytes).fs.fileSize())
  } catch (err) {
    throw new CidgetError('CIDGET_ERR_DAG_INVALID', `${root.toString()}: not a UnixFS node (${(err as Error).message})`, { cause: err })
  }
  return -1
}

/**
 * The size the DAG declares for the file path mode downloads (one verified
 * block: the root, after the path's), so that a body without a length can be
 * cut off there; undefined when the CID does not name a UnixFS file.
 */
export async function declaredFileSize (opts: CheckOptions): Promise<number | undefined> {
  const reader = await DagReader.open(opts.journal, opts.blocks, opts.signal, opts.concurrency)
  const root = await reader.resolve(opts.cid, opts.path)
  const size = sizeOfRoot(root, await reader.get(root))
  return size >= 0 ? size : undefined
}
