import type { Worker } from 'node:worker_threads'
import { startSinkWorker } from './worker.js'
import { CidgetError, fsError } from '../core/errors.js'
import { hashFilePrefix } from './partial.js'
import type { HashReply, HashRequest } from './hash-worker.js'

/** From this size on, a file is hashed on a worker thread while it downloads. */
export const HASH_WORKER_BYTES = 16 * 1024 * 1024
/**
 * The worker is told to read on once the written prefix grew by this much.
 * Each message wakes it, and on a busy machine the woken thread takes the CPU
 * from the one receiving blocks: 32 MiB steps cost a 1 GiB download 32 wakes
 * instead of 256, and leave at most 32 MiB (about 25 ms) to hash at the end.
 */
const HASH_STEP_BYTES = 32 * 1024 * 1024
/**
 * Over the last {@link HASH_STEP_BYTES} × 2 of the file the worker is told
 * every 4 MiB instead: what is left to hash once the last block is written
 * (and the download waits for the digest) is then at most 4 MiB (3 ms), not 32.
 */
const HASH_END_STEP_BYTES = 4 * 1024 * 1024

/**
 * The SHA-256 of a file that is written in pieces, in any order. The caller
 * says which byte ranges are on disk (`written`, also for ranges an earlier
 * run wrote); a large file is hashed on a worker thread that reads the file's
 * contiguous written prefix as it grows, so neither the hashing nor any copy
 * of the data costs the thread that receives and writes the blocks, and no
 * piece is held in memory for it. A small file is read once at the end.
 */
export class FileHasher {
  readonly #path: string
  readonly #expectedSize: number
  readonly #worker: Worker | undefined
  /** End of the contiguous prefix known to be on disk. */
  #next = 0
  /** Pieces beyond the prefix: start → end. */
  readonly #ahead = new Map<number, number>()
  #posted = 0
  #failure: Error | undefined
  #closed = false

  /** `worker`: hash on a worker thread as the file grows; default: for files of 16 MiB and more. */
  constructor (path: string, expectedSize: number, worker = expectedSize >= HASH_WORKER_BYTES) {
    this.#path = path
    this.#expectedSize = expectedSize
    if (worker) {
      this.#worker = startSinkWorker('hash-worker', { path })
      this.#worker.unref()
      this.#worker.on('error', (err) => { this.#failure = err })
      this.#worker.on('message', (m: HashReply) => {
        if (m.type === 'error') this.#failure = this.#readError(m)
      })
    }
  }

  /** Bytes [offset, offset + length) of the file are on disk. */
  written (offset: number, length: number): void {
    if (length <= 0) return
    const end = offset + length
    if (offset > this.#next) {
      if ((this.#ahead.get(offset) ?? 0) < end) this.#ahead.set(offset, end)
      return
    }
    if (end <= this.#next) return
    this.#next = end
    for (let more = this.#ahead.get(this.#next); more !== undefined; more = this.#ahead.get(this.#next)) {
      this.#ahead.delete(this.#next)
      if (more > this.#next) this.#next = more
    }
    const step = this.#expectedSize - this.#next <= 2 * HASH_STEP_BYTES ? HASH_END_STEP_BYTES : HASH_STEP_BYTES
    if (this.#worker !== undefined && this.#next - this.#posted >= step) {
      this.#posted = this.#next
      this.#worker.postMessage({ upTo: this.#next } satisfies HashRequest)
    }
  }

  /** How much of the file the hash has been told is on disk, from its start. */
  get prefix (): number {
    return this.#next
  }

  /** The hex SHA-256 of the file's first `size` bytes (all written and synced by now). */
  async digest (size: number, signal: AbortSignal): Promise<string> {
    signal.throwIfAborted()
    const worker = this.#worker
    if (worker === undefined) return await this.#readAll(size, signal)
    try {
      if (this.#failure !== undefined) throw this.#failure
      // the answer must keep the process alive (the timers of a download are unref'd)
      worker.ref()
      return await new Promise<string>((resolve, reject) => {
        const onAbort = (): void => reject(signal.reason)
        signal.addEventListener('abort', onAbort, { once: true })
        worker.once('error', reject)
        worker.once('exit', (code) => { reject(this.#readError({ message: `the hashing thread ended (exit code ${code}) before its answer` })) })
        worker.on('message', (m: HashReply) => {
          signal.removeEventListener('abort', onAbort)
          if (m.type === 'digest') resolve(m.hex)
          else reject(this.#readError(m))
        })
        worker.postMessage({ upTo: size, end: true } satisfies HashRequest)
      })
    } finally {
      this.close()
    }
  }

  /** Stops the worker, if any (the download ended without a digest, or with one). */
  close (): void {
    if (this.#closed) return
    this.#closed = true
    this.#ahead.clear()
    if (this.#worker !== undefined) void this.#worker.terminate()
  }

  async #readAll (size: number, signal: AbortSignal): Promise<string> {
    try {
      return (await hashFilePrefix(this.#path, size, signal)).digest('hex')
    } catch (err) {
      if (signal.aborted) throw signal.reason
      throw fsError(err, `read ${this.#path} to hash it`)
    }
  }

  #readError (m: { message: string, code?: string }): CidgetError {
    return fsError(Object.assign(new Error(m.message), { code: m.code }), `read ${this.#path} to hash it`)
  }
}
