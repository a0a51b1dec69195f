/**
 * One block from the pool's gateways: retried on another gateway within the
 * block's attempt budget, and hedged on a second gateway when the one asked
 * is slow. (The pool shares one such fetch between the callers of a block.)
 *
 * @module
 */

import type { CID } from 'multiformats/cid'
import { CidgetError, systemCode } from '../core/errors.js'
import { blame } from '../core/retry.js'
import { fetchRawBlock } from './block.js'
import type { Gateway } from './gateway.js'
import { WOKEN, asError, type PoolBase } from './pool-base.js'

/** The state of fetching one block, shared by its attempts. */
export interface BlockFetch {
  cid: CID
  id: string
  signal: AbortSignal
  /** Gateways that answered 404/410 for this block. */
  notFound: Set<Gateway>
  failures: number
  lastError: CidgetError | undefined
  /** The error the retry policy ends the fetch with once its attempts are spent. */
  spent: CidgetError | undefined
  running: Set<Attempt>
}

interface Attempt {
  gateway: Gateway
  controller: AbortController
  startedAt: number
  /** When to hedge this attempt if it is still the only one in flight. */
  hedgeAt: number | undefined
  done: Promise<AttemptResult>
}

type AttemptResult =
  | { attempt: Attempt, ok: true, bytes: Uint8Array, ms: number }
  | { attempt: Attempt, ok: false, aborted: boolean, error: CidgetError }

const HEDGE = 'hedge' as const

/** Fetches single blocks with retries and hedging, on the pool's gateways and permits. */
export class BlockFetcher {
  readonly #base: PoolBase

  constructor (base: PoolBase) {
    this.#base = base
  }

  /** A verified block: each failed attempt is retried (elsewhere, see `blockFetchEnd` and decideRetry), a slow one hedged. `lastError`: a failure seen before, named if the fetch fails. */
  async fetch (cid: CID, signal: AbortSignal, lastError?: CidgetError): Promise<Uint8Array> {
    const block: BlockFetch = {
      cid,
      id: cid.toString(),
      signal,
      notFound: new Set(),
      failures: 0,
      lastError,
      spent: undefined,
      running: new Set()
    }
    let onAbort: (() => void) | undefined
    const aborted = new Promise<never>((_resolve, reject) => {
      if (signal.aborted) reject(signal.reason)
      else {
        onAbort = () => reject(signal.reason)
        signal.addEventListener('abort', onAbort, { once: true })
      }
    })
    aborted.catch(() => {})
    try {
      for (;;) {
        if (block.running.size === 0) block.running.add(await this.#start(block))
        const hedge = this.#armHedge(block)
        let result: AttemptResult | typeof HEDGE
        try {
          result = await Promise.race([aborted, hedge.promise, ...[...block.running].map(async (a) => await a.done)])
        } finally {
          hedge.cancel()
        }
        if (result === HEDGE) {
          this.#hedge(block)
          continue
        }
        block.running.delete(result.attempt)
        if (result.ok) return result.bytes
        if (result.aborted) {
          signal.throwIfAborted()
          continue
        }
        this.#failed(block, result.attempt.gateway, result.error)
      }
    } finally {
      // one listener per block on a signal shared by the whole download: remove it, or they pile up
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
      for (const attempt of block.running) attempt.controller.abort(signal.aborted ? signal.reason : new Error('another gateway delivered the block first'))
    }
  }

  /** Waits for a gateway and a permit, then sends a request. Throws when the block cannot be had. */
  async #start (block: BlockFetch): Promise<Attempt> {
    for (;;) {
      const terminal = this.#terminal(block)
      if (terminal !== undefined && terminal !== block.spent && this.#base.expecting) {
        // no gateway has it, but providers are being looked up: wait for them
        await this.#base.awaitMore(block.signal)
        continue
      }
      if (terminal !== undefined) throw terminal
      await this.#base.permits.acquire(block.signal)
      const choice = this.#base.selector.pick(this.#base.now(), this.#candidates(block))
      if (choice?.waitMs === 0) return this.#launch(block, choice.gateway)
      this.#base.permits.release()
      await this.#base.waitForChange(choice === undefined ? undefined : choice.gateway.blockedUntil, block.signal)
    }
  }

  /** A second request on another gateway, if one is free now (never waits, never jumps the permit queue). */
  #hedge (block: BlockFetch): void {
    const [lone] = block.running
    if (lone === undefined || block.running.size !== 1 || this.#terminal(block) !== undefined) return
    if (this.#base.permits.tryAcquire()) {
      const gateway = this.#base.selector.best(this.#base.now(), this.#candidates(block))
      if (gateway !== undefined) {
        const attempt = this.#launch(block, gateway)
        block.running.add(attempt)
        this.#base.emit({ type: 'hedge', cid: block.id, from: lone.gateway.url, to: gateway.url })
        return
      }
      this.#base.permits.release()
    }
    // Nothing free: look again after another hedge delay.
    const delay = this.#base.hedgeDelay()
    lone.hedgeAt = delay === undefined ? undefined : this.#base.now() + delay
  }

  #armHedge (block: BlockFetch): { promise: Promise<typeof HEDGE>, cancel: () => void } {
    const never = { promise: new Promise<typeof HEDGE>(() => {}), cancel: () => {} }
    const [lone] = block.running
    if (lone === undefined || block.running.size !== 1) return never
    if (lone.hedgeAt === undefined) {
      const delay = this.#base.hedgeDelay()
      if (delay === undefined) return never
      lone.hedgeAt = lone.startedAt + delay
    }
    // Another gateway that could take a hedge must exist at all, or the timer would spin.
    if (!this.#base.gateways.some((g) => g !== lone.gateway && !g.dropped && !block.notFound.has(g))) return never
    const controller = new AbortController()
    const promise = this.#base.sleep(Math.max(0, lone.hedgeAt - this.#base.now()), controller.signal)
      .then(() => HEDGE, async () => await new Promise<typeof HEDGE>(() => {}))
    return { promise, cancel: () => controller.abort(WOKEN) }
  }

  /** Sends one request; the attempt owns one permit until it ends. */
  #launch (block: BlockFetch, gateway: Gateway): Attempt {
    const controller = new AbortController()
    const onAbort = (): void => controller.abort(block.signal.reason)
    if (block.signal.aborted) onAbort()
    else block.signal.addEventListener('abort', onAbort, { once: true })
    gateway.inFlight++
    gateway.requests++
    // The callbacks below run after `attempt` is assigned: a promise never settles synchronously.
    const done = fetchRawBlock(this.#base.http, gateway.url, block.cid, {
      signal: controller.signal,
      maxBytes: this.#base.maxBlockBytes,
      maxRetryAfterMs: this.#base.maxRetryAfterMs
    }).then(
      ({ bytes, ms }): AttemptResult => {
        this.#succeeded(block, gateway, bytes, ms)
        return { attempt, ok: true, bytes, ms }
      },
      (err: unknown): AttemptResult => {
        if (controller.signal.aborted) return { attempt, ok: false, aborted: true, error: asError(err, gateway.url) }
        const error = asError(err, gateway.url)
        this.#record(block, gateway, error)
        return { attempt, ok: false, aborted: false, error }
      }
    ).finally(() => {
      gateway.inFlight--
      block.signal.removeEventListener('abort', onAbort)
      this.#base.permits.release()
      this.#base.wake()
    })
    const attempt: Attempt = { gateway, controller, startedAt: this.#base.now(), hedgeAt: undefined, done }
    return attempt
  }

  #succeeded (block: BlockFetch, gateway: Gateway, bytes: Uint8Array, ms: number): void {
    this.#base.delivered(gateway, block.id, bytes.length, ms)
  }

  /** Scores a failed request against its gateway as the retry policy decides (runs even when the block's fetch has moved on). */
  #record (block: BlockFetch, gateway: Gateway, error: CidgetError): void {
    const decision = this.#base.penalize(gateway, error, block.id)
    if (decision.gateway === 'skip') {
      // it lacks this block; it may well have the others
      gateway.missing()
      block.notFound.add(gateway)
    }
  }

  /** Counts a failed attempt of this block as the retry policy decides, and announces the retry. */
  #failed (block: BlockFetch, gateway: Gateway, error: CidgetError): void {
    const decision = this.#base.decide(gateway, error, block.id, block.failures)
    // failing with the failure itself (a malformed DAG): no gateway can do better
    if (decision.action === 'fail' && decision.error === error) throw error
    block.failures++
    block.lastError = error
    // attempts spent: the fetch ends once none is in flight (one still running may deliver)
    block.spent = decision.action === 'fail' ? decision.error : undefined
    // The next loop turn either waits on the attempt still running or starts one (#start throws when the budget is spent).
    if (block.running.size === 0 && this.#terminal(block) !== undefined) return
    this.#base.emit({ type: 'retry', cid: block.id, gateway: gateway.url, code: error.code, message: error.message, systemCode: systemCode(error) ?? null, delayMs: block.running.size > 0 ? 0 : this.#base.selector.waitEstimate(this.#base.now(), this.#candidates(block)) })
  }

  /** The error that ends this block's fetch, if it is over. */
  #terminal (block: BlockFetch): CidgetError | undefined {
    return blockFetchEnd(block, this.#base.gateways)
  }

  /** Not dropped, not known to lack the block, not already asked for it right now. */
  #candidates (block: BlockFetch): Gateway[] {
    const busy = new Set([...block.running].map((a) => a.gateway))
    return this.#base.gateways.filter((g) => !g.dropped && !block.notFound.has(g) && !busy.has(g))
  }
}

/**
 * The end of the fetch of a block, or undefined to try again (on a gateway
 * chosen then): over when no gateway is left that may have the block (each
 * dropped or answered 404), else when the retry policy found its attempts
 * spent (`spent`). The first is read before each attempt, not decided on a
 * failure: gateways are dropped by other blocks' failures too.
 */
export function blockFetchEnd (block: Pick<BlockFetch, 'id' | 'lastError' | 'notFound' | 'spent'>, gateways: readonly Gateway[]): CidgetError | undefined {
  const { id, lastError } = block
  if (!gateways.some((g) => !g.dropped && !block.notFound.has(g))) {
    const last = lastError === undefined ? '' : ` (last error: ${lastError.message})`
    const cause = lastError === undefined ? {} : { cause: lastError }
    if (block.notFound.size === gateways.length) {
      return new CidgetError('CIDGET_ERR_NOT_FOUND', `No gateway has block ${id}: all ${gateways.length} answered 404`, { ...cause, status: 404 })
    }
    const dropped = gateways.filter((g) => g.dropped).length
    // every gateway left sent a block over the limit (or a wrong one): that is the answer, not "unavailable"
    if (lastError !== undefined && blame({ error: lastError, phase: 'transfer', received: 0 }) === 'invalid' && block.notFound.size === 0) {
      return new CidgetError(lastError.code, `No gateway delivered a valid block ${id}: ${dropped} dropped${last}`, cause)
    }
    return new CidgetError('CIDGET_ERR_BLOCK_UNAVAILABLE', `No gateway can deliver block ${id}: ${dropped} dropped for invalid blocks, ${block.notFound.size} answered 404${last}`, cause)
  }
  return block.spent
}
