/**
 * The worker thread of {@link TreeWriter} (tree-writer.ts): it creates, opens,
 * writes and closes the files of a staging directory, in the order the writes
 * are posted, so that these calls (a create can cost 100 µs or more of the
 * kernel's time) run beside the thread that receives and verifies blocks
 * instead of on it. It is given batches of writes whose bytes sit in one
 * transferred buffer, and answers each batch with the last write done, the
 * writes that failed, and the buffer (handed back for the next batch). It
 * imports Node's own modules only, so it starts alone, from dist/ or beside
 * the bundled CLI.
 *
 * Files are never opened through a link: a file of a staging directory this
 * run made is created with O_EXCL (which refuses anything there, a link
 * included); any other is opened with O_NOFOLLOW and must be a plain file of
 * this process's user with one name. The directory each file is in was made
 * or checked by the other side before the write was posted.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { setFlagsFromString } from 'node:v8'
import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs'

/** Write `length` bytes of the batch's buffer from `start` at `offset` of `path`; `length` 0 only makes sure the file exists. */
export type WriteOp = [id: number, path: string, offset: number, start: number, length: number]

/** What the writer posts. */
export type WriteRequest =
  | { type: 'ops', ops: WriteOp[], buffer: ArrayBuffer | null }
  | { type: 'close' }

/** Why a write failed: a system error (its code and call), or a file that must not be written (`unsafe`). */
export interface WriteFailure {
  message: string
  code?: string
  syscall?: string
  unsafe?: string
}

/** What the worker answers. */
export type WriteReply =
  | { type: 'done', last: number, failed: Array<[number, WriteFailure]>, buffer: ArrayBuffer | null }
  | { type: 'closed' }

export interface WriteWorkerData {
  /** Whether the staging directory was made by this run: its files are created with O_EXCL, unchecked. */
  fresh: boolean
  /** Files kept open at most; the least recently used is closed first. */
  maxOpen: number
}

/** O_NOFOLLOW: a link fails with ELOOP; O_NONBLOCK: a FIFO fails (ENXIO) instead of blocking the open. */
const SAFE = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK

class Unsafe extends Error {}

function failure (err: unknown): WriteFailure {
  if (err instanceof Unsafe) return { message: err.message, unsafe: err.message }
  const e = err as { message?: string, code?: string, syscall?: string } | null
  const out: WriteFailure = { message: String(e?.message ?? err) }
  if (typeof e?.code === 'string') out.code = e.code
  if (typeof e?.syscall === 'string') out.syscall = e.syscall
  return out
}

/** Opens a file that may be there: it must be a plain file of this user with one name. */
function openChecked (path: string): number {
  let fd: number
  try {
    fd = openSync(path, SAFE, 0o644)
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'ELOOP' || code === 'EMLINK') throw new Unsafe('it is a symlink')
    if (code === 'EISDIR' || code === 'ENXIO') throw new Unsafe('it is not a plain file')
    throw err
  }
  try {
    const s = fstatSync(fd)
    const uid = typeof process.getuid === 'function' ? process.getuid() : undefined
    if (!s.isFile()) throw new Unsafe('it is not a plain file')
    if (s.nlink > 1) throw new Unsafe(`it has ${s.nlink} hard links`)
    if (uid !== undefined && s.uid !== uid) throw new Unsafe(`it belongs to user ${s.uid}, not to this process's user ${uid}`)
    return fd
  } catch (err) {
    closeSync(fd)
    throw err
  }
}

const port = parentPort
const data = workerData as WriteWorkerData | null
// V8's flags went back to their defaults as this thread's isolate started: the heap bound's are set again (see sink/worker.ts)
for (const flag of (workerData as { v8Flags?: string[] } | null)?.v8Flags ?? []) setFlagsFromString(flag)
if (port !== null && data !== null) {
  /** Open files, least recently used first. */
  const open = new Map<string, number>()
  const fdOf = (path: string): number => {
    const fd = open.get(path)
    if (fd !== undefined) {
      open.delete(path)
      open.set(path, fd)
      return fd
    }
    let made: number | undefined
    if (data.fresh) {
      try {
        made = openSync(path, SAFE | constants.O_EXCL, 0o644)
      } catch (err) {
        if ((err as { code?: string }).code !== 'EEXIST') throw err
      }
    }
    const opened = made ?? openChecked(path)
    for (const [p, old] of open) {
      if (open.size < data.maxOpen) break
      open.delete(p)
      try {
        closeSync(old)
      } catch {
        // its bytes were written; a checkpoint makes them durable through the path
      }
    }
    open.set(path, opened)
    return opened
  }
  port.on('message', (m: WriteRequest) => {
    if (m.type === 'close') {
      for (const fd of open.values()) {
        try {
          closeSync(fd)
        } catch {
          // nothing was left to write through it
        }
      }
      open.clear()
      port.postMessage({ type: 'closed' } satisfies WriteReply)
      port.close()
      return
    }
    const bytes = m.buffer === null ? new Uint8Array(0) : new Uint8Array(m.buffer)
    const failed: Array<[number, WriteFailure]> = []
    let last = -1
    for (const [id, path, offset, start, length] of m.ops) {
      last = id
      try {
        const fd = fdOf(path)
        let done = 0
        while (done < length) {
          const n = writeSync(fd, bytes, start + done, length - done, offset + done)
          if (n === 0) throw Object.assign(new Error(`nothing was written at ${offset + done}`), { code: 'EIO', syscall: 'write' })
          done += n
        }
      } catch (err) {
        failed.push([id, failure(err)])
      }
    }
    const reply: WriteReply = { type: 'done', last, failed, buffer: m.buffer }
    port.postMessage(reply, m.buffer === null ? [] : [m.buffer])
  })
}
