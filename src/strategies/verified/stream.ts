/**
 * One file's verified bytes, in order, to a writer (`cidget get … -o -`):
 * the DAG walked depth-first from the file's root, leaves fetched a window
 * ahead of the writer (in CAR runs where the source can), each block checked
 * against its CID by the source before a byte of it is handed over. Nothing
 * is written to disk or recorded: the writer gets each byte exactly once,
 * whatever the gateways do (a reset mid-run is refetched by the source).
 *
 * @module
 */
import { createHash } from 'node:crypto'
import type { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import * as rawCodec from 'multiformats/codecs/raw'
import { CidgetError } from '../../core/errors.js'
import { DagBudget, decode, invalid, type DagLimits } from './dag.js'
import { DagReader, type BlockSource, type KeptBlocks } from './reader.js'
import { RunPlanner, type PlannedLeaf } from './runs.js'

export interface StreamInit {
  /** The root CID and the path inside it ('' for the root). */
  cid: string
  path: string
  blocks: BlockSource
  limits: DagLimits
  /** Blocks fetched ahead of the writer. */
  concurrency: number
  /** Consecutive raw leaves asked for in one CAR request; 0 or 1: block by block. */
  runBlocks: number
  signal: AbortSignal
  /** Takes the next bytes; resolves when more may come (backpressure). */
  write: (bytes: Uint8Array) => Promise<void>
  /** Called after each write with the bytes written and the file's declared size. */
  onBytes?: (written: number, total: number) => void
}

export interface StreamResult {
  /** The file's CID (what the path names). */
  cid: string
  size: number
  /** SHA-256 (hex) of the bytes written. */
  sha256: string
}

/** Nothing is kept between runs: a stream has no record. */
const NOTHING_KEPT: KeptBlocks = {
  keptBlockKeys: async () => new Set<string>(),
  keptBlock: async () => undefined,
  keepBlock: async () => {}
}

/** A piece of the file, in order: bytes at hand, or a leaf on its way. */
type Piece = Promise<Uint8Array>
/** One step of the walk: resolves (an inner node read first) to the next piece. */
type Step = Promise<{ piece: Piece }>

/** Writes the file that `init.cid` + `init.path` names to `init.write` (see the module). */
export async function streamVerifiedFile (init: StreamInit): Promise<StreamResult> {
  const reader = await DagReader.open(NOTHING_KEPT, init.blocks, init.signal, init.concurrency)
  const root = await reader.resolve(init.cid, init.path)
  const rootBytes = await reader.get(root)
  const budget = new DagBudget(init.limits, 'blocks')
  let total: number
  if (root.code === rawCodec.code) {
    total = rootBytes.byteLength
  } else if (root.code === dagPb.code) {
    const { fs } = decode(root, rootBytes)
    if (fs.type === 'directory' || fs.type === 'hamt-sharded-directory') {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${init.cid}${init.path} is a directory: -o - writes one file (give a directory with -o, or a file's path)`)
    }
    if (fs.type !== 'file' && fs.type !== 'raw') throw invalid(root, `UnixFS type ${fs.type} is not a file`)
    total = Number(fs.fileSize())
  } else {
    throw invalid(root, `codec 0x${root.code.toString(16)} is not UnixFS (dag-pb or raw)`)
  }
  budget.file(total)
  const hash = createHash('sha256')
  let written = 0
  const window: Piece[] = []
  const ahead = Math.max(init.concurrency, 2 * init.runBlocks, 4)
  const flush = async (piece: Piece): Promise<void> => {
    const bytes = await piece
    if (init.signal.aborted) throw init.signal.reason
    written += bytes.byteLength
    if (written > total) throw invalid(root, `the file's blocks hold more than the ${total} bytes its root declares`)
    hash.update(bytes)
    await init.write(bytes)
    init.onBytes?.(written, total)
  }
  const walk = new FileWalk(reader, budget, init)
  for (const step of walk.pieces(root, rootBytes)) {
    const { piece } = await step
    // a failure of a piece ahead surfaces when the writer gets to it
    piece.catch(() => {})
    window.push(piece)
    if (window.length >= ahead) await flush(window.shift() as Piece)
  }
  while (window.length > 0) await flush(window.shift() as Piece)
  if (written !== total) throw invalid(root, `the file's blocks hold ${written} bytes, not the ${total} its root declares`)
  return { cid: root.toString(), size: written, sha256: hash.digest('hex') }
}

/**
 * The pieces of a file in order. Each step resolves to the next piece once
 * it is known (an inner node is read before its pieces are); a leaf's fetch
 * starts when its step is taken, so the window above decides how far ahead
 * leaves are fetched. The caller awaits each step before taking the next.
 */
class FileWalk {
  readonly #reader: DagReader
  readonly #budget: DagBudget
  /** The walk's planner of CAR runs, for the raw children of each node (undefined: block by block). */
  readonly #planner: RunPlanner | undefined
  readonly #signal: AbortSignal

  constructor (reader: DagReader, budget: DagBudget, init: StreamInit) {
    this.#reader = reader
    this.#budget = budget
    this.#planner = init.runBlocks > 1
      ? new RunPlanner({
        runBlocks: init.runBlocks,
        window: init.runBlocks,
        // nothing is done before a stream starts: every leaf is fetched
        isDone: () => false,
        start: (entity, range, leaves) => reader.prefetchRun(entity, range, leaves.map((l) => l.cid))
      })
      : undefined
    this.#signal = init.signal
  }

  * pieces (root: CID, rootBytes: Uint8Array): Generator<Step> {
    yield * this.#node(root, Promise.resolve(rootBytes), 0)
  }

  * #node (cid: CID, bytes: Promise<Uint8Array>, depth: number): Generator<Step> {
    this.#budget.depth(depth, cid)
    this.#budget.entry()
    if (cid.code === rawCodec.code) {
      yield Promise.resolve({ piece: bytes })
      return
    }
    if (cid.code !== dagPb.code) throw invalid(cid, `codec 0x${cid.code.toString(16)} inside a file`)
    // the node's links and data are known once its bytes are: the steps below wait for them in turn
    const state: { links: CID[], leaves: Array<PlannedLeaf | undefined>, data: Uint8Array | undefined } = { links: [], leaves: [], data: undefined }
    const opened = bytes.then((b) => {
      const { node, fs } = decode(cid, b)
      if (fs.type !== 'file' && fs.type !== 'raw') throw invalid(cid, `UnixFS type ${fs.type} inside a file`)
      state.links = node.Links.map((l) => l.Hash)
      state.data = fs.data
      // where each child lies in the node's bytes (none without one block size per link: no runs)
      let offset = fs.data?.byteLength ?? 0
      if (fs.blockSizes.length === state.links.length) {
        state.leaves = state.links.map((child, k) => {
          const size = Number(fs.blockSizes[k])
          const leaf = { index: k, cid: child, offset, size, parent: 0 }
          offset += size
          return leaf
        })
      }
      return undefined
    })
    yield opened.then(() => ({ piece: Promise.resolve(state.data ?? new Uint8Array(0)) }))
    let covered = 0
    for (let j = 0; j < state.links.length; j++) {
      if (this.#signal.aborted) throw this.#signal.reason
      const child = state.links[j] as CID
      if (child.code === rawCodec.code) {
        this.#budget.depth(depth + 1, child)
        this.#budget.entry()
        if (this.#planner?.children === true && j >= covered) covered = this.#planner.startChildren(cid, state.links, j, j, (k) => state.leaves[k])
        yield Promise.resolve({ piece: this.#reader.get(child) })
        continue
      }
      // the next inner nodes are read ahead while this one's pieces are written
      for (const next of state.links.slice(j + 1, j + 3)) if (next.code === dagPb.code) this.#reader.readAhead(next)
      yield * this.#node(child, this.#reader.get(child), depth + 1)
    }
  }
}
