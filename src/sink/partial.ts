import { open, rename, rm, statfs, stat, lstat, type FileHandle } from 'node:fs/promises'
import { kernelFileSystem, makeDirs } from './dirs.js'
import { createReadStream, constants } from 'node:fs'
import { createHash, type Hash } from 'node:crypto'
import { dirname } from 'node:path'
import { CidgetError, fsError, systemCode } from '../core/errors.js'
import { openOwnedFile } from './owned.js'
import { DEFAULTS } from '../core/defaults.js'

/** The partial file's name for an output path. */
export function partialPath (output: string, suffix: string = DEFAULTS.PARTIAL_SUFFIX): string {
  return output + suffix
}

/** Bytes free for an unprivileged writer on the file system holding `dir`. */
export async function freeSpace (dir: string): Promise<number> {
  const s = await statfs(dir)
  return Number(s.bavail) * Number(s.bsize)
}

/** Throws CIDGET_ERR_DISK_FULL when fewer than `needed` bytes are free where `file` lives. */
export async function ensureFreeSpace (file: string, needed: number): Promise<void> {
  if (needed <= 0) return
  let free: number
  try {
    free = await freeSpace(dirname(file))
  } catch {
    return // statfs is unsupported here; the write itself will tell
  }
  if (free < needed) {
    // /sys and /proc say 0 bytes free: not a full disk that space freed later would help
    const kernel = await kernelFileSystem(dirname(file))
    if (kernel !== undefined) {
      throw new CidgetError('CIDGET_ERR_OUTPUT_NOT_WRITABLE', `Cannot write to ${dirname(file)}: it is on ${kernel}, a kernel file system, which holds no downloads`)
    }
    throw new CidgetError('CIDGET_ERR_DISK_FULL',
      `Not enough space in ${dirname(file)}: ${needed} bytes needed, ${free} free`)
  }
}

/** Renames a finished partial (file or directory) onto its final name and makes the rename durable. */
export async function renameIntoPlace (from: string, to: string): Promise<void> {
  try {
    await rename(from, to)
  } catch (err) {
    throw fsError(err, `rename ${from} to ${to}`)
  }
  await syncDir(dirname(to))
}

/** fsyncs a directory so a rename in it is durable. */
async function syncDir (dir: string): Promise<void> {
  let fh: FileHandle | undefined
  try {
    fh = await open(dir, 'r')
    await fh.sync()
  } catch {
    // some file systems refuse fsync on directories; the rename is still atomic
  } finally {
    await fh?.close().catch(() => {})
  }
}

/**
 * The partial file of one download: written at explicit offsets, fsynced on
 * request, and renamed onto the final name only by `commit()`.
 */
export class PartialFile {
  readonly path: string
  readonly output: string
  #fh: FileHandle

  private constructor (output: string, path: string, fh: FileHandle) {
    this.output = output
    this.path = path
    this.#fh = fh
  }

  /**
   * Opens (creating it and its directory if needed) the partial file for
   * `output`, without following a symlink there. Throws CIDGET_ERR_UNSAFE_PARTIAL
   * when it is a symlink, not a plain file, or another user's.
   */
  static async open (output: string, suffix?: string): Promise<PartialFile> {
    const path = partialPath(output, suffix)
    try {
      await makeDirs(dirname(output))
    } catch (err) {
      throw fsError(err, `create directory ${dirname(output)}`)
    }
    return new PartialFile(output, path, await openOwnedFile(path, constants.O_RDWR))
  }

  async size (): Promise<number> {
    return (await this.#fh.stat()).size
  }

  async truncate (length: number): Promise<void> {
    try {
      await this.#fh.truncate(length)
    } catch (err) {
      throw fsError(err, `truncate ${this.path}`)
    }
  }

  /** Writes all of `data` at `position`. Throws CIDGET_ERR_DISK_FULL on ENOSPC. */
  async write (data: Uint8Array, position: number): Promise<void> {
    let done = 0
    try {
      while (done < data.byteLength) {
        const { bytesWritten } = await this.#fh.write(data, done, data.byteLength - done, position + done)
        done += bytesWritten
      }
    } catch (err) {
      throw fsError(err, `write ${this.path}`)
    }
  }

  async sync (): Promise<void> {
    try {
      await this.#fh.sync()
    } catch (err) {
      throw fsError(err, `fsync ${this.path}`)
    }
  }

  /** Reads `length` bytes at `position` (fewer at the end of the file). */
  async read (position: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length)
    let done = 0
    try {
      while (done < length) {
        const { bytesRead } = await this.#fh.read(buf, done, length - done, position + done)
        if (bytesRead === 0) break
        done += bytesRead
      }
    } catch (err) {
      throw fsError(err, `read ${this.path}`)
    }
    return done === length ? buf : buf.subarray(0, done)
  }

  /** SHA-256 state over the first `length` bytes (used to continue hashing after a resume). */
  async hashPrefix (length: number, signal?: AbortSignal): Promise<Hash> {
    return await hashFilePrefix(this.path, length, signal)
  }

  async close (): Promise<void> {
    await this.#fh.close().catch(() => {})
  }

  /** fsync, close, rename onto the output name, fsync the directory. */
  async commit (): Promise<void> {
    await this.sync()
    await this.close()
    await renameIntoPlace(this.path, this.output)
  }

  /** Closes and deletes the partial file. */
  async remove (): Promise<void> {
    await this.close()
    await rm(this.path, { force: true })
  }
}

/** Deletes the partial file of `output` if there is one. */
export async function removePartial (output: string, suffix?: string): Promise<void> {
  await rm(partialPath(output, suffix), { force: true, recursive: true })
}

/** True when something exists at `p` (file, directory or link). */
export async function exists (p: string): Promise<boolean> {
  try {
    await stat(p)
    return true
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return false
    throw fsError(err, `inspect ${p}`)
  }
}

/**
 * A finished file already in place: no partial file next to `output`, and `output`
 * has `size` bytes whose SHA-256 is `hash` (and `expected`, when one is asked for now).
 * A run killed between the rename onto the output and the success record left it so.
 */
export async function committedAlready (output: string, size: number | null, hash: string | null, expected: string | null = null): Promise<boolean> {
  if (hash === null || size === null) return false
  if (expected !== null && expected.toLowerCase() !== hash) return false
  if (await exists(partialPath(output))) return false
  try {
    if ((await stat(output)).size !== size) return false
  } catch {
    return false
  }
  return (await hashFilePrefix(output, size)).digest('hex') === hash
}

/** SHA-256 state over the first `length` bytes of the file at `path` (read in 1 MiB pieces). */
export async function hashFilePrefix (path: string, length: number, signal?: AbortSignal): Promise<Hash> {
  const hash = createHash('sha256')
  if (length === 0) return hash
  const stream = createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1 << 20, ...(signal === undefined ? {} : { signal }) })
  for await (const chunk of stream) hash.update(chunk as Buffer)
  return hash
}

/** True when something is at `path`, itself (a symlink is not followed: a link is there, wherever it leads). */
export async function present (path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return false
    throw fsError(err, `look for ${path}`)
  }
}

/** Reads into all of `buf` from `at` of the open file (less at its end); the bytes read. */
export async function readAt (fh: FileHandle, at: number, buf: Uint8Array): Promise<Uint8Array> {
  const length = buf.byteLength
  let got = 0
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, at + got)
    if (bytesRead === 0) break
    got += bytesRead
  }
  return buf.subarray(0, got)
}
