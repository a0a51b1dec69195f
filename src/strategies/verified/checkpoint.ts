import type { Bitmap } from './bitmap.js'

export interface CheckpointsInit {
  /** Blocks durable and recorded: those of each checkpoint are added. */
  done: Bitmap
  /** Bytes durable and recorded so far. */
  durable: number
  /** A checkpoint is due once this many bytes are written, or this long after the last one. */
  syncIntervalBytes: number
  syncIntervalMs: number
  now: () => number
  /** Makes what was written durable (fsync). */
  sync: () => Promise<void>
  /** Records the durable blocks and bytes. */
  record: (blocks: Uint8Array, bytes: number) => Promise<void>
  /** Aborted when the download stops: no checkpoint is started after. */
  signal: AbortSignal
  /** A checkpoint that fails in the background stops the download with its error. */
  fail: (err: unknown) => void
}

/**
 * The checkpoints of a verified walk: blocks written are fsynced, then
 * recorded (only durable blocks enter the bitmap), one checkpoint at a time.
 * Writers do not wait for them: fetching goes on while a checkpoint runs.
 */
export class Checkpoints {
  readonly #init: CheckpointsInit
  #durable: number
  #pending: number[] = []
  #pendingBytes = 0
  #last: number
  #running: Promise<void> | undefined
  #timer: NodeJS.Timeout | undefined

  constructor (init: CheckpointsInit) {
    this.#init = init
    this.#durable = init.durable
    this.#last = init.now()
  }

  /** Bytes durable and recorded. */
  get durable (): number {
    return this.#durable
  }

  /** Block `i` of `bytes` bytes is written (not yet durable). */
  written (i: number, bytes: number): void {
    this.#pending.push(i)
    this.#pendingBytes += bytes
    if (this.#running === undefined) {
      if (this.#pendingBytes >= this.#init.syncIntervalBytes || this.#init.now() - this.#last >= this.#init.syncIntervalMs) this.#start().catch(this.#init.fail)
      else this.#later()
    }
  }

  /** Waits for the checkpoint under way, then records what is pending; `always`: records even when nothing is. */
  async checkpoint (always = false): Promise<void> {
    while (this.#running !== undefined) await this.#running.catch(() => {})
    if (this.#pending.length > 0 || always) await this.#start()
  }

  /** No checkpoint is started later by the timer (one may still be asked for). */
  stop (): void {
    clearTimeout(this.#timer)
  }

  #start (): Promise<void> {
    const batch = this.#pending
    const bytes = this.#pendingBytes
    this.#pending = []
    this.#pendingBytes = 0
    this.#last = this.#init.now()
    const run = (async () => {
      try {
        await this.#init.sync()
        for (const i of batch) this.#init.done.add(i)
        this.#durable += bytes
        await this.#init.record(this.#init.done.toBytes(), this.#durable)
      } finally {
        this.#running = undefined
      }
      // blocks written meanwhile: due now, or within the interval even if no write follows (a stall)
      if (this.#pending.length > 0 && !this.#init.signal.aborted) {
        if (this.#pendingBytes >= this.#init.syncIntervalBytes) this.#start().catch(this.#init.fail)
        else this.#later()
      }
    })()
    this.#running = run
    return run
  }

  #later (): void {
    if (this.#timer !== undefined) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      if (this.#running === undefined && this.#pending.length > 0 && !this.#init.signal.aborted) this.#start().catch(this.#init.fail)
    }, this.#init.syncIntervalMs)
    this.#timer.unref()
  }
}
