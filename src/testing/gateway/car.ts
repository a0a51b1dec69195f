/**
 * The trustless CAR answer: which blocks it carries (path, then `dag-scope`
 * and IPIP-402 `entity-bytes`), its layout, and the byte stream.
 *
 * @module
 */

import { blockLength, headerLength } from '@ipld/car/buffer-writer'
import { CarWriter } from '@ipld/car/writer'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import { IDENTITY_CODE } from '../blocks.js'
import type { MemoryBlocks } from '../blocks.js'
import type { Resolved } from './content.js'
import { HttpError } from './request.js'

export interface Block { cid: CID, bytes: Uint8Array }

export interface EntityBytes { from: number, to: number | '*' }

/** `from:to` as in IPIP-402: integers, negative from the end, `to` may be `*`. */
export function parseEntityBytes (text: string): EntityBytes {
  const m = /^(-?\d+):(-?\d+|\*)$/.exec(text)
  if (m === null || m[1] === undefined || m[2] === undefined) {
    throw new HttpError(400, `invalid entity-bytes "${text}": use from:to, e.g. 0:1023, 1024:*, -1024:*`)
  }
  return { from: Number(m[1]), to: m[2] === '*' ? '*' : Number(m[2]) }
}

export interface CarPlan {
  blocks: Block[]
  /** A block below the root was missing: the stream must end abruptly after `blocks`. */
  truncated: boolean
}

class MissingBlock extends Error {}

/**
 * Lists the blocks of a CAR answer, in DFS order without duplicates: the
 * blocks of the path, then the terminal entity by scope. Only references to
 * stored blocks are kept, so even a 1 GiB file costs a few thousand entries.
 */
export function carPlan (store: MemoryBlocks, resolved: Resolved, scope: 'block' | 'entity' | 'all', entityBytes: EntityBytes | null): CarPlan {
  const blocks: Block[] = []
  try {
    for (const block of carWalk(store, resolved, scope, entityBytes)) blocks.push(block)
  } catch (err) {
    if (!(err instanceof MissingBlock)) throw err
    return { blocks, truncated: true }
  }
  return { blocks, truncated: false }
}

/**
 * The blocks of a CAR answer of the whole entity or DAG (no `entity-bytes`),
 * found as they are sent, as a gateway streams a DAG while it walks it: the
 * first byte goes out at once, not after a walk of every block. `sent` lists
 * the CIDs handed out so far; `finish()` completes it with the rest of the
 * walk (a record lists every block of the answer, as with {@link carPlan},
 * even when the client left early); `truncated()` says whether a block was
 * missing (the stream then ends after the blocks before it).
 */
export function lazyCar (store: MemoryBlocks, resolved: Resolved, scope: 'block' | 'entity' | 'all'): { blocks: Iterable<Block>, sent: string[], truncated: () => boolean, finish: () => void } {
  const walk = carWalk(store, resolved, scope, null)
  const sent: string[] = []
  let truncated = false
  const next = (): Block | undefined => {
    if (truncated) return undefined
    try {
      const r = walk.next()
      if (r.done === true) return undefined
      sent.push(r.value.cid.toString())
      return r.value
    } catch (err) {
      if (!(err instanceof MissingBlock)) throw err
      truncated = true
      return undefined
    }
  }
  const blocks: Iterable<Block> = {
    * [Symbol.iterator] () {
      for (let block = next(); block !== undefined; block = next()) yield block
    }
  }
  return { blocks, sent, truncated: () => truncated, finish: () => { while (next() !== undefined); } }
}

/** The walk of {@link carPlan}: each block as it is found; a missing one throws MissingBlock. */
function * carWalk (store: MemoryBlocks, resolved: Resolved, scope: 'block' | 'entity' | 'all', entityBytes: EntityBytes | null): Generator<Block, void, undefined> {
  const seen = new Set<string>()
  /** The block `add` found last, to hand out. */
  let found: Block | undefined

  /** Adds `cid` and returns its bytes, or `null` when it must not be added (identity, or already there). */
  const add = (cid: CID): Uint8Array | null => {
    if (cid.multihash.code === IDENTITY_CODE) return null
    const key = cid.toString()
    if (seen.has(key)) return null
    if (!store.has(cid)) throw new MissingBlock(key)
    const bytes = store.get(cid)
    seen.add(key)
    found = { cid, bytes }
    return bytes
  }
  /** The block `add` found, if it found one. */
  function * out (): Generator<Block, void, undefined> {
    if (found === undefined) return
    const block = found
    found = undefined
    yield block
  }

  function * all (cid: CID): Generator<Block, void, undefined> {
    const bytes = add(cid)
    yield * out()
    if (bytes === null || cid.code !== dagPb.code) return
    for (const link of dagPb.decode(bytes).Links) yield * all(link.Hash)
  }

  /** The blocks of a file that overlap [from, to]; `base` is the file offset of `cid`'s first byte. */
  function * fileRange (cid: CID, bytes: Uint8Array, base: number, from: number, to: number): Generator<Block, void, undefined> {
    if (cid.code !== dagPb.code) return
    const node = dagPb.decode(bytes)
    const unixfs = unmarshal(node)
    if (unixfs === null || node.Links.length !== unixfs.blockSizes.length) {
      for (const link of node.Links) yield * all(link.Hash)
      return
    }
    let position = base + (unixfs.data?.length ?? 0)
    for (let i = 0; i < node.Links.length; i++) {
      const link = node.Links[i] as dagPb.PBLink
      const size = Number(unixfs.blockSizes[i] ?? 0n)
      if (position <= to && position + size - 1 >= from) {
        const child = add(link.Hash)
        yield * out()
        if (child !== null) yield * fileRange(link.Hash, child, position, from, to)
      }
      position += size
    }
  }

  function * shards (node: dagPb.PBNode, unixfs: UnixFS): Generator<Block, void, undefined> {
    const padLength = (Number(unixfs.fanout ?? 256n) - 1).toString(16).length
    for (const link of node.Links) {
      if ((link.Name ?? '').length !== padLength) continue // a directory entry, not a sub-shard
      const bytes = add(link.Hash)
      yield * out()
      if (bytes === null) continue
      const child = dagPb.decode(bytes)
      const childFs = unmarshal(child)
      if (childFs !== null) yield * shards(child, childFs)
    }
  }

  function * entity (cid: CID): Generator<Block, void, undefined> {
    const bytes = add(cid)
    yield * out()
    if (bytes === null || cid.code !== dagPb.code) return
    const node = dagPb.decode(bytes)
    const unixfs = unmarshal(node)
    if (unixfs === null) return
    if (unixfs.type === 'hamt-sharded-directory') {
      yield * shards(node, unixfs)
      return
    }
    if (unixfs.type !== 'file' && unixfs.type !== 'raw') return
    let from = 0
    let to = Number.POSITIVE_INFINITY
    if (entityBytes !== null) {
      const range = resolveEntityBytes(entityBytes, Number(unixfs.fileSize()))
      if (range === null) return // zero-length range: like dag-scope=block
      ;({ from, to } = range)
    }
    yield * fileRange(cid, bytes, 0, from, to)
  }

  const terminal = resolved.cid
  for (const cid of resolved.roots.slice(0, -1)) {
    add(cid)
    yield * out()
  }
  if (entityBytes !== null && terminal.code === rawCodec.code && terminal.multihash.code !== IDENTITY_CODE) {
    // A raw file: one block, but an out-of-range request is still a 400.
    resolveEntityBytes(entityBytes, store.get(terminal).length)
  }
  if (scope === 'block') {
    add(terminal)
    yield * out()
  } else if (scope === 'entity') yield * entity(terminal)
  else yield * all(terminal)
}

function unmarshal (node: dagPb.PBNode): UnixFS | null {
  if (node.Data === undefined) return null
  try {
    return UnixFS.unmarshal(node.Data)
  } catch {
    return null
  }
}

/** IPIP-402 range against a file of `size` bytes: inclusive bounds, or `null` for an empty range. */
function resolveEntityBytes (eb: EntityBytes, size: number): { from: number, to: number } | null {
  const from = eb.from < 0 ? Math.max(0, size + eb.from) : eb.from
  const to = eb.to === '*' ? size - 1 : eb.to < 0 ? size + eb.to : Math.min(eb.to, size - 1)
  if (size > 0 && from >= size) {
    throw new HttpError(400, `entity-bytes ${eb.from}:${eb.to} is outside the entity (${size} bytes)`)
  }
  return to < from ? null : { from, to }
}

/** Body length of the CAR, and the default `flip` position: the middle byte of the middle block. */
export function carLayout (root: CID, blocks: Block[]): { total: number, middle: number } {
  let total = headerLength({ roots: [root] })
  let middle: number | undefined
  const middleIndex = Math.floor(blocks.length / 2)
  blocks.forEach((block, i) => {
    const length = blockLength(block)
    if (i === middleIndex && block.bytes.length > 0) middle = total + length - block.bytes.length + Math.floor(block.bytes.length / 2)
    total += length
  })
  return { total, middle: middle ?? Math.floor(total / 2) }
}

/** The CAR bytes, produced by `CarWriter` one block at a time as the consumer pulls (its `put` waits for the reader). */
export async function * carStream (root: CID, blocks: Iterable<Block>): AsyncGenerator<Uint8Array> {
  const { writer, out } = CarWriter.create([root])
  let failure: unknown
  const producer = (async () => {
    try {
      for (const block of blocks) await writer.put(block)
    } finally {
      await writer.close()
    }
  })().catch((err: unknown) => { failure = err })
  yield * out
  await producer
  if (failure !== undefined) throw failure
}

/** A short hash of `text`, to tell apart the ETags of different CAR answers for one CID. */
export function fnv1a (text: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h.toString(16).padStart(8, '0')
}
