import type { StrategyContext } from '../types.js'

/**
 * The writes a verified or CAR run makes to its download's record, each in
 * one method: the run's progress (a bitmap of durable blocks and their
 * bytes), a restart from zero, the size and the hash it learns. Inner blocks
 * are kept by the reader (reader.ts).
 */
export class RunRecord {
  readonly #ctx: Pick<StrategyContext, 'record' | 'store' | 'owner'>

  constructor (ctx: Pick<StrategyContext, 'record' | 'store' | 'owner'>) {
    this.#ctx = ctx
  }

  get #id (): number {
    return this.#ctx.record.id
  }

  /** The progress an earlier run recorded, if any. */
  async progress (): Promise<Uint8Array | undefined> {
    return await this.#ctx.store.getProgress(this.#id)
  }

  /** Records `blocks` (a bitmap) and `bytes` as durable: called only after they are fsynced. */
  async checkpoint (blocks: Uint8Array, bytes: number): Promise<void> {
    await this.#ctx.store.saveProgress(this.#id, blocks, bytes, this.#ctx.owner)
  }

  /** Forgets the progress (its data is gone), with `why` as the record's message when given. */
  async restart (why?: string): Promise<void> {
    await this.#ctx.store.clearProgress(this.#id)
    await this.#ctx.store.updateDownload(this.#id, why === undefined ? { currentSize: 0 } : { currentSize: 0, error: why, errorCode: null })
  }

  /** Forgets the progress alone. */
  async forget (): Promise<void> {
    await this.#ctx.store.clearProgress(this.#id)
  }

  /** The size the content declares. */
  async size (size: number): Promise<void> {
    await this.#ctx.store.updateDownload(this.#id, { size })
  }

  /** The finished output's SHA-256 (and size), recorded before it is renamed into place. */
  async hash (hash: string, size?: number): Promise<void> {
    await this.#ctx.store.updateDownload(this.#id, size === undefined ? { hash } : { hash, size })
  }
}
