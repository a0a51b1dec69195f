import { CidgetError } from '../core/errors.js'
import { DEFAULTS } from '../core/defaults.js'
import { freeSpace } from './partial.js'

export interface DiskSpaceInit {
  /** Bytes left free on the file system: the state file and the directory entries need room too. @default DEFAULTS.DISK_RESERVE_BYTES */
  reserve?: number
  /** Bytes written between two looks at the free space, even when the last look left plenty. @default DEFAULTS.DISK_RECHECK_BYTES */
  recheckBytes?: number
}

/**
 * Free space on the file system of one download, checked as bytes arrive: a
 * download stops with CIDGET_ERR_DISK_FULL before it would use the last
 * `reserve` bytes, not when a write fails. `statfs` runs only when the bytes
 * written since the last look could have used up what it showed (or every
 * `recheckBytes`), so checking each write costs almost nothing.
 */
export class DiskSpace {
  readonly #dir: string
  readonly #reserve: number
  readonly #recheck: number
  /** Free bytes at the last look; -1 before the first, Infinity when statfs is unsupported. */
  #free = -1
  /** Bytes written since the last look. */
  #since = 0

  constructor (dir: string, init: DiskSpaceInit = {}) {
    this.#dir = dir
    this.#reserve = init.reserve ?? DEFAULTS.DISK_RESERVE_BYTES
    this.#recheck = init.recheckBytes ?? DEFAULTS.DISK_RECHECK_BYTES
  }

  /** Throws CIDGET_ERR_DISK_FULL unless `needed` more bytes fit, the reserve left aside. */
  async ensure (needed: number): Promise<void> {
    if (needed <= 0) return
    if (this.#free >= 0 && this.#since < this.#recheck && needed <= this.#free - this.#since - this.#reserve) return
    // writes that end while statfs runs may not be in what it shows: they still count after it
    const counted = this.#since
    try {
      this.#free = await freeSpace(this.#dir)
    } catch {
      this.#free = Number.POSITIVE_INFINITY // statfs is unsupported here; the write itself will tell
    }
    this.#since -= counted
    if (needed > this.#free - this.#since - this.#reserve) {
      throw new CidgetError('CIDGET_ERR_DISK_FULL',
        `Not enough space in ${this.#dir}: ${needed} bytes needed, ${this.#free} free (${this.#reserve} kept free)`)
    }
  }

  /** Counts `bytes` written since the last look. */
  wrote (bytes: number): void {
    this.#since += bytes
  }
}
