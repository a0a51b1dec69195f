/**
 * Partial files and staging directories are opened and created without
 * following symlinks, and used only when they are a plain file or directory
 * of this process's user: a link planted at `<output>.cidget-partial` (or
 * below a staging directory) must not lead a write anywhere else.
 */
import { lstat, mkdir, open, type FileHandle } from 'node:fs/promises'
import { close, closeSync, constants, fstat, fstatSync, open as openFd, openSync, type Stats } from 'node:fs'
import { promisify } from 'node:util'
import { CidgetError, fsError, systemCode } from '../core/errors.js'

/**
 * O_NOFOLLOW: a symlink as the last component fails with ELOOP instead of being
 * followed. O_NONBLOCK: a FIFO fails (ENXIO) or returns at once instead of
 * blocking the open; it has no effect on regular files.
 */
const SAFE_FLAGS = constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK

function unsafe (path: string, why: string, cause?: unknown): CidgetError {
  return new CidgetError('CIDGET_ERR_UNSAFE_PARTIAL', `Refusing to write ${path}: ${why}`, cause === undefined ? {} : { cause })
}

/** Undefined on platforms without user ids (Windows): there, ownership is not checked. */
function ownUid (): number | undefined {
  return typeof process.getuid === 'function' ? process.getuid() : undefined
}

function checkOwner (path: string, s: Stats): void {
  const uid = ownUid()
  if (uid !== undefined && s.uid !== uid) throw unsafe(path, `it belongs to user ${s.uid}, not to this process's user ${uid}`)
}

/** A failed open of `path` as the error to throw: a link or a special file is refused as unsafe. */
function openFailure (path: string, err: unknown): CidgetError {
  const code = systemCode(err)
  // ELOOP: a symlink (EMLINK on the BSDs); EISDIR: a directory; ENXIO: a FIFO or socket with no reader
  if (code === 'ELOOP' || code === 'EMLINK') return unsafe(path, 'it is a symlink', err)
  if (code === 'EISDIR' || code === 'ENXIO') return unsafe(path, 'it is not a plain file', err)
  return fsError(err, `open ${path}`)
}

/** What an opened `path` must be: a plain file of this user with one name. */
function checkOpened (path: string, s: Stats): void {
  if (!s.isFile()) throw unsafe(path, 'it is not a plain file')
  // a file this process made has one name; another one is a way to write elsewhere
  if (s.nlink > 1) throw unsafe(path, `it has ${s.nlink} hard links`)
  checkOwner(path, s)
}

/**
 * Opens (creating it when missing) the plain file at `path` for writing, with
 * `access` (O_WRONLY or O_RDWR). Throws CIDGET_ERR_UNSAFE_PARTIAL when `path`
 * is a symlink, not a regular file, has other hard links, or belongs to
 * another user; other failures as CIDGET_ERR_FS or DISK_FULL.
 */
export async function openOwnedFile (path: string, access: number, mode = 0o644): Promise<FileHandle> {
  let fh: FileHandle
  try {
    fh = await open(path, access | SAFE_FLAGS, mode)
  } catch (err) {
    throw openFailure(path, err)
  }
  try {
    checkOpened(path, await fh.stat())
    return fh
  } catch (err) {
    await fh.close().catch(() => {})
    throw fsError(err, `inspect ${path}`)
  }
}

const openP = promisify(openFd)
const fstatP = promisify(fstat)
const closeP = promisify(close)

/** {@link openOwnedFile} as a file descriptor (the caller closes it). */
export async function openOwnedFd (path: string, access: number, mode = 0o644): Promise<number> {
  let fd: number
  try {
    fd = await openP(path, access | SAFE_FLAGS, mode)
  } catch (err) {
    throw openFailure(path, err)
  }
  try {
    checkOpened(path, await fstatP(fd))
    return fd
  } catch (err) {
    await closeP(fd).catch(() => {})
    throw fsError(err, `inspect ${path}`)
  }
}

/** {@link openOwnedFd} on the calling thread. */
export function openOwnedFdSync (path: string, access: number, mode = 0o644): number {
  let fd: number
  try {
    fd = openSync(path, access | SAFE_FLAGS, mode)
  } catch (err) {
    throw openFailure(path, err)
  }
  try {
    checkOpened(path, fstatSync(fd))
    return fd
  } catch (err) {
    try {
      closeSync(fd)
    } catch {
      // the error above is the one to report
    }
    throw fsError(err, `inspect ${path}`)
  }
}

/**
 * Creates the file at `path` for writing with `access`, failing when anything
 * is there (O_EXCL, which also refuses a symlink without following it):
 * undefined then, and the caller opens what is there with
 * {@link openOwnedFd}. A file made so is a new plain file of this process's
 * user with one name, so it needs none of openOwnedFd's checks (one fstat
 * less per file of a tree). Returns a file descriptor (the caller closes it).
 */
export async function createOwnedFd (path: string, access: number, mode = 0o644): Promise<number | undefined> {
  try {
    return await openP(path, access | SAFE_FLAGS | constants.O_EXCL, mode)
  } catch (err) {
    if (systemCode(err) === 'EEXIST') return undefined
    throw fsError(err, `create ${path}`)
  }
}

/** {@link createOwnedFd} on the calling thread. */
export function createOwnedFdSync (path: string, access: number, mode = 0o644): number | undefined {
  try {
    return openSync(path, access | SAFE_FLAGS | constants.O_EXCL, mode)
  } catch (err) {
    if (systemCode(err) === 'EEXIST') return undefined
    throw fsError(err, `create ${path}`)
  }
}

/**
 * Creates the directory `path` (its parent must exist), or accepts the one
 * there when it is a real directory (not a symlink) of this process's user.
 * Returns true when it was created now. Throws CIDGET_ERR_UNSAFE_PARTIAL
 * otherwise: never a recursive mkdir, which would follow links on the way.
 */
export async function ownedDirectory (path: string): Promise<boolean> {
  try {
    await mkdir(path)
    return true
  } catch (err) {
    if (systemCode(err) !== 'EEXIST') throw fsError(err, `create directory ${path}`)
  }
  let s: Stats
  try {
    s = await lstat(path)
  } catch (err) {
    throw fsError(err, `inspect ${path}`)
  }
  if (s.isSymbolicLink()) throw unsafe(path, 'it is a symlink')
  if (!s.isDirectory()) throw unsafe(path, 'it is not a directory')
  checkOwner(path, s)
  return false
}
