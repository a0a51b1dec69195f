import { close, constants, writev } from 'node:fs'
import { promisify } from 'node:util'
import type { BlockBytes } from '../gateways/block.js'
import { createOwnedFd, openOwnedFd } from './owned.js'

const closeP = promisify(close)

/** Descriptors kept open for the next blocks of the same files, at most. */
const MAX_OPEN = 16

/** fs.writev as a promise of the bytes written (promisify would resolve with its last argument). */
async function writevP (fd: number, pieces: readonly Uint8Array[], at: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    writev(fd, pieces as Uint8Array[], at, (err, n) => { if (err === null) resolve(n); else reject(err) })
  })
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

/**
 * Writes `data` (a block, or the pieces it arrived in) at `offset` of the
 * open file `fd` through the thread pool: one writev, again from where a
 * short write stopped.
 */
export async function writeAt (fd: number, offset: number, data: BlockBytes): Promise<void> {
  let pieces: readonly Uint8Array[] = (Array.isArray(data) ? data as readonly Uint8Array[] : [data as Uint8Array]).filter(p => p.byteLength > 0)
  let at = offset
  while (pieces.length > 0) {
    const bytesWritten = await writevP(fd, pieces, at)
    if (bytesWritten === 0) throw Object.assign(new Error(`nothing was written at ${at}`), { code: 'EIO', syscall: 'write' })
    at += bytesWritten
    pieces = rest(pieces, bytesWritten)
  }
}

interface Entry {
  fd: Promise<number>
  users: number
}

/**
 * The large writes of a staging directory's files (see OutputTree): straight
 * from the socket's chunks through the thread pool, on descriptors of their
 * own (a copy for the writer thread would cost more than the call saves).
 * A file is created with O_EXCL in a staging directory this run made, else
 * (or when it is there) opened without following a link and checked
 * (openOwnedFd). The 16 most recently used stay open for the next blocks.
 */
export class PoolFiles {
  readonly #fresh: boolean
  readonly #open = new Map<string, Entry>()

  constructor (fresh: boolean) {
    this.#fresh = fresh
  }

  async write (path: string, offset: number, data: BlockBytes): Promise<void> {
    let entry = this.#open.get(path)
    if (entry === undefined) {
      entry = { fd: this.#openFile(path), users: 0 }
      this.#open.set(path, entry)
      const opened = entry
      entry.fd.catch(() => { if (this.#open.get(path) === opened) this.#open.delete(path) })
    } else {
      // most recently used goes last
      this.#open.delete(path)
      this.#open.set(path, entry)
    }
    entry.users++
    try {
      await writeAt(await entry.fd, offset, data)
    } finally {
      entry.users--
      this.#evict()
    }
  }

  async #openFile (path: string): Promise<number> {
    const fd = this.#fresh ? await createOwnedFd(path, constants.O_WRONLY) : undefined
    return fd ?? await openOwnedFd(path, constants.O_WRONLY)
  }

  /** Closes the least recently used files no write uses while more than MAX_OPEN are open. */
  #evict (): void {
    for (const [path, entry] of this.#open) {
      if (this.#open.size <= MAX_OPEN) return
      if (entry.users > 0) continue
      this.#open.delete(path)
      entry.fd.then(async fd => { await closeP(fd) }).catch(() => {})
    }
  }

  /** Closes every file (no write may be in progress). */
  async close (): Promise<void> {
    const entries = [...this.#open.values()]
    this.#open.clear()
    await Promise.all(entries.map(async e => { await e.fd.then(async fd => { await closeP(fd) }).catch(() => {}) }))
  }
}
