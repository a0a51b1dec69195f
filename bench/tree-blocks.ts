/**
 * The blocks of a benchmark tree (`gateway-server.ts --tree`) cached on disk,
 * so that a large tree (a million entries) is imported once and loaded in
 * seconds by every gateway process that serves it.
 *
 * The cache of a tree is two files in the cache folder, named by the tree and
 * the seed (`tree-COUNTxBYTES-seedS.blocks` and `.json`):
 * - `.blocks`: one record per block, `[u8 cid length][cid][u32le data length][data]`;
 * - `.json`: `{ cid, sharded, blocks, bytes, importMs }`, written last (its
 *   presence means the blocks file is whole).
 *
 * Building streams the importer's blocks into the file as they come and keeps
 * only the directory nodes (dag-pb) in memory; serving reads the file into
 * one buffer and indexes it ({@link PackedBlocks}): about the blocks' bytes
 * plus a hundred-odd bytes per block.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { importer } from 'ipfs-unixfs-importer'
import { CID } from 'multiformats/cid'
import { MemoryBlocks, seededBytes } from '../src/testing/index.js'

const DAG_PB = 0x70

export interface TreeMeta {
  cid: string
  sharded: boolean
  blocks: number
  bytes: number
  importMs: number
}

export function cachePaths (dir: string, files: number, fileBytes: number, seed: number): { blocks: string, meta: string } {
  const base = join(dir, `tree-${files}x${fileBytes}-seed${seed}`)
  return { blocks: `${base}.blocks`, meta: `${base}.json` }
}

/** The files of a tree (`f0.bin`, `f1.bin`…), generated one at a time so that only the blocks are held. */
export function * treeEntries (files: number, fileBytes: number, seed: number): Generator<{ path: string, content: Uint8Array[] }> {
  for (let i = 0; i < files; i++) yield { path: `f${i}.bin`, content: [seededBytes(fileBytes, seed * 1e6 + i)] }
}

async function collect (source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const p of source) parts.push(p)
  return Buffer.concat(parts)
}

/** Appends block records to a file through an 8 MiB buffer. */
class RecordWriter {
  readonly #fd: number
  readonly #buf = Buffer.allocUnsafe(8 * 1024 * 1024)
  #used = 0
  blocks = 0
  bytes = 0

  constructor (path: string) {
    this.#fd = openSync(path, 'w')
  }

  write (cid: CID, data: Uint8Array): void {
    const need = 1 + cid.bytes.length + 4 + data.length
    if (this.#used + need > this.#buf.length) this.flush()
    if (need > this.#buf.length) throw new Error(`tree-blocks: a block of ${data.length} bytes is larger than the write buffer`)
    this.#buf[this.#used] = cid.bytes.length
    this.#buf.set(cid.bytes, this.#used + 1)
    this.#buf.writeUInt32LE(data.length, this.#used + 1 + cid.bytes.length)
    this.#buf.set(data, this.#used + 5 + cid.bytes.length)
    this.#used += need
    this.blocks++
    this.bytes += data.length
  }

  flush (): void {
    let at = 0
    while (at < this.#used) at += writeSync(this.#fd, this.#buf, at, this.#used - at)
    this.#used = 0
  }

  close (): void {
    this.flush()
    closeSync(this.#fd)
  }
}

/**
 * Imports the tree with the importer's defaults (CIDv1, raw leaves, 256 KiB
 * chunks, a directory past 256 KiB of links HAMT-sharded) straight into the
 * cache files, unless they are there already. Returns the tree's metadata.
 */
export async function buildTreeCache (dir: string, files: number, fileBytes: number, seed: number): Promise<TreeMeta> {
  const paths = cachePaths(dir, files, fileBytes, seed)
  if (existsSync(paths.meta)) return JSON.parse(readFileSync(paths.meta, 'utf8')) as TreeMeta
  mkdirSync(dir, { recursive: true })
  const started = performance.now()
  const partial = `${paths.blocks}.${process.pid}.partial`
  const writer = new RecordWriter(partial)
  const nodes = new Map<string, Uint8Array>() // dag-pb blocks by CID, for the importer's reads and the root check
  const seen = new Set<string>()
  const store = {
    get: function * (cid: CID): Generator<Uint8Array> {
      const bytes = nodes.get(cid.toString())
      if (bytes === undefined) throw new Error(`tree-blocks: the importer asked for ${cid.toString()}, which is not a directory node`)
      yield bytes
    },
    put: async (cid: CID, value: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<CID> => {
      const bytes = value instanceof Uint8Array ? value : await collect(value)
      const key = cid.toString()
      if (cid.code === DAG_PB) nodes.set(key, bytes)
      if (!seen.has(key)) { // the same CID twice is the same bytes: written once
        seen.add(key)
        writer.write(cid, bytes)
      }
      return cid
    }
  }
  let root: CID | undefined
  try {
    for await (const r of importer(treeEntries(files, fileBytes, seed), store, { wrapWithDirectory: true })) root = r.cid
  } finally {
    writer.close()
  }
  if (root === undefined) throw new Error('tree-blocks: the importer produced no root')
  const rootBytes = nodes.get(root.toString())
  if (rootBytes === undefined) throw new Error('tree-blocks: the root is not a dag-pb node')
  const data = dagPb.decode(rootBytes).Data
  const meta: TreeMeta = {
    cid: root.toString(),
    sharded: data !== undefined && UnixFS.unmarshal(data).type === 'hamt-sharded-directory',
    blocks: writer.blocks,
    bytes: writer.bytes,
    importMs: Math.round(performance.now() - started)
  }
  renameSync(partial, paths.blocks)
  writeFileSync(`${paths.meta}.${process.pid}.partial`, JSON.stringify(meta) + '\n')
  renameSync(`${paths.meta}.${process.pid}.partial`, paths.meta)
  return meta
}

/** The whole file in one buffer, read in 64 MiB pieces (readFileSync stops at 2 GiB). */
function readWhole (path: string): Buffer {
  const size = statSync(path).size
  const buf = Buffer.allocUnsafe(size)
  const fd = openSync(path, 'r')
  try {
    let at = 0
    while (at < size) {
      const n = readSync(fd, buf, at, Math.min(64 * 1024 * 1024, size - at), at)
      if (n === 0) throw new Error(`tree-blocks: ${path} ended at ${at} of ${size} bytes`)
      at += n
    }
  } finally {
    closeSync(fd)
  }
  return buf
}

/** The multihash of a CID's bytes (v0: all of it; v1: after the version and codec varints), as a Map key. */
function multihashKey (buf: Buffer, at: number, length: number): string {
  if (length === 34 && buf[at] === 0x12 && buf[at + 1] === 0x20) return buf.toString('latin1', at, at + length)
  let p = at
  for (let varints = 0; varints < 2; varints++) {
    while (((buf[p] as number) & 0x80) !== 0) p++
    p++
  }
  return buf.toString('latin1', p, at + length)
}

/**
 * A read-only {@link MemoryBlocks} over a cache file held as one buffer: a
 * Map from multihash to record number and the records' offsets, no object
 * per block. Keyed by multihash like MemoryBlocks.
 */
export class PackedBlocks extends MemoryBlocks {
  readonly #buf: Buffer
  readonly #index = new Map<string, number>()
  readonly #cidAt: Float64Array
  readonly #dataAt: Float64Array
  readonly #count: number

  constructor (path: string, expectedBlocks: number) {
    super()
    this.#buf = readWhole(path)
    this.#cidAt = new Float64Array(expectedBlocks)
    this.#dataAt = new Float64Array(expectedBlocks)
    let at = 0
    let n = 0
    while (at < this.#buf.length) {
      if (n >= expectedBlocks) throw new Error(`tree-blocks: ${path} holds more than the ${expectedBlocks} blocks its metadata gives`)
      const cidLength = this.#buf[at] as number
      this.#cidAt[n] = at
      this.#dataAt[n] = at + 1 + cidLength + 4
      this.#index.set(multihashKey(this.#buf, at + 1, cidLength), n)
      at += 1 + cidLength + 4 + this.#buf.readUInt32LE(at + 1 + cidLength)
      n++
    }
    this.#count = n
  }

  #record (i: number): { cid: Uint8Array, data: Uint8Array } {
    const cidAt = this.#cidAt[i] as number
    const dataAt = this.#dataAt[i] as number
    const cid = this.#buf.subarray(cidAt + 1, cidAt + 1 + (this.#buf[cidAt] as number))
    return { cid, data: this.#buf.subarray(dataAt, dataAt + this.#buf.readUInt32LE(dataAt - 4)) }
  }

  override put (cid: CID): CID {
    throw new Error(`tree-blocks: the cached tree is read-only (put ${cid.toString()})`)
  }

  override get (cid: CID): Uint8Array {
    const i = this.#index.get(Buffer.from(cid.multihash.bytes).toString('latin1'))
    if (i === undefined) return super.get(cid) // identity CIDs, or the not-found error
    return this.#record(i).data
  }

  override has (cid: CID): boolean {
    return this.#index.has(Buffer.from(cid.multihash.bytes).toString('latin1')) || super.has(cid)
  }

  override delete (cid: CID): boolean {
    return this.#index.delete(Buffer.from(cid.multihash.bytes).toString('latin1'))
  }

  override get size (): number {
    return this.#index.size
  }

  override * entries (): Generator<[CID, Uint8Array]> {
    for (const i of this.#index.values()) {
      const { cid, data } = this.#record(i)
      yield [CID.decode(cid), data]
    }
  }

  /** Records in the file. */
  get records (): number {
    return this.#count
  }
}
