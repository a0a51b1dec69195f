/**
 * The waits every part shares: an abortable sleep, a race against an abort
 * signal, and a FIFO semaphore of abortable waiters.
 *
 * @module
 */

/** A wait that rejects with `signal.reason` as soon as `signal` aborts; injectable wherever timing is. */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>

/** Resolves after `ms`; rejects with `signal.reason` as soon as `signal` aborts. */
export async function abortableSleep (ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** `promise`, or a rejection with `signal.reason` as soon as `signal` aborts (the promise itself runs on). */
export async function raceAbort<T> (promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return await promise
  signal.throwIfAborted()
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => { signal.removeEventListener('abort', onAbort); resolve(value) },
      (err: unknown) => { signal.removeEventListener('abort', onAbort); reject(err) }
    )
  })
}

/** Counting semaphore with a FIFO queue of abortable waiters. */
export class Semaphore {
  #free: number
  readonly #queue: Array<{ grant: () => void }> = []

  constructor (permits: number) {
    this.#free = permits
  }

  async acquire (signal: AbortSignal): Promise<void> {
    signal.throwIfAborted()
    if (this.#free > 0 && this.#queue.length === 0) {
      this.#free--
      return
    }
    await new Promise<void>((resolve, reject) => {
      const entry = {
        grant: () => {
          signal.removeEventListener('abort', onAbort)
          resolve()
        }
      }
      const onAbort = (): void => {
        const at = this.#queue.indexOf(entry)
        if (at !== -1) this.#queue.splice(at, 1)
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#queue.push(entry)
    })
    if (signal.aborted) {
      // Granted and aborted in the same turn: hand the permit on.
      this.release()
      throw signal.reason
    }
  }

  tryAcquire (): boolean {
    if (this.#free > 0 && this.#queue.length === 0) {
      this.#free--
      return true
    }
    return false
  }

  release (): void {
    const next = this.#queue.shift()
    if (next !== undefined) next.grant()
    else this.#free++
  }
}
