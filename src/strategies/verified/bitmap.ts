/** A growable set of small non-negative integers, stored as bytes (bit i of byte i>>3). */
export class Bitmap {
  #bytes: Uint8Array

  constructor (bytes?: Uint8Array) {
    this.#bytes = bytes === undefined ? new Uint8Array(0) : new Uint8Array(bytes)
  }

  has (i: number): boolean {
    const byte = this.#bytes[i >> 3]
    return byte !== undefined && (byte & (1 << (i & 7))) !== 0
  }

  add (i: number): void {
    const at = i >> 3
    if (at >= this.#bytes.length) {
      const grown = new Uint8Array(Math.max(at + 1, this.#bytes.length * 2))
      grown.set(this.#bytes)
      this.#bytes = grown
    }
    this.#bytes[at] = (this.#bytes[at] as number) | (1 << (i & 7))
  }

  /** Adds every number of `other`. */
  union (other: Bitmap): void {
    const theirs = other.#bytes
    if (theirs.length > this.#bytes.length) {
      const grown = new Uint8Array(theirs.length)
      grown.set(this.#bytes)
      this.#bytes = grown
    }
    for (let i = 0; i < theirs.length; i++) this.#bytes[i] = (this.#bytes[i] as number) | (theirs[i] as number)
  }

  /** Number of set bits. */
  get count (): number {
    let n = 0
    for (const b of this.#bytes) {
      let v = b
      while (v !== 0) { v &= v - 1; n++ }
    }
    return n
  }

  /** The largest number in the set; -1 when it is empty. */
  last (): number {
    for (let at = this.#bytes.length - 1; at >= 0; at--) {
      const byte = this.#bytes[at] as number
      if (byte !== 0) return at * 8 + 31 - Math.clz32(byte)
    }
    return -1
  }

  /** The bytes without trailing zero bytes (compact to store). */
  toBytes (): Uint8Array {
    let end = this.#bytes.length
    while (end > 0 && this.#bytes[end - 1] === 0) end--
    return this.#bytes.slice(0, end)
  }
}
