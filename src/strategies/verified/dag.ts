/**
 * DAG decoding and the limits every walker of an untrusted DAG keeps to (the
 * verified walk, the CAR writer, path mode's check against the CID): one
 * {@link DagBudget} per walk counts what the DAG makes it do.
 */
import type { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { murmur3x64First64 } from './murmur3.js'
import { CidgetError } from '../../core/errors.js'
import { DEFAULTS } from '../../core/defaults.js'

/** Limits that keep a hostile DAG from exhausting disk, memory or the stack. */
export interface DagLimits {
  /** Deepest node below the root. @default 256 */
  maxDepth: number
  /** Files, directories and links in one download, the root included. @default 10000000 */
  maxEntries: number
  /** Total size the DAG may declare. @default 16 TiB */
  maxSize: number
}

export const DEFAULT_DAG_LIMITS: Readonly<DagLimits> = Object.freeze({
  maxDepth: DEFAULTS.MAX_DAG_DEPTH,
  maxEntries: DEFAULTS.MAX_DAG_ENTRIES,
  maxSize: DEFAULTS.MAX_DAG_SIZE
})

function limit (message: string): CidgetError {
  return new CidgetError('CIDGET_ERR_DAG_LIMIT', message)
}

/**
 * What one walk has spent of its {@link DagLimits}: each check throws
 * CIDGET_ERR_DAG_LIMIT once the DAG asks for more.
 */
export class DagBudget {
  readonly limits: Readonly<DagLimits>
  /** What an entry is called in the message: files and directories, or blocks. */
  readonly #unit: string
  #entries = 0
  #declared = 0

  constructor (limits: Readonly<DagLimits>, unit: 'entries' | 'blocks' = 'entries') {
    this.limits = limits
    this.#unit = unit
  }

  /** Bytes the DAG declared so far. */
  get declared (): number {
    return this.#declared
  }

  /** A node at `depth` below the root (`cid`, named in the message when given). */
  depth (depth: number, cid?: CID): void {
    if (depth > this.limits.maxDepth) {
      throw limit(`The DAG is deeper than ${this.limits.maxDepth} levels${cid === undefined ? '' : ` at ${cid.toString()}`}`)
    }
  }

  /** Whether a node at `depth` is within the limit (without counting or throwing). */
  allows (depth: number): boolean {
    return depth <= this.limits.maxDepth
  }

  /** One more entry (a file, directory or link; or a block). */
  entry (): void {
    if (++this.#entries > this.limits.maxEntries) throw limit(`The DAG has more than ${this.limits.maxEntries} ${this.#unit}`)
  }

  /** A file of `size` bytes: added to what the DAG declares in all. */
  declare (size: number): void {
    this.#declared += size
    if (this.#declared > this.limits.maxSize) throw limit(`The DAG declares more than ${this.limits.maxSize} bytes`)
  }

  /** The size a single file's root declares. */
  file (size: number): void {
    if (size > this.limits.maxSize) throw limit(`The file declares ${size} bytes, over the limit of ${this.limits.maxSize}`)
  }

  /** A sharded directory at `path` listed `count` entries so far. */
  listing (count: number, path: string): void {
    if (count > this.limits.maxEntries) throw limit(`The directory ${path} has more than ${this.limits.maxEntries} entries`)
  }
}

const EMPTY = new Uint8Array(0)

export function invalid (cid: CID, why: string, cause?: unknown): CidgetError {
  return new CidgetError('CIDGET_ERR_DAG_INVALID', `Block ${cid.toString()}: ${why}`, cause === undefined ? {} : { cause })
}

/** A dag-pb block's node. */
export function decodePb (cid: CID, bytes: Uint8Array): dagPb.PBNode {
  try {
    return dagPb.decode(bytes)
  } catch (err) {
    throw invalid(cid, `not a valid dag-pb node (${(err as Error).message})`, err)
  }
}

export interface Decoded {
  node: dagPb.PBNode
  fs: UnixFS
}

/** A dag-pb block's node and its UnixFS data. */
export function decode (cid: CID, bytes: Uint8Array): Decoded {
  const node = decodePb(cid, bytes)
  if (node.Data === undefined) throw invalid(cid, 'dag-pb node without UnixFS data')
  let fs: UnixFS
  try {
    fs = UnixFS.unmarshal(node.Data)
  } catch (err) {
    throw invalid(cid, `bad UnixFS data (${(err as Error).message})`, err)
  }
  return { node, fs }
}

/**
 * A dag-pb block's node and its UnixFS data (none: empty data), with the
 * decoders' own errors: for callers that say what is wrong in their own
 * words, or that only look (a node they cannot read is not theirs to judge).
 */
export function decodeUnixFS (bytes: Uint8Array): Decoded {
  const node = dagPb.decode(bytes)
  return { node, fs: UnixFS.unmarshal(node.Data ?? EMPTY) }
}

/** What a DAG node declares it holds: its own bytes and its links' sizes (unverified: for planning only). */
export function declaredSize (bytes: Uint8Array, node: dagPb.PBNode): number {
  let size = bytes.byteLength
  for (const link of node.Links) size += link.Tsize ?? 0
  return size
}

/** One link of a HAMT shard node, in its order: a sub-shard, or an entry of the directory; `bucket` is its place in the node. */
export type ShardLink = ({ shard: CID } | { name: string, cid: CID }) & { size: number, bucket: number }

/**
 * The links of the HAMT shard node `cid` in their order (the order a CAR of
 * the DAG sends them in): a link named by the bucket alone is a sub-shard,
 * one named by the bucket then a name is an entry. A fanout that is not a
 * power of two from 2 to 1024, a link name that does not start with a
 * bucket of the node (in hexadecimal), or two links in one bucket, are
 * refused. `bits` is log2 of the fanout.
 */
export function shardLinks (cid: CID, node: dagPb.PBNode, fs: UnixFS): { links: ShardLink[], bits: number } {
  const fanout = Number(fs.fanout ?? 0n)
  if (!Number.isSafeInteger(fanout) || fanout < 2 || fanout > 1024 || (fanout & (fanout - 1)) !== 0) {
    throw invalid(cid, `HAMT fanout ${String(fs.fanout)} is not a power of two from 2 to 1024`)
  }
  const pad = (fanout - 1).toString(16).length
  const taken = new Set<number>()
  const links = node.Links.map((link): ShardLink => {
    const name = link.Name ?? ''
    const prefix = name.slice(0, pad)
    const bucket = /^[0-9A-Fa-f]+$/.test(prefix) && prefix.length === pad ? parseInt(prefix, 16) : fanout
    if (bucket >= fanout) throw invalid(cid, `HAMT link name ${JSON.stringify(name)} does not start with a bucket of the node`)
    if (taken.has(bucket)) throw invalid(cid, `two HAMT links in bucket ${prefix}`)
    taken.add(bucket)
    const size = link.Tsize ?? 0
    return name.length === pad ? { shard: link.Hash, size, bucket } : { name: name.slice(pad), cid: link.Hash, size, bucket }
  })
  return { links, bits: Math.log2(fanout) }
}

/**
 * The bits of a name's place in a UnixFS HAMT: murmur3-x64-128 of the name,
 * of which go-unixfs and the JS importer use the first 64 bits, taken from
 * the first byte on, most significant bit first.
 */
const UTF8 = new TextEncoder()
/** Where a name's UTF-8 bytes are put to be hashed (a longer name gets its own array). */
const NAME_BYTES = new Uint8Array(1024)

export function hamtHash (name: string): Uint8Array {
  const { read, written } = UTF8.encodeInto(name, NAME_BYTES)
  const bytes = read === name.length ? NAME_BYTES.subarray(0, written) : UTF8.encode(name)
  const hash = new Uint8Array(8)
  murmur3x64First64(bytes, hash)
  return hash
}

/** `bits` bits of `hash` from bit `offset` on (most significant first); undefined past its 64 bits. */
export function hashBits (hash: Uint8Array, offset: number, bits: number): number | undefined {
  if (offset + bits > hash.byteLength * 8) return undefined
  let value = 0
  for (let i = offset; i < offset + bits; i++) value = (value << 1) | (((hash[i >> 3] as number) >> (7 - (i & 7))) & 1)
  return value
}
