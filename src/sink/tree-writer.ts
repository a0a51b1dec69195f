import type { Worker } from 'node:worker_threads'
import { startSinkWorker } from './worker.js'
import { CidgetError } from '../core/errors.js'
import { blockLength, type BlockBytes } from '../gateways/block.js'
import type { WriteFailure, WriteOp, WriteReply, WriteRequest, WriteWorkerData } from './write-worker.js'

/** The bytes of one batch's buffer: the writes made in one turn of the event loop go to the worker in one message. */
const BATCH_BYTES = 256 * 1024
/**
 * Batch buffers at most, filling or at the worker: a write that finds none waits. They are
 * handed back by the worker and used again, so what the copies take is bounded (2 MiB, and
 * a write larger than a buffer gets one of its own size).
 */
const BUFFERS = 8
/** Writes given and not answered, at most (empty files and tiny ones take little of the buffers): a write past it waits. */
const MAX_WRITES = 4096
/** Files the worker keeps open at most. */
const MAX_OPEN = 128

interface Pending {
  id: number
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * Writes the files of a staging directory on a worker thread
 * (write-worker.ts): each write's bytes are copied into a batch buffer, and
 * the writes made in one turn of the event loop go to the worker in one
 * message (the buffer transferred, not copied again), which creates, writes
 * and closes the files in that order while this thread goes on receiving and
 * verifying blocks. A write's promise settles once its bytes are in the file
 * (not yet durable: see OutputTree.syncAll), or with its own error; the
 * copies take 8 buffers of 256 KiB at most. The caller checks that each path's directory is a
 * real one; the worker opens nothing through a link.
 */
export class TreeWriter {
  readonly #worker: Worker
  #nextId = 0
  /** Writes posted or batched and not answered, in the order of their ids (from #head on). */
  #pending: Pending[] = []
  #head = 0
  #ops: WriteOp[] = []
  #buffer: Uint8Array | null = null
  #used = 0
  #scheduled = false
  /** Batch buffers filling or at the worker. */
  #buffers = 0
  /** Buffers handed back, for the next batches. */
  readonly #free: ArrayBuffer[] = []
  readonly #room: Array<() => void> = []
  #failure: Error | undefined
  #closed: Promise<void> | undefined
  #onClosed: (() => void) | undefined
  /**
   * Settles once the thread runs (never rejects: a thread that fails to start
   * fails the writes instead). Its isolate's start gives V8's flags their
   * defaults back, so the caller waits for it before its busy stretch, and the
   * heap bound is set again meanwhile (see reapplyHeapBound).
   */
  readonly ready: Promise<void>

  constructor (fresh: boolean) {
    this.#worker = startSinkWorker('write-worker', { fresh, maxOpen: MAX_OPEN } satisfies WriteWorkerData)
    this.#worker.unref()
    this.ready = new Promise<void>((resolve) => {
      this.#worker.once('online', resolve)
      this.#worker.once('error', () => { resolve() })
      this.#worker.once('exit', () => { resolve() })
    })
    this.#worker.on('message', (m: WriteReply) => {
      if (m.type === 'closed') this.#onClosed?.()
      else this.#answered(m)
    })
    this.#worker.on('error', (err) => { this.#stop(err) })
    this.#worker.on('exit', (code) => { this.#stop(new Error(`the writer thread exited (code ${code})`)) })
  }

  /**
   * Takes the write of `data` at `offset` of `path`: resolves once its bytes
   * are copied (waiting while every batch buffer is in use), with `done`,
   * which settles once they are in the file.
   */
  async enqueue (path: string, offset: number, data: BlockBytes): Promise<{ done: Promise<void> }> {
    const length = blockLength(data)
    for (;;) {
      if (this.#closed !== undefined) throw new Error('the output is closed')
      if (this.#failure !== undefined) throw this.#failure
      if (this.#pending.length - this.#head >= MAX_WRITES) {
        // as many writes as that are not answered (empty files take no buffer): wait
        await new Promise<void>(resolve => this.#room.push(resolve))
        continue
      }
      if (length === 0 || (this.#buffer !== null && this.#used + length <= this.#buffer.byteLength)) break
      if (this.#buffer !== null) this.#flush()
      if (this.#buffers < BUFFERS) {
        this.#buffer = this.#take(length)
        this.#buffers++
        break
      }
      await new Promise<void>(resolve => this.#room.push(resolve))
    }
    let start = 0
    if (this.#buffer !== null && length > 0) {
      start = this.#used
      if (data instanceof Uint8Array) this.#buffer.set(data, start)
      else {
        let at = start
        for (const piece of data) {
          this.#buffer.set(piece, at)
          at += piece.byteLength
        }
      }
      this.#used += length
    }
    const id = this.#nextId++
    this.#ops.push([id, path, offset, start, length])
    if (this.#pending.length === this.#head) this.#worker.ref() // something to wait for: the process stays
    const done = new Promise<void>((resolve, reject) => { this.#pending.push({ id, resolve, reject }) })
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => { this.#flush() })
    }
    return { done }
  }

  /** Waits for every write given so far, closes the worker's files, and ends it; later writes fail. */
  async close (): Promise<void> {
    this.#closed ??= (async () => {
      this.#flush()
      if (this.#failure !== undefined) return
      this.#worker.ref()
      const closed = new Promise<void>(resolve => { this.#onClosed = resolve })
      this.#worker.postMessage({ type: 'close' } satisfies WriteRequest)
      // the exit without 'closed' (the worker failed) ends the wait too
      await Promise.race([closed, new Promise<void>(resolve => this.#worker.once('exit', () => { resolve() }))])
    })()
    await this.#closed
  }

  /** A buffer for a batch of at least `length` bytes: one handed back, or a new one. */
  #take (length: number): Uint8Array {
    if (length > BATCH_BYTES) return new Uint8Array(length)
    return new Uint8Array(this.#free.pop() ?? new ArrayBuffer(BATCH_BYTES))
  }

  #flush (): void {
    this.#scheduled = false
    if (this.#ops.length === 0) return
    const buffer = this.#buffer === null ? null : this.#buffer.buffer as ArrayBuffer
    const request: WriteRequest = { type: 'ops', ops: this.#ops, buffer }
    this.#ops = []
    this.#buffer = null
    this.#used = 0
    this.#worker.postMessage(request, buffer === null ? [] : [buffer])
  }

  #answered (m: Extract<WriteReply, { type: 'done' }>): void {
    const failed = m.failed.length === 0 ? undefined : new Map(m.failed)
    while (this.#head < this.#pending.length) {
      const p = this.#pending[this.#head] as Pending
      if (p.id > m.last) break
      this.#head++
      const why = failed?.get(p.id)
      if (why === undefined) p.resolve()
      else p.reject(failure(why))
    }
    if (this.#head === this.#pending.length) {
      this.#pending = []
      this.#head = 0
      if (this.#closed === undefined) this.#worker.unref()
    } else if (this.#head > 1024) {
      this.#pending = this.#pending.slice(this.#head)
      this.#head = 0
    }
    if (m.buffer !== null) {
      this.#buffers--
      if (m.buffer.byteLength === BATCH_BYTES) this.#free.push(m.buffer)
    }
    for (const wake of this.#room.splice(0)) wake()
  }

  /** The worker failed or ended: every write waiting fails with `err`, and every later one. */
  #stop (err: unknown): void {
    if (this.#failure !== undefined) return
    this.#failure = err instanceof Error ? err : new Error(String(err))
    const failure = this.#failure
    for (const p of this.#pending.slice(this.#head)) p.reject(failure)
    this.#pending = []
    this.#head = 0
    for (const wake of this.#room.splice(0)) wake()
    this.#onClosed?.()
  }
}

/** A failed write as the error to throw: a file that must not be written is refused as unsafe. */
function failure (why: WriteFailure): Error {
  if (why.unsafe !== undefined) return new UnsafeFile(why.unsafe)
  const err = new Error(why.message) as NodeJS.ErrnoException
  if (why.code !== undefined) err.code = why.code
  if (why.syscall !== undefined) err.syscall = why.syscall
  return err
}

/** The worker refused to open a file (a link, not a plain file, another user's, more than one name): `message` says why. */
export class UnsafeFile extends Error {}

/** `path`'s write failed because of what is at `path`, as the error the output reports. */
export function unsafeFile (path: string, err: UnsafeFile): CidgetError {
  return new CidgetError('CIDGET_ERR_UNSAFE_PARTIAL', `Refusing to write ${path}: ${err.message}`, { cause: err })
}
