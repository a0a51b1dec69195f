/**
 * One run of a claimed download: the strategy context built, the strategy of
 * its mode run with a gateway pool of its own, and its outcome written.
 *
 * @module
 */

import { toCidgetError, type CidgetError } from '../core/errors.js'
import type { CidgetEvents, TypedEmitter } from '../core/events.js'
import type { DownloadRecord } from '../core/types.js'
import type { HttpClient } from '../gateways/http.js'
import type { HealthRegistry } from '../gateways/health.js'
import { GatewayPool } from '../gateways/pool.js'
import { RateLimiter } from '../gateways/limiter.js'
import type { ProviderFinder } from '../routing/providers.js'
import type { Store } from '../store/store.js'
import type { StrategyContext } from '../strategies/types.js'
import type { GatewayTotalsBook } from './gateway-totals.js'
import { Journal } from './journal.js'
import { releaseAfterRun } from './lease.js'
import type { Settings } from './options.js'
import { resolveName } from './names.js'
import { recordActive, recordRunFailure, recordSuccess } from './outcome.js'
import { ProgressThrottle, emitStatus } from './progress.js'
import { mustGet, type Running } from './queue.js'
import { strategyFor, type EngineServices } from './strategies.js'

export interface RunnerInit {
  store: Store
  owner: string
  http: HttpClient
  settings: Settings
  events: TypedEmitter<CidgetEvents>
  totals: GatewayTotalsBook
  /** Gateway back-off shared by every download of this process: one that finds a gateway failing spares the next. */
  health: HealthRegistry
  /** Under `service.dir`: throws if the output leads outside it on disk now. */
  checkConfined: (output: string) => Promise<void>
  /** Providers by delegated routing, for the process. */
  providers: ProviderFinder
}

export class Runner {
  readonly #store: Store
  readonly #owner: string
  readonly #http: HttpClient
  readonly #settings: Settings
  readonly #events: TypedEmitter<CidgetEvents>
  readonly #totals: GatewayTotalsBook
  readonly #health: HealthRegistry
  readonly #checkConfined: (output: string) => Promise<void>
  readonly #providers: ProviderFinder

  constructor (init: RunnerInit) {
    this.#providers = init.providers
    this.#store = init.store
    this.#owner = init.owner
    this.#http = init.http
    this.#settings = init.settings
    this.#events = init.events
    this.#totals = init.totals
    this.#health = init.health
    this.#checkConfined = init.checkConfined
  }

  /**
   * Runs the download of `queued` (whose lease this process holds) and writes
   * its outcome; then stops the heartbeat and releases the lease. Never
   * throws; resolves with the record as this run last read it.
   */
  async run (running: Running, queued: DownloadRecord, stopHeartbeat: () => void): Promise<DownloadRecord> {
    const { controller } = running
    const id = queued.id
    const journal = new Journal({ store: this.#store, id, owner: this.#owner, now: this.#settings.now })
    let record = queued
    let progress: ProgressThrottle | undefined
    try {
      record = await mustGet(this.#store, id)
      if (controller.signal.aborted) throw controller.signal.reason
      await this.#checkConfined(record.output)
      if (record.name !== null && record.cid === '') {
        await resolveName({ ...record, name: record.name }, journal, { http: this.#http, settings: this.#settings, events: this.#events, health: this.#health }, controller.signal)
        record = await mustGet(this.#store, id)
      }
      progress = this.#progress(record)
      const { now, sleep } = this.#settings
      running.limiter = new RateLimiter({ rate: record.limitRate ?? undefined, now, sleep })
      const ctx = this.#context(record, journal, running, progress)
      if (record.updateOf !== null) {
        const previous = await this.#store.getDownload(record.updateOf)
        ctx.update = { previous: previous === undefined ? undefined : { cid: previous.cid, path: previous.path } }
      }
      const result = await strategyFor(record.mode)(ctx, this.#services(ctx))
      progress.flush()
      const outcome = await recordSuccess(journal, result)
      emitStatus(this.#events, id, running.status, outcome)
      running.status = outcome.status
    } catch (thrown) {
      progress?.flush()
      const err = controller.signal.aborted ? toCidgetError(controller.signal.reason) : toCidgetError(thrown)
      // without the state (PostgreSQL unreachable), the status cannot be written: the lease then
      // lapses and the download is claimed again, from its durable progress
      await this.#settle(journal, running, record, err).catch(() => {})
    } finally {
      progress?.flush()
      stopHeartbeat()
      await releaseAfterRun(this.#store, id, this.#owner)
    }
    return record
  }

  /** Maps a run's failure onto the record's status. */
  async #settle (journal: Journal, running: Running, record: DownloadRecord, err: CidgetError): Promise<void> {
    const outcome = await recordRunFailure(journal, record, err)
    if (outcome === undefined) return
    emitStatus(this.#events, record.id, running.status, outcome)
    running.status = outcome.status
  }

  #progress (record: DownloadRecord): ProgressThrottle {
    return new ProgressThrottle({
      id: record.id,
      intervalMs: this.#settings.progressIntervalMs,
      startBytes: record.currentSize,
      emit: (e) => { this.#events.emit('cidget:download:progress', e) }
    })
  }

  /** The context a strategy runs one download with. */
  #context (record: DownloadRecord, journal: Journal, running: Running, progress: ProgressThrottle): StrategyContext {
    const id = record.id
    const { policy, now, sleep, random } = this.#settings
    return {
      record,
      journal,
      // the download's own limit on top of the process's: its requests (hedges, runs and tree streams too) pass through both
      http: running.limiter === undefined ? this.#http : this.#http.limited(running.limiter),
      policy,
      signal: running.controller.signal,
      now,
      sleep,
      random,
      gatewayHealth: this.#health,
      setStatus: async (status) => {
        if (status === running.status) return
        const from = running.status
        running.status = status
        // fenced like every write of the run: a run that lost its lease stops here
        emitStatus(this.#events, id, from, await recordActive(journal, status))
      },
      onProgress: (bytes, total, gateway, files, estimate) => { progress.update(bytes, total, gateway, files, estimate) },
      onRetry: (event) => {
        this.#events.emit('cidget:download:retry', { id, ...event })
      }
    }
  }

  /** What the strategy takes from the engine: pools (counted in the gateway totals), limits, the repair event. */
  #services (ctx: StrategyContext): EngineServices {
    const s = this.#settings
    return {
      withPool: async (onBlock, fn) => {
        const pool = this.#pool(ctx, onBlock)
        return await this.#totals.track(pool, async () => await fn(pool))
      },
      limits: s.limits,
      blockConcurrency: s.blockConcurrency,
      runBlocks: s.runBlocks,
      skipSymlinks: s.skipSymlinks,
      checkPath: s.checkPath,
      onRepair: (report) => { this.#events.emit('cidget:download:repaired', { id: ctx.record.id, ...report }) }
    }
  }

  /** A gateway pool for one download: scores and dropped gateways are per download, the back-off is the process's. */
  #pool (ctx: StrategyContext, onBlock: (gateway: string) => void): GatewayPool {
    const id = ctx.record.id
    const pool = this.pool(ctx.record.gateways, {
      block: onBlock,
      retry: (e) => { ctx.onRetry({ ...e, action: 'switch', offset: 0 }) },
      gateway: (e) => { this.#events.emit('cidget:gateway', { id, ...e }) }
    }, ctx.http)
    this.findProviders(pool, ctx.record.cid, ctx.signal, (gateway, router) => {
      this.#events.emit('cidget:gateway', { id, gateway, state: 'added', reason: `a provider of ${ctx.record.cid} found by ${router}` })
    })
    return pool
  }

  /**
   * Asks the routers for providers of `cid` in the background: each one found
   * joins `pool` as it arrives; until the answers are in, a block no gateway
   * has waits for them.
   */
  findProviders (pool: GatewayPool, cid: string, signal: AbortSignal, onAdded: (gateway: string, router: string) => void): void {
    if (this.#settings.providerRouters.length === 0 || cid === '') return
    const lookup = this.#providers.find(cid, (urls, router) => {
      for (const url of pool.addGateways(urls)) onAdded(url, router)
    }, signal)
    lookup.catch(() => {})
    pool.expectGateways(lookup)
  }

  /** A gateway pool over `gateways` with this process's settings and gateway health (a download's, or a stream's that has no record). */
  pool (gateways: string[], on: {
    block: (gateway: string) => void
    retry: (e: { code: string, message: string, systemCode: string | null, gateway: string, delayMs: number }) => void
    gateway: (e: { gateway: string, state: 'dropped' | 'blocked' | 'healthy', reason: string }) => void
  }, http: HttpClient = this.#http): GatewayPool {
    const { policy, now, sleep, random } = this.#settings
    return new GatewayPool({
      gateways,
      http,
      concurrency: this.#settings.blockConcurrency,
      ...(this.#settings.hedgeAfterMs === undefined ? {} : { hedgeAfterMs: this.#settings.hedgeAfterMs }),
      backoff: {
        initialMs: policy.initialBackoffMs,
        multiplier: policy.backoffMultiplier,
        maxMs: policy.maxBackoffMs,
        jitter: policy.backoffJitter,
        random
      },
      maxRetryAfterMs: policy.maxRetryAfterMs,
      now,
      sleep,
      random,
      health: this.#health,
      onEvent: (e) => {
        if (e.type === 'block') on.block(e.gateway)
        else if (e.type === 'retry') on.retry({ code: e.code, message: e.message, systemCode: e.systemCode, gateway: e.gateway, delayMs: e.delayMs })
        else if (e.type === 'gateway') on.gateway({ gateway: e.gateway, state: e.state, reason: e.reason })
      }
    })
  }
}
