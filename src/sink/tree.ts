import { rm, symlink, lstat, readlink, stat } from 'node:fs/promises'
import { makeDirs } from './dirs.js'
import { close, closeSync, constants, fstat, fsync, ftruncate, open, writev, writevSync } from 'node:fs'
import { promisify } from 'node:util'
import { dirname, relative } from 'node:path'
import { renameIntoPlace } from './partial.js'
import { createOwnedFd, createOwnedFdSync, openOwnedFd, openOwnedFdSync, ownedDirectory } from './owned.js'
import { CidgetError, fsError, systemCode } from '../core/errors.js'
import { confineLinks, linksBelow } from './links.js'
import { SyncfsUnavailable, syncFileSystem, syncfsAvailable } from './syncfs.js'
import { DEFAULTS } from '../core/defaults.js'
import type { BlockBytes } from '../gateways/block.js'

const MAX_OPEN = 128
/** fsyncs run at once; parallel fsyncs share journal commits on most file systems. */
const SYNC_PARALLEL = 64
/** From this many files to make durable, one syncfs of the file system rather than an fsync each. */
const SYNCFS_FROM = 16
/** Writes up to this size are made on the event loop's thread while its calls are fast (see OutputTree). */
const INLINE_WRITE_MAX = 64 * 1024
/**
 * Calls on the event loop's thread that took this long, INLINE_SLOW_CALLS in a row, send the tree's
 * calls to the thread pool from then on (one alone may be the process waiting for a core, not the disk).
 */
const INLINE_SLOW_MS = 10
const INLINE_SLOW_CALLS = 3

const openP = promisify(open)
const fstatP = promisify(fstat)
const fsyncP = promisify(fsync)
const closeP = promisify(close)
const ftruncateP = promisify(ftruncate)
/** fs.writev as a promise of the bytes written (promisify would resolve with its last argument). */
async function writevP (fd: number, pieces: readonly Uint8Array[], at: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    writev(fd, pieces as Uint8Array[], at, (err, n) => { if (err === null) resolve(n); else reject(err) })
  })
}

/** An open file of the tree: its descriptor (once open), and the writes using it. */
interface OpenFile {
  fd: Promise<number>
  /** The descriptor, once the open succeeded. */
  opened?: number
  users: number
}

/**
 * Where a verified download writes: one partial file (`<output>.cidget-partial`)
 * or a staging directory of that name, renamed onto the output only when every
 * block is verified and durable. Nothing is written or created through a
 * symlink: the partial file, the staging directory and each directory in it
 * are created one at a time and must be a plain file or a real directory of
 * this process's user (CIDGET_ERR_UNSAFE_PARTIAL), files are opened without
 * following links, and only in directories checked so. At most 128 files stay
 * open: the least recently used is closed in the background, and `syncAll`
 * waits for those and makes every file written since the last call durable.
 *
 * Durability of a directory is batched: files are closed without an fsync,
 * and `syncAll` makes them all durable with one syncfs of the file system
 * ({@link syncFileSystem}), once 16 or more are to be; where syncfs cannot be
 * had, or for fewer files, each is fsynced (the evicted ones before they are
 * closed, so none is opened again only to be fsynced).
 *
 * Files of a staging directory are opened, closed and written in small
 * blocks (up to 64 KiB) on the event loop's thread: each call through
 * the thread pool costs a thread's wake-up, more than the call itself for a
 * small file, and where creating a file is slow (100 µs or more where many
 * were removed lately) a create in the pool cost the event loop's thread as
 * much as one made on it, as a woken thread took the core. Three
 * calls in a row that take 10 ms or more (a slow or remote file system) send
 * every later call of the tree there; fsyncs and larger writes always go
 * there.
 */
export class OutputTree {
  readonly output: string
  /** The partial file, or the staging directory. */
  readonly root: string
  readonly isDirectory: boolean
  /** Open files (descriptors); `users` are writes in progress, which keep it open. */
  readonly #open = new Map<string, OpenFile>()
  /** The open files no write uses, least recently used first: the ones to close when too many are open. */
  readonly #idle = new Map<string, OpenFile>()
  /** Files closed since the last syncAll whose data is not known to be durable (their fsync on closing failed). */
  #unsynced = new Set<string>()
  /** Files being fsynced and closed (evicted); syncAll waits for them. */
  readonly #closing = new Set<Promise<void>>()
  /** The first failed fsync of a closing file since the last syncAll. */
  #syncError: unknown
  /** Directories made or checked (real directories, not links): the only places files and links are created in. */
  readonly #dirs = new Set<string>()
  /** Symlinks written by this run. */
  readonly #links = new Set<string>()
  /** Whether the staging directory was made by this run (else it may hold links of an earlier run). */
  #fresh = false
  /** The device of the staging directory, when its files are made durable by one syncfs (see above). */
  #dev: number | undefined
  /** Writes and syncs in progress over all files; close() waits for them (a descriptor is never closed under a call). */
  #busy = 0
  readonly #drained: Array<() => void> = []
  #closed = false
  /** Whether opens, closes and small writes are made on the event loop's thread (see above). */
  #inline: boolean
  readonly #inlineSlowMs: number
  /** Slow calls on the event loop's thread in a row. */
  #slowCalls = 0

  private constructor (output: string, isDirectory: boolean, inlineSlowMs: number) {
    this.output = output
    this.root = output + DEFAULTS.PARTIAL_SUFFIX
    this.isDirectory = isDirectory
    this.#inline = isDirectory
    this.#inlineSlowMs = inlineSlowMs
  }

  /**
   * Opens the partial file or staging directory of `output`. A partial file is
   * cut to `size` (the file's declared size) when it is longer, so no byte past
   * the content can reach the output; what lies within it is only kept where it
   * hashes to its leaf's CID. A staging directory is emptied when `stale` (no
   * progress of it is recorded: a run stopped before its first checkpoint, or
   * planted), so that none of its files can end up in the output.
   * `inlineSlowMs`: see the class (tests set 0 to send every call after the third to the thread pool).
   */
  static async open (output: string, isDirectory: boolean, opts: { stale?: boolean, size?: number, inlineSlowMs?: number } = {}): Promise<OutputTree> {
    const tree = new OutputTree(output, isDirectory, opts.inlineSlowMs ?? INLINE_SLOW_MS)
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
    } else {
      const fd = await openOwnedFd(tree.root, constants.O_WRONLY)
      const size = opts.size
      if (size !== undefined) {
        await fstatP(fd).then(async s => { if (s.size > size) await ftruncateP(fd, size) }).catch(async (err: unknown) => {
          await closeP(fd).catch(() => {})
          throw fsError(err, `truncate ${tree.root}`)
        })
      }
      const entry = { fd: Promise.resolve(fd), opened: fd, users: 0 }
      tree.#open.set(tree.root, entry)
      tree.#idle.set(tree.root, entry)
    }
    return tree
  }

  /** Whether opens, closes and small writes are still made on the event loop's thread (see the class). */
  get callsInline (): boolean {
    return this.#inline
  }

  /** Refuses a path whose directory was not made or checked by `mkdir`: a component of it could be a link. */
  #below (path: string): void {
    if (!this.#dirs.has(dirname(path))) {
      throw new CidgetError('CIDGET_ERR_UNSAFE_PARTIAL', `Refusing to write ${path}: its directory was not checked to be a real directory`)
    }
  }

  /**
   * Runs `fn` with the file at `path` open. Concurrent writes to one file share
   * one handle (opened once); a handle in use is never closed under a writer.
   */
  async #use<T> (path: string, fn: (fd: number) => Promise<T>): Promise<T> {
    this.#enter()
    try {
      return await this.#useOpen(path, fn)
    } finally {
      this.#leave()
    }
  }

  async #useOpen<T> (path: string, fn: (fd: number) => Promise<T>): Promise<T> {
    let entry = this.#open.get(path)
    if (entry !== undefined) {
      this.#idle.delete(path)
      entry.users++
    } else {
      if (path !== this.root) this.#below(path)
      const opened: OpenFile = { fd: this.#openFile(path), users: 1 }
      entry = opened
      this.#open.set(path, opened)
      opened.fd.then(fd => { opened.opened = fd }, () => { if (this.#open.get(path) === opened) this.#open.delete(path) })
      await this.#evict()
    }
    try {
      return await fn(await entry.fd)
    } finally {
      // idle again: most recently used goes last
      if (--entry.users === 0 && this.#open.get(path) === entry) this.#idle.set(path, entry)
    }
  }

  /**
   * Opens a file of the tree for writing: in a staging directory this run made,
   * it is first created (O_EXCL: no check needed); one that is there (opened
   * before and closed, or in a directory an earlier run made) is opened and
   * checked.
   */
  async #openFile (path: string): Promise<number> {
    const create = this.#fresh && path !== this.root
    if (this.#inline) {
      return this.#timed(() => {
        const fd = create ? createOwnedFdSync(path, constants.O_WRONLY) : undefined
        return fd ?? openOwnedFdSync(path, constants.O_WRONLY)
      })
    }
    const fd = create ? await createOwnedFd(path, constants.O_WRONLY) : undefined
    return fd ?? await openOwnedFd(path, constants.O_WRONLY)
  }

  /** Runs a call on the event loop's thread; slow ones in a row send the later ones to the thread pool (see INLINE_SLOW_MS). */
  #timed<T> (call: () => T): T {
    const started = performance.now()
    try {
      return call()
    } finally {
      if (performance.now() - started < this.#inlineSlowMs) this.#slowCalls = 0
      else if (++this.#slowCalls >= INLINE_SLOW_CALLS) this.#inline = false
    }
  }

  async #close (fd: number): Promise<void> {
    if (this.#inline) this.#timed(() => { closeSync(fd) })
    else await closeP(fd)
  }

  /**
   * Closes the least recently used idle files while more than MAX_OPEN are
   * open, in the background (the next syncAll waits for it), each fsynced
   * first unless the next syncAll makes them durable with one syncfs. At most
   * SYNC_PARALLEL are closing at once.
   */
  async #evict (): Promise<void> {
    for (const [path, entry] of this.#idle) {
      if (this.#open.size <= MAX_OPEN) return
      this.#idle.delete(path)
      this.#open.delete(path)
      if (this.#dev !== undefined && this.#inline && entry.opened !== undefined) {
        // made durable by the next syncAll's syncfs: closed here and now (#close closes synchronously
        // while calls are inline; a failed close leaves nothing to do, as in the background below)
        this.#unsynced.add(path)
        this.#close(entry.opened).catch(() => {})
        continue
      }
      const closing = entry.fd.then(async fd => {
        try {
          if (this.#dev !== undefined) {
            this.#unsynced.add(path)
            return
          }
          await fsyncP(fd)
        } catch (err) {
          // fsynced at the next syncAll instead (which fails if that fails too)
          this.#unsynced.add(path)
          this.#syncError ??= err
        } finally {
          await this.#close(fd).catch(() => {})
        }
      }, () => {}).finally(() => { this.#closing.delete(closing) })
      this.#closing.add(closing)
      if (this.#closing.size >= SYNC_PARALLEL) await Promise.race(this.#closing)
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
    try {
      await this.#use(path, async fd => {
        // one writev (of the pieces a block arrived in, or of the block), again from where a short write stopped
        let pieces: readonly Uint8Array[] = Array.isArray(data) ? data as readonly Uint8Array[] : [data as Uint8Array]
        let at = offset
        const inline = this.#inline && pieces.reduce((n, p) => n + p.byteLength, 0) <= INLINE_WRITE_MAX
        while (pieces.length > 0) {
          const left = pieces
          const bytesWritten = inline ? this.#timed(() => writevSync(fd, left as Uint8Array[], at)) : await writevP(fd, left, at)
          at += bytesWritten
          pieces = rest(pieces, bytesWritten)
        }
      })
    } catch (err) {
      throw fsError(err, `write ${path}`)
    }
  }

  /** Makes sure a (possibly empty) file exists at `path`. */
  async touch (path: string): Promise<void> {
    try {
      await this.#use(path, async () => {})
    } catch (err) {
      throw fsError(err, `create ${path}`)
    }
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
   * Makes every file written since the last call durable: the open ones and
   * those closed meanwhile (one syncfs for 16 or more, else an fsync each).
   */
  async syncAll (): Promise<void> {
    // the files open now are held first (a write that opens another file meanwhile must not evict one
    // of them into a close this sync would not wait for), then the files being closed are waited for
    this.#enter()
    const held = [...this.#open.values()]
    for (const entry of held) entry.users++
    let closed: string[] = []
    try {
      await Promise.all(this.#closing)
      const closeError = this.#syncError
      this.#syncError = undefined
      closed = [...this.#unsynced]
      this.#unsynced = new Set()
      if (!await this.#syncFileSystem(held.length + closed.length)) {
        const jobs: Array<() => Promise<void>> = [
          ...held.map(entry => async () => { await fsyncP(await entry.fd) }),
          ...closed.filter(p => !this.#open.has(p)).map(p => async () => {
            const fd = await openP(p, constants.O_RDONLY | constants.O_NOFOLLOW)
            try { await fsyncP(fd) } finally { await closeP(fd) }
          })
        ]
        for (let i = 0; i < jobs.length; i += SYNC_PARALLEL) {
          await Promise.all(jobs.slice(i, i + SYNC_PARALLEL).map(async job => { await job() }))
        }
      }
      // a file whose fsync failed on closing was made durable again above; the failure still counts
      if (closeError !== undefined) throw closeError
    } catch (err) {
      for (const p of closed) this.#unsynced.add(p)
      throw fsError(err, 'fsync the output')
    } finally {
      for (const entry of held) entry.users--
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
    const entries = [...this.#open.values()]
    this.#open.clear()
    this.#idle.clear()
    await Promise.all([...entries.map(async entry => { await entry.fd.then(async fd => { await closeP(fd) }).catch(() => {}) }), ...this.#closing])
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

/** What is left of `pieces` after their first `n` bytes. */
function rest (pieces: readonly Uint8Array[], n: number): readonly Uint8Array[] {
  let i = 0
  while (i < pieces.length && n >= (pieces[i] as Uint8Array).byteLength) n -= (pieces[i++] as Uint8Array).byteLength
  if (i === pieces.length) return []
  const left = pieces.slice(i)
  left[0] = (left[0] as Uint8Array).subarray(n)
  return left
}
