import { lstat, open, type FileHandle } from 'node:fs/promises'
import { constants } from 'node:fs'
import type { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import * as rawCodec from 'multiformats/codecs/raw'
import { CidgetError, fsError, systemCode } from '../../core/errors.js'
import { MAX_BLOCK_BYTES, verifyBlock } from '../../gateways/block.js'
import { readAt } from '../../sink/partial.js'
import { safeJoin } from '../../sink/names.js'
import { Bitmap } from './bitmap.js'
import { decodeUnixFS, type Decoded } from './dag.js'

/** Bytes read first from a leaf's range: all zero, it is taken for a hole (never written) and not read further. */
const PROBE_BYTES = 4096
/** Leaves in a row not found on disk after which the search stops: what a killed run wrote lies close to what it recorded. */
const MAX_MISSES = 256

export interface Recovered {
  /** Block numbers (in walk order) whose bytes on disk hash to their CIDs: a bitmap, as the progress is, whatever the file's size. */
  blocks: Bitmap
  /** How many. */
  count: number
  bytes: number
}

/** One file of the output, open for reading (never through a symlink). */
interface OpenFile {
  path: string
  fh: FileHandle | undefined
  size: number
  /** Leaves found in it: it is fsynced before it is closed. */
  found: number
}

/**
 * After a crash, the leaves an earlier run wrote after its last record are
 * usually still on disk (a killed process is not a power cut). This finds
 * them without a request: it walks the DAG through the inner nodes and
 * directories that were kept, numbering data-bearing blocks exactly as the
 * download's walk does, and hashes the bytes at each raw leaf's place that is
 * not in `done` against the leaf's CID. Every file a leaf was found in is
 * fsynced before this returns, so the caller may record them at once.
 *
 * It stops where the numbers that follow cannot be told without a request (a
 * node or directory that was not kept, a sharded directory), after MAX_MISSES
 * leaves in a row that are not on disk, and takes a range whose first bytes
 * are all zero for a hole. A leaf it does not find is fetched as before.
 */
export class LeafFinder {
  readonly #done: Bitmap
  readonly #cached: (cid: CID) => Promise<Uint8Array | undefined>
  readonly #signal: AbortSignal
  readonly #found: Recovered = { blocks: new Bitmap(), count: 0, bytes: 0 }
  #index = 0
  #misses = 0
  #file: OpenFile | undefined

  constructor (done: Bitmap, cached: (cid: CID) => Promise<Uint8Array | undefined>, signal: AbortSignal) {
    this.#done = done
    this.#cached = cached
    this.#signal = signal
  }

  /** The leaves of the file at `path` whose root is `root` (`bytes`). */
  async file (path: string, root: CID, bytes: Uint8Array): Promise<Recovered> {
    try {
      if (root.code === dagPb.code) await this.#fileNode(path, bytes, 0)
      return this.#found
    } finally {
      await this.#close()
    }
  }

  /** The leaves of the tree at `path` whose root directory is `root` (`bytes`). */
  async tree (path: string, root: CID, bytes: Uint8Array): Promise<Recovered> {
    try {
      await this.#entry(path, root, bytes)
      return this.#found
    } finally {
      await this.#close()
    }
  }

  /** An entry of a directory (or the root); false when the walk cannot go on. */
  async #entry (path: string, cid: CID, given?: Uint8Array): Promise<boolean> {
    if (this.#signal.aborted) throw this.#signal.reason
    if (cid.code === rawCodec.code) return await this.#leaf(path, cid, 0, undefined)
    if (cid.code !== dagPb.code) return false
    const bytes = given ?? await this.#cached(cid)
    if (bytes === undefined) {
      if (!this.#done.has(this.#index)) return false // not reached, or a one-block file not written: the walk fetches it
      this.#index++ // a one-block file or symlink finished earlier, as the walk counts it
      return true
    }
    const decoded = decode(bytes)
    if (decoded === undefined) return false
    const { node, fs } = decoded
    if (fs.type === 'directory') return await this.#directory(path, node)
    if (fs.type === 'file' || fs.type === 'raw') return await this.#fileNode(path, bytes, 0)
    if (fs.type === 'symlink') {
      this.#index++
      return true
    }
    return false // a sharded directory is listed by the exporter: its order is not followed here
  }

  async #directory (path: string, node: dagPb.PBNode): Promise<boolean> {
    try {
      if (!(await lstat(path)).isDirectory()) return false
    } catch {
      return false
    }
    for (const link of node.Links) {
      let child: string
      try {
        child = safeJoin(path, [link.Name ?? ''], '')
      } catch {
        return false // the walk refuses it
      }
      if (!await this.#entry(child, link.Hash)) return false
    }
    return true
  }

  /** A dag-pb node of a file at `at` of `path`. */
  async #fileNode (path: string, bytes: Uint8Array, at: number): Promise<boolean> {
    if (this.#signal.aborted) throw this.#signal.reason
    const decoded = decode(bytes)
    if (decoded === undefined) return false
    const { node, fs } = decoded
    if (fs.type !== 'file' && fs.type !== 'raw') return false
    const data = fs.data ?? new Uint8Array(0)
    if (node.Links.length === 0) {
      this.#index++ // a dag-pb leaf: its bytes cannot be told from its CID without the node
      return true
    }
    if (fs.blockSizes.length !== node.Links.length) return false
    if (data.byteLength > 0) this.#index++ // data in an inner node: written with the node, fetched anyway
    let offset = at + data.byteLength
    for (let j = 0; j < node.Links.length; j++) {
      const child = (node.Links[j] as dagPb.PBLink).Hash
      const length = Number(fs.blockSizes[j])
      if (child.code === rawCodec.code) {
        if (!await this.#leaf(path, child, offset, length)) return false
      } else if (child.code === dagPb.code) {
        const kept = await this.#cached(child)
        if (kept !== undefined) {
          if (!await this.#fileNode(path, kept, offset)) return false
        } else if (this.#done.has(this.#index)) {
          this.#index++ // a leaf written in an earlier run, as the walk counts it
        } else {
          return false
        }
      } else {
        return false
      }
      offset += length
    }
    return true
  }

  /** Raw leaf `cid` at `at` of `path`, `length` bytes (undefined: the whole file, a one-block file). */
  async #leaf (path: string, cid: CID, at: number, length: number | undefined): Promise<boolean> {
    const i = this.#index++
    if (this.#done.has(i)) return true
    if (this.#misses >= MAX_MISSES) return false
    if (await this.#check(path, cid, at, length)) this.#misses = 0
    else this.#misses++
    return true
  }

  /** Whether the bytes at `at` of `path` are leaf `cid` (then counted as found). */
  async #check (path: string, cid: CID, at: number, declared: number | undefined): Promise<boolean> {
    const file = await this.#open(path)
    if (file.fh === undefined) return false
    const length = declared ?? file.size - at
    if (length <= 0 || length > MAX_BLOCK_BYTES || at + length > file.size) return false
    const probe = await readAt(file.fh, at, new Uint8Array(Math.min(PROBE_BYTES, length)))
    if (probe.every(b => b === 0)) return false
    const bytes = await readAt(file.fh, at, new Uint8Array(length))
    try {
      await verifyBlock(cid, bytes)
    } catch (err) {
      if (err instanceof CidgetError && err.code === 'CIDGET_ERR_BLOCK_INVALID') return false // torn, or never written
      throw err
    }
    this.#found.blocks.add(this.#index - 1)
    this.#found.count++
    this.#found.bytes += length
    file.found++
    return true
  }

  /** The file at `path`, open for reading; the one open before is closed (fsynced when leaves were found in it). */
  async #open (path: string): Promise<OpenFile> {
    if (this.#file?.path === path) return this.#file
    await this.#close()
    const file: OpenFile = { path, fh: undefined, size: 0, found: 0 }
    try {
      const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW)
      file.fh = fh
      const st = await fh.stat()
      if (st.isFile()) file.size = st.size
    } catch (err) {
      const code = systemCode(err)
      if (code !== 'ENOENT' && code !== 'ELOOP' && code !== 'ENOTDIR') throw fsError(err, `open ${path}`)
    }
    this.#file = file
    return file
  }

  async #close (): Promise<void> {
    const file = this.#file
    this.#file = undefined
    if (file?.fh === undefined) return
    try {
      if (file.found > 0) await file.fh.sync()
    } catch (err) {
      throw fsError(err, `fsync ${file.path}`)
    } finally {
      await file.fh.close().catch(() => {})
    }
  }
}

function decode (bytes: Uint8Array): Decoded | undefined {
  try {
    return decodeUnixFS(bytes)
  } catch {
    return undefined // the walk itself says what is wrong with it
  }
}
