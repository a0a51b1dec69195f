import { copyFile, link, lstat, open, type FileHandle } from 'node:fs/promises'
import { constants } from 'node:fs'
import type { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import * as rawCodec from 'multiformats/codecs/raw'
import { UnixFS } from 'ipfs-unixfs'
import { CidgetError, fsError, systemCode } from '../../core/errors.js'
import { MAX_BLOCK_BYTES, verifyBlock } from '../../gateways/block.js'
import { checkName, safeJoin } from '../../sink/names.js'
import { readAt } from '../../sink/partial.js'
import type { OutputTree } from '../../sink/tree.js'
import { Bitmap } from './bitmap.js'
import { DagBudget, decode, shardLinks, type DagLimits } from './dag.js'
import type { DagReader } from './reader.js'

/** What an update found of the new version in the old output, placed in the staging directory or partial file. */
export interface Seeded {
  /** Block numbers (in walk order) placed: recorded as done, so the walk fetches none of them. */
  blocks: Bitmap
  /** Their bytes. */
  bytes: number
  /** Files found whole (every block checked) and kept: hard-linked into the new version, or copied. */
  keptFiles: number
  keptBytes: number
  /** Bytes of changed files taken from the old copy, block by block. */
  reusedBytes: number
}

/** One data-bearing block of a file, in walk order. */
interface Piece {
  index: number
  at: number
  /** A raw leaf: its CID and size (undefined: the rest of the file, a one-block file). */
  cid?: CID
  length?: number
  /** Data a dag-pb node carries itself (fetched with the node: written whatever the old copy holds). */
  data?: Uint8Array
  /** A dag-pb leaf (`cid`, `length` bytes of data) not fetched: the old copy's bytes, wrapped as a leaf node, hash to its CID. */
  node?: true
}

/** The UnixFS types importers give a dag-pb leaf: `file` (JavaScript's default), `raw` (Go's). */
const LEAF_TYPES = ['file', 'raw'] as const

/** Blocks of one file looked for at most (a 64 GiB file of 256 KiB leaves); a larger one is left to the walk. */
const MAX_PIECES = 1 << 18
/** Blocks of the DAG asked for ahead of the seeding (within the reader's own bound). */
const READ_AHEAD = 32

/** Stops the seeding where the walk will refuse the DAG itself (it says why). */
class Unwalkable extends Error {}

/**
 * An update's first step: the new version's DAG is walked through its inner
 * nodes (fetched and kept, so the download's walk does not fetch them again),
 * numbering the data-bearing blocks exactly as the walk does (see
 * recover.ts, which numbers them the same way), and each raw leaf is looked
 * for at the same place in the old output: the same path, the same offset,
 * hashed against the leaf's CID. A file whose every block is found there, at
 * its size, is hard-linked into the new version (copied where links are not
 * possible); the blocks found of a changed file are written into its new copy.
 * Either way they are recorded as done, and the walk fetches only the rest.
 * The old output is only read.
 */
export class UpdateSeeder {
  readonly #reader: DagReader
  readonly #tree: OutputTree
  readonly #signal: AbortSignal
  readonly #found: Seeded = { blocks: new Bitmap(), bytes: 0, keptFiles: 0, keptBytes: 0, reusedBytes: 0 }
  #index = 0
  /**
   * The one buffer old bytes are read into: each is hashed, and written (awaited) before the
   * next read. A buffer of its own per block, outside the heap, set off a full collection every
   * few MiB (0.9 s of 4 on a 1 GiB tree).
   */
  #scratch: Buffer | undefined

  /** The walk's limits: a DAG over them is left to the walk, which refuses it. */
  readonly #budget: DagBudget

  constructor (reader: DagReader, tree: OutputTree, limits: DagLimits, signal: AbortSignal) {
    this.#reader = reader
    this.#tree = tree
    this.#budget = new DagBudget(limits)
    this.#signal = signal
  }

  /** Places what `old` (the old output) holds of the entity `root` (`bytes`), a file or a directory. */
  async run (old: string, root: CID, bytes: Uint8Array): Promise<Seeded> {
    try {
      await this.#entry(this.#tree.root, old, root, 0, bytes)
    } catch (err) {
      if (!(err instanceof Unwalkable) && !(err instanceof CidgetError && err.code === 'CIDGET_ERR_DAG_LIMIT')) throw err
    }
    return this.#found
  }

  async #entry (path: string, old: string | undefined, cid: CID, depth: number, given?: Uint8Array): Promise<void> {
    if (this.#signal.aborted) throw this.#signal.reason
    this.#budget.depth(depth, cid)
    this.#budget.entry()
    if (cid.code === rawCodec.code) {
      await this.#file(path, old, [{ index: this.#index++, at: 0, cid }], undefined)
      return
    }
    if (cid.code !== dagPb.code) throw new Unwalkable()
    const bytes = given ?? await this.#reader.get(cid)
    const { node, fs } = decode(cid, bytes)
    switch (fs.type) {
      case 'directory':
      case 'hamt-sharded-directory': {
        await this.#reader.keep(cid, bytes)
        await this.#tree.mkdir(path)
        const dir = old !== undefined && await isDirectory(old) ? old : undefined
        if (fs.type === 'directory') {
          const cids = node.Links.map((l) => l.Hash)
          for (const [j, l] of node.Links.entries()) {
            this.#readAhead(cids, j)
            await this.#child(path, dir, cid, l.Name ?? '', l.Hash, depth)
          }
        } else {
          await this.#shard(path, dir, cid, node, fs, depth)
        }
        return
      }
      case 'file':
      case 'raw': {
        const pieces: Piece[] = []
        this.#budget.file(Number(fs.fileSize()))
        const fh = old === undefined ? undefined : await openFile(old)
        try {
          await this.#pieces(cid, bytes, 0, pieces, depth, fh)
          await this.#file(path, old, pieces, Number(fs.fileSize()), fh)
        } finally {
          await fh?.close().catch(() => {})
        }
        return
      }
      case 'symlink':
        this.#index++ // written by the walk
        return
      default:
        throw new Unwalkable()
    }
  }

  async #child (path: string, old: string | undefined, dir: CID, name: string, cid: CID, depth: number): Promise<void> {
    let child: string
    try {
      checkName(name, dir.toString())
      child = safeJoin(path, [name], dir.toString())
    } catch {
      throw new Unwalkable() // the walk refuses it
    }
    await this.#entry(child, old === undefined ? undefined : safeJoin(old, [name], dir.toString()), cid, depth + 1)
  }

  /** A HAMT shard node: its links in order, depth-first, as the walk takes them. */
  async #shard (path: string, old: string | undefined, cid: CID, node: dagPb.PBNode, fs: Parameters<typeof shardLinks>[2], depth: number): Promise<void> {
    const { links } = shardLinks(cid, node, fs)
    const cids = links.map((l) => 'shard' in l ? l.shard : l.cid)
    for (const [j, link] of links.entries()) {
      this.#readAhead(cids, j)
      if ('shard' in link) {
        const bytes = await this.#reader.get(link.shard)
        const sub = decode(link.shard, bytes)
        if (sub.fs.type !== 'hamt-sharded-directory') throw new Unwalkable()
        await this.#reader.keep(link.shard, bytes)
        await this.#shard(path, old, link.shard, sub.node, sub.fs, depth)
      } else {
        await this.#child(path, old, cid, link.name, link.cid, depth)
      }
    }
  }

  /**
   * Starts fetching the dag-pb blocks among the next READ_AHEAD of `cids` from
   * `j` on: the nodes of the files the seeding will reach, many in flight
   * rather than one round trip each (the reader bounds them).
   */
  #readAhead (cids: CID[], j: number): void {
    for (let k = j; k < Math.min(cids.length, j + READ_AHEAD); k++) {
      const c = cids[k] as CID
      if (c.code === dagPb.code) this.#reader.readAhead(c)
    }
  }

  /** The data-bearing blocks of the file node `cid` at `at`, in walk order; inner nodes kept. */
  async #pieces (cid: CID, bytes: Uint8Array, at: number, out: Piece[], depth: number, fh: FileHandle | undefined): Promise<void> {
    if (this.#signal.aborted) throw this.#signal.reason
    this.#budget.depth(depth, cid)
    if (out.length > MAX_PIECES) throw new Unwalkable()
    const { node, fs } = decode(cid, bytes)
    if (fs.type !== 'file' && fs.type !== 'raw') throw new Unwalkable()
    const data = fs.data ?? new Uint8Array(0)
    if (node.Links.length === 0) {
      out.push({ index: this.#index++, at, data })
      return
    }
    if (fs.blockSizes.length !== node.Links.length) throw new Unwalkable()
    await this.#reader.keep(cid, bytes)
    if (data.byteLength > 0) out.push({ index: this.#index++, at, data })
    let offset = at + data.byteLength
    const cids = node.Links.map((l) => l.Hash)
    for (let j = 0; j < node.Links.length; j++) {
      const child = (node.Links[j] as dagPb.PBLink).Hash
      const length = Number(fs.blockSizes[j])
      // read ahead where no old copy may hold them (a leaf it holds is never asked for), or when they are inner nodes
      if (child.code === dagPb.code && (fh === undefined || length > MAX_BLOCK_BYTES)) this.#readAhead(cids, j)
      if (child.code === rawCodec.code) out.push({ index: this.#index++, at: offset, cid: child, length })
      else if (child.code !== dagPb.code) throw new Unwalkable()
      // a dag-pb leaf whose data the old copy holds: known without a request (content made without raw leaves)
      else if (fh !== undefined && await this.#leafAt(fh, child, offset, length) !== undefined) out.push({ index: this.#index++, at: offset, cid: child, length, node: true })
      else await this.#pieces(child, await this.#reader.get(child), offset, out, depth + 1, fh)
      offset += length
    }
  }

  /**
   * The pieces of the file at `path` (`size` bytes; undefined for a one-block
   * file): linked whole from `old` when every piece is there and the size is
   * the same, else the pieces found written one by one.
   */
  async #file (path: string, old: string | undefined, pieces: Piece[], size: number | undefined, opened?: FileHandle): Promise<void> {
    const fh = opened ?? (old === undefined ? undefined : await openFile(old))
    if (fh === undefined) {
      // nothing to take from: a dag-pb node's own data is here already, written as the walk would
      for (const p of pieces) if (p.data !== undefined && p.data.byteLength > 0) await this.#place(path, p, p.data, 0)
      return
    }
    try {
      const oldSize = (await fh.stat()).size
      const whole = size ?? oldSize
      if (oldSize === whole && pieces.length > 0) {
        let all = true
        for (const p of pieces) {
          if ((await this.#match(fh, p, oldSize)) === undefined) {
            all = false
            break
          }
        }
        // a tree's file is linked; a single file's partial file is there already (opened by the tree): written below
        if (all && old !== undefined && path !== this.#tree.root) {
          await this.#link(old, path)
          for (const p of pieces) this.#found.blocks.add(p.index)
          this.#found.bytes += whole
          this.#found.keptFiles++
          this.#found.keptBytes += whole
          return
        }
      }
      for (const p of pieces) {
        const bytes = await this.#match(fh, p, oldSize)
        if (bytes !== undefined) await this.#place(path, p, bytes, bytes.byteLength)
        else if (p.data !== undefined && p.data.byteLength > 0) await this.#place(path, p, p.data, 0)
      }
    } finally {
      if (opened === undefined) await fh.close().catch(() => {})
    }
  }

  /**
   * The old copy's `length` bytes at `at` when, wrapped as a dag-pb leaf node
   * (either UnixFS type importers use), they hash to `cid`; valid until the next read.
   */
  async #leafAt (fh: FileHandle, cid: CID, at: number, length: number): Promise<Uint8Array | undefined> {
    if (length <= 0 || length > MAX_BLOCK_BYTES - 64) return undefined
    this.#scratch ??= Buffer.allocUnsafeSlow(MAX_BLOCK_BYTES)
    const bytes = await readAt(fh, at, this.#scratch.subarray(0, length))
    if (bytes.byteLength !== length) return undefined
    for (const type of LEAF_TYPES) {
      const node = dagPb.encode({ Data: new UnixFS({ type, data: bytes }).marshal(), Links: [] })
      try {
        await verifyBlock(cid, node)
        return bytes
      } catch (err) {
        if (!(err instanceof CidgetError && err.code === 'CIDGET_ERR_BLOCK_INVALID')) throw err
      }
    }
    return undefined
  }

  /** The old copy's bytes of piece `p` when they are the piece (a leaf: hashed against its CID); valid until the next call. */
  async #match (fh: FileHandle, p: Piece, oldSize: number): Promise<Uint8Array | undefined> {
    if (this.#signal.aborted) throw this.#signal.reason
    if (p.node === true) return p.at + (p.length as number) <= oldSize ? await this.#leafAt(fh, p.cid as CID, p.at, p.length as number) : undefined
    const length = p.data?.byteLength ?? p.length ?? oldSize - p.at
    if (length <= 0 || length > MAX_BLOCK_BYTES || p.at + length > oldSize) return undefined
    this.#scratch ??= Buffer.allocUnsafeSlow(MAX_BLOCK_BYTES)
    const bytes = await readAt(fh, p.at, this.#scratch.subarray(0, length))
    if (bytes.byteLength !== length) return undefined
    if (p.data !== undefined) return Buffer.compare(bytes, p.data) === 0 ? bytes : undefined
    try {
      await verifyBlock(p.cid as CID, bytes)
    } catch (err) {
      if (err instanceof CidgetError && err.code === 'CIDGET_ERR_BLOCK_INVALID') return undefined
      throw err
    }
    return bytes
  }

  /** Writes a piece into the new copy and counts it done (`reused` of its bytes taken from the old copy). */
  async #place (path: string, p: Piece, bytes: Uint8Array, reused: number): Promise<void> {
    await this.#tree.write(path, p.at, bytes)
    this.#found.blocks.add(p.index)
    this.#found.bytes += bytes.byteLength
    this.#found.reusedBytes += reused
  }

  /** The old file, whole and checked, as the new version's file: a hard link, or a copy where links are refused. */
  async #link (old: string, path: string): Promise<void> {
    try {
      await link(old, path)
    } catch (err) {
      const code = systemCode(err)
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw fsError(err, `link ${old} to ${path}`)
      await copyFile(old, path, constants.COPYFILE_EXCL).catch((e: unknown) => { throw fsError(e, `copy ${old} to ${path}`) })
    }
  }
}

async function isDirectory (path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory()
  } catch {
    return false
  }
}

/** The old file at `path` for reading, when it is a regular file (never through a symlink). */
async function openFile (path: string): Promise<FileHandle | undefined> {
  let fh: FileHandle
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    const code = systemCode(err)
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR' || code === 'EACCES') return undefined
    throw fsError(err, `open ${path}`)
  }
  if ((await fh.stat()).isFile()) return fh
  await fh.close().catch(() => {})
  return undefined
}
