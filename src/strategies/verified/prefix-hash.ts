import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'

/**
 * SHA-256 of a file whose pieces arrive out of order: pieces are hashed as soon
 * as they extend the hashed prefix; later ones wait in memory up to `budget`
 * bytes. What could not wait (over budget, or written by an earlier run) is read
 * back from disk at the end, from the first gap on. A download that arrives
 * roughly in order is hashed without reading the file again.
 */
export class PrefixHasher {
  readonly #hash: Hash = createHash('sha256')
  readonly #waiting = new Map<number, Uint8Array>()
  readonly #budget: number
  #next = 0
  #waitingBytes = 0
  #gap = false // a piece was dropped: the rest comes from disk

  constructor (budget: number) {
    this.#budget = budget
  }

  /** A piece of the file at `offset` (already written there). */
  add (offset: number, data: Uint8Array): void {
    if (this.#gap || data.byteLength === 0 || offset < this.#next) return
    if (offset > this.#next) {
      if (this.#waitingBytes + data.byteLength > this.#budget) {
        this.#gap = true
        return
      }
      this.#waiting.set(offset, data)
      this.#waitingBytes += data.byteLength
      return
    }
    this.#hash.update(data)
    this.#next += data.byteLength
    for (let piece = this.#waiting.get(this.#next); piece !== undefined; piece = this.#waiting.get(this.#next)) {
      this.#waiting.delete(this.#next)
      this.#waitingBytes -= piece.byteLength
      this.#hash.update(piece)
      this.#next += piece.byteLength
    }
  }

  /** Bytes hashed without reading the file. */
  get hashedInMemory (): number {
    return this.#next
  }

  /** The hex digest of the file at `path` of `size` bytes, reading from disk what was not hashed yet. */
  async digest (path: string, size: number, signal: AbortSignal): Promise<string> {
    this.#waiting.clear()
    if (this.#next < size) {
      for await (const chunk of createReadStream(path, { start: this.#next, highWaterMark: 1 << 20, signal })) this.#hash.update(chunk as Buffer)
    }
    return this.#hash.digest('hex')
  }
}
