import { rm, symlink, lstat, readlink, stat } from 'node:fs/promises'
import { makeDirs } from './dirs.js'
import { close, constants, fstat, fsync, ftruncate, open } from 'node:fs'
import { promisify } from 'node:util'
import { dirname, relative } from 'node:path'
import { renameIntoPlace } from './partial.js'
import { openOwnedFd, ownedDirectory } from './owned.js'
import { TreeWriter, UnsafeFile, unsafeFile } from './tree-writer.js'
import { PoolFiles, writeAt } from './pool-files.js'
import { CidgetError, fsError, systemCode } from '../core/errors.js'
import { confineLinks, linksBelow } from './links.js'
import { SyncfsUnavailable, syncFileSystem, syncfsAvailable } from './syncfs.js'
import { checkHeapBound } from '../core/memory.js'
import { DEFAULTS } from '../core/defaults.js'
import { blockLength, type BlockBytes } from '../gateways/block.js'

/** fsyncs run at once (where syncfs cannot be had); parallel fsyncs share journal commits on most file systems. */
const SYNC_PARALLEL = 64
/** From this many files to make durable, one syncfs of the file system rather than an fsync each. */
const SYNCFS_FROM = 16
/**
 * A staging directory's writes larger than this go through the thread pool from the socket's
 * chunks (PoolFiles); smaller ones are copied for the writer thread (TreeWriter).
 */
const POOL_WRITE_FROM = 64 * 1024

const openP = promisify(open)
const fstatP = promisify(fstat)
const fsyncP = promisify(fsync)
const closeP = promisify(close)
const ftruncateP = promisify(ftruncate)
/**
 * Where a verified download writes: one partial file (`<output>.cidget-partial`)
 * or a staging directory of that name, renamed onto the output only when every
 * block is verified and durable. Nothing is written or created through a
 * symlink: the partial file, the staging directory and each directory in it
 * are created one at a time and must be a plain file or a real directory of
 * this process's user (CIDGET_ERR_UNSAFE_PARTIAL), files are opened without
 * following links, and only in directories checked so.
 *
 * A partial file is one descriptor, written through the thread pool. The
 * files of a staging directory are created, written and closed by a worker
 * thread ({@link TreeWriter}), in batches, beside the thread that receives and
 * verifies blocks: for a tree of small files these calls are most of the
 * work (a create costs 20 µs, or 100 µs and more where many files were
 * removed lately), and one thread making them in order does not contend for
 * the directory as several would. Writes larger than 64 KiB (the blocks of
 * large files) go through the thread pool instead, straight from the
 * socket's chunks (PoolFiles): a copy for the writer would cost more than it
 * saves.
 *
 * Durability is batched: `syncAll` makes every file written since its last
 * call durable with one syncfs of the file system ({@link syncFileSystem})
 * once 16 or more are to be; where syncfs cannot be had, or for fewer files,
 * each is fsynced.
 */
export class OutputTree {
  readonly output: string
  /** The partial file, or the staging directory. */
  readonly root: string
  readonly isDirectory: boolean
  /** The partial file's descriptor (file mode). */
  #fd: number | undefined
  /** The staging directory's writer thread (directory mode), and its writes larger than POOL_WRITE_FROM. */
  #writer: TreeWriter | undefined
  #poolFiles: PoolFiles | undefined
  /** Writes handed to the writer thread. */
  #smallWrites = 0
  /** Files of the staging directory written since the last syncAll. */
  #dirty = new Set<string>()
  /** The syncAll in progress, if any: calls run one after the other. */
  #syncing: Promise<void> = Promise.resolve()
  /** Directories made or checked (real directories, not links): the only places files and links are created in. */
  readonly #dirs = new Set<string>()
  /** Symlinks written by this run. */
  readonly #links = new Set<string>()
  /** Whether the staging directory was made by this run (else it may hold links of an earlier run). */
  #fresh = false
  /** The device of the staging directory, when its files are made durable by one syncfs (see above). */
  #dev: number | undefined
  /** Writes and syncs in progress; close() waits for them (a descriptor is never closed under a call). */
  #busy = 0
  readonly #drained: Array<() => void> = []
  #closed = false

  private constructor (output: string, isDirectory: boolean) {
    this.output = output
    this.root = output + DEFAULTS.PARTIAL_SUFFIX
    this.isDirectory = isDirectory
  }

  /**
   * Opens the partial file or staging directory of `output`. A partial file is
   * cut to `size` (the file's declared size) when it is longer, so no byte past
   * the content can reach the output; what lies within it is only kept where it
   * hashes to its leaf's CID. A staging directory is emptied when `stale` (no
   * progress of it is recorded: a run stopped before its first checkpoint, or
   * planted), so that none of its files can end up in the output.
   */
  static async open (output: string, isDirectory: boolean, opts: { stale?: boolean, size?: number } = {}): Promise<OutputTree> {
    const tree = new OutputTree(output, isDirectory)
    try {
      // the output's own directory is the user's choice, links on the way included
      await makeDirs(dirname(output))
    } catch (err) {
      throw fsError(err, `create ${dirname(output)}`)
    }
    if (isDirectory) {
      tree.#fresh = await ownedDirectory(tree.root)
      if (!tree.#fresh && opts.stale === true) {
        // a real directory of this user (checked above); rm does not follow the links in it
        await rm(tree.root, { recursive: true }).catch((err: unknown) => { throw fsError(err, `remove the stale ${tree.root}`) })
        tree.#fresh = await ownedDirectory(tree.root)
      }
      tree.#dirs.add(tree.root)
      if (syncfsAvailable()) tree.#dev = await stat(tree.root).then(s => s.dev, () => undefined)
      // started now and waited for, before the download's busy stretch (see reapplyHeapBound in core/memory.ts)
      tree.#writer = new TreeWriter(tree.#fresh)
      tree.#poolFiles = new PoolFiles(tree.#fresh)
      await tree.#writer.ready
    } else {
      const fd = await openOwnedFd(tree.root, constants.O_WRONLY)
      const size = opts.size
      if (size !== undefined) {
        await fstatP(fd).then(async s => { if (s.size > size) await ftruncateP(fd, size) }).catch(async (err: unknown) => {
          await closeP(fd).catch(() => {})
          throw fsError(err, `truncate ${tree.root}`)
        })
      }
      tree.#fd = fd
    }
    return tree
  }

  /** Refuses a path whose directory was not made or checked by `mkdir`: a component of it could be a link. */
  #below (path: string): void {
    if (!this.#dirs.has(dirname(path))) {
      throw new CidgetError('CIDGET_ERR_UNSAFE_PARTIAL', `Refusing to write ${path}: its directory was not checked to be a real directory`)
    }
  }

  /**
   * Creates the directory `path` inside the staging directory, whose parent was
   * made (or checked) by an earlier call; one that exists must be a real
   * directory, not a link (CIDGET_ERR_UNSAFE_PARTIAL).
   */
  async mkdir (path: string): Promise<void> {
    if (this.#dirs.has(path)) return
    this.#below(path)
    await ownedDirectory(path)
    this.#dirs.add(path)
  }

  /** Writes `data` at `offset` of the file at `path` (created if missing). */
  async write (path: string, offset: number, data: BlockBytes): Promise<void> {
    await (await this.enqueue(path, offset, data)).done
  }

  /**
   * Takes the write of `data` at `offset` of `path` (created if missing):
   * resolves once the write is under way and its bytes may be reused (for a
   * staging directory's file, once they are copied for the writer thread;
   * for the partial file, once written), with `done`, which settles once
   * they are in the file (not yet durable: see syncAll).
   */
  async enqueue (path: string, offset: number, data: BlockBytes): Promise<{ done: Promise<void> }> {
    const failed = (err: unknown): Error => err instanceof UnsafeFile ? unsafeFile(path, err) : fsError(err, `write ${path}`)
    let done: Promise<void>
    try {
      this.#enter()
      try {
        done = (await this.#write(path, offset, data)).done
      } catch (err) {
        this.#leave()
        throw err
      }
    } catch (err) {
      throw failed(err)
    }
    return { done: done.then(() => { this.#leave() }, (err: unknown) => { this.#leave(); throw failed(err) }) }
  }

  async #write (path: string, offset: number, data: BlockBytes): Promise<{ done: Promise<void> }> {
    if (this.isDirectory) {
      this.#below(path)
      if (this.#poolFiles !== undefined && blockLength(data) > POOL_WRITE_FROM) {
        await this.#poolFiles.write(path, offset, data)
        this.#dirty.add(path)
        return { done: WRITTEN }
      }
      // small writes come fast, from long busy stretches: the heap's bound is checked every 64th
      if ((++this.#smallWrites & 63) === 0) checkHeapBound()
      const { done } = await (this.#writer as TreeWriter).enqueue(path, offset, data)
      // counted for the next syncAll once its bytes are in the file (before the caller hears of it,
      // so before the block can be recorded): a file whose open failed is never fsynced
      return { done: done.then(() => { this.#dirty.add(path) }) }
    }
    if (path !== this.root || this.#fd === undefined) throw new Error(`${path} is not the partial file`)
    await writeAt(this.#fd, offset, data)
    return { done: WRITTEN }
  }

  /** Writes a symlink (one an earlier run wrote with the same target is kept). */
  async symlink (path: string, target: string): Promise<void> {
    this.#below(path)
    try {
      await symlink(target, path)
    } catch (err) {
      if (systemCode(err) !== 'EEXIST') throw fsError(err, `create symlink ${path}`)
      const there = await lstat(path).then(async s => s.isSymbolicLink() ? await readlink(path) : undefined, () => undefined)
      if (there !== target) throw new CidgetError('CIDGET_ERR_UNSAFE_PARTIAL', `Refusing to write symlink ${path}: something else is there`, { cause: err })
    }
    this.#links.add(path)
  }

  /**
   * Checks every symlink in the staging directory on disk, through the others
   * (those of this run, or all there when the directory holds an earlier
   * run's): one that leads out of it is refused with CIDGET_ERR_UNSAFE_SYMLINK,
   * or with `skip` removed. Returns the removed links, relative to the root.
   */
  async confineLinks (skip: boolean): Promise<string[]> {
    if (!this.isDirectory) return []
    const links = this.#fresh ? [...this.#links] : await linksBelow(this.root)
    if (links.length === 0) return []
    return (await confineLinks(this.root, links, skip)).map(p => relative(this.root, p))
  }

  /**
   * Makes every file written since the last call durable: the bytes of the
   * writes given before the call, at least (one syncfs for 16 files or more,
   * else an fsync each).
   */
  async syncAll (): Promise<void> {
    const run = this.#syncing.catch(() => {}).then(async () => { await this.#syncAll() })
    this.#syncing = run
    await run
  }

  async #syncAll (): Promise<void> {
    this.#enter()
    const files = this.#dirty
    this.#dirty = new Set()
    try {
      if (this.isDirectory) {
        if (files.size > 0 && !await this.#syncFileSystem(files.size)) {
          const paths = [...files]
          for (let i = 0; i < paths.length; i += SYNC_PARALLEL) {
            await Promise.all(paths.slice(i, i + SYNC_PARALLEL).map(async p => { await fsyncPath(p) }))
          }
        }
      } else if (this.#fd !== undefined) {
        await fsyncP(this.#fd)
      }
    } catch (err) {
      for (const p of files) this.#dirty.add(p)
      throw fsError(err, 'fsync the output')
    } finally {
      this.#leave()
    }
  }

  /**
   * One syncfs of the staging directory's file system for `files` files, when
   * they are many and it can be had; false when each is to be fsynced (from
   * now on, if `sync -f` turned out missing).
   */
  async #syncFileSystem (files: number): Promise<boolean> {
    if (this.#dev === undefined || files < SYNCFS_FROM) return false
    try {
      await syncFileSystem(this.root, this.#dev)
      return true
    } catch (err) {
      if (!(err instanceof SyncfsUnavailable)) throw err
      this.#dev = undefined
      return false
    }
  }

  #enter (): void {
    if (this.#closed) throw new Error('the output is closed')
    this.#busy++
  }

  #leave (): void {
    if (--this.#busy === 0) for (const resolve of this.#drained.splice(0)) resolve()
  }

  /** Waits for the writes and syncs in progress, then closes every file (later writes fail). */
  async close (): Promise<void> {
    this.#closed = true
    if (this.#busy > 0) await new Promise<void>(resolve => this.#drained.push(resolve))
    const fd = this.#fd
    this.#fd = undefined
    if (fd !== undefined) await closeP(fd).catch(() => {})
    await this.#poolFiles?.close()
    await this.#writer?.close()
  }

  /** Durable, then renamed onto the output, then the parent directory fsynced. */
  async commit (): Promise<void> {
    await this.syncAll()
    await this.close()
    await renameIntoPlace(this.root, this.output)
  }

  async remove (): Promise<void> {
    await this.close()
    await rm(this.root, { recursive: true, force: true })
  }
}

const WRITTEN = Promise.resolve()

/** fsync of a file of the staging directory, through a descriptor of its own (not following a link, not blocking on a FIFO). */
async function fsyncPath (path: string): Promise<void> {
  const fd = await openP(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  try {
    if (!(await fstatP(fd)).isFile()) throw new CidgetError('CIDGET_ERR_UNSAFE_PARTIAL', `Refusing to fsync ${path}: it is not a plain file`)
    await fsyncP(fd)
  } finally {
    await closeP(fd)
  }
}
