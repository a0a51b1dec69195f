/**
 * The engine's façade: the Downloader the CLI, the service and the library
 * use. It keeps the public API and wires the parts: options (options.ts), what
 * goes into the queue (intake.ts), claiming and the run queue (queue.ts), leases
 * and control requests (lease.ts), one run (run.ts, strategies by mode in
 * strategies.ts), outcomes (outcome.ts), events (progress.ts), gateway totals.
 *
 * @module
 */

import { resolve, dirname, sep } from 'node:path'
import { rm } from 'node:fs/promises'
import { makeDirs } from '../sink/dirs.js'
import { CidgetError, fsError } from '../core/errors.js'
import { TypedEmitter, type CidgetEvents } from '../core/events.js'
import type { DownloadPolicy } from '../core/policy.js'
import { ACTIVE_STATUSES, type DownloadRecord, type Mode } from '../core/types.js'
import { parseTarget, normalizeGateway } from '../target/parse.js'
import { HttpClient } from '../gateways/http.js'
import { olderRecord, resolveNow, updateOf, type UpdateAdd, type UpdateTo } from './names.js'
import type { AddressGuard } from '../gateways/address.js'
import { RateLimiter } from '../gateways/limiter.js'
import { ProviderFinder } from '../routing/providers.js'
import { openStore, makeOwnerId } from '../store/index.js'
import type { ListOptions, Store } from '../store/store.js'
import { exists, removePartial } from '../sink/partial.js'
import { checkConfined, isWithin } from '../sink/confine.js'
import { checkRate, defaultStatePath, healthRegistry, resolveSettings, serviceGuard, validateInit, type AddOptions, type DownloaderInit, type DownloadJob, type QueueItem, type Settings } from './options.js'
import { checkMode, dedupe, ensureWritableDir, nameQueueError, normalizeSha256, outputName, planQueue, resolveOutput } from './intake.js'
import { RunQueue, claimOrThrow, mustGet } from './queue.js'
import { askHolder, startHeartbeat, type LeaseInit } from './lease.js'
import { recordCancelled, recordPaused } from './outcome.js'
import { emitStatus } from './progress.js'
import { GatewayTotalsBook, type GatewayTotals } from './gateway-totals.js'
import { Journal } from './journal.js'
import { Runner } from './run.js'
import { streamTarget, type StreamOptions, type StreamOutcome } from './stream.js'

export { defaultStatePath } from './options.js'
export type { AddOptions, DownloaderInit, DownloadJob, QueueItem } from './options.js'
export { MAX_TRACKED_GATEWAYS, OTHER_GATEWAYS } from './gateway-totals.js'
export type { GatewayTotals } from './gateway-totals.js'

/**
 * The engine: queues downloads, holds their leases, runs a strategy for each,
 * and maps the outcome onto the record's status. The CLI and the service are
 * thin layers over it.
 */
export class Downloader extends TypedEmitter<CidgetEvents> {  readonly store: Store
  readonly policy: DownloadPolicy
  readonly owner: string
  readonly #settings: Settings
  readonly #http: HttpClient
  /** The process's bandwidth limit, shared by every request. */
  readonly #limiter: RateLimiter
  readonly #guard: AddressGuard | undefined
  /** Clients' outputs stay in this directory (service.dir): checked again on disk before they are written or deleted. */
  readonly #confine: string | undefined
  readonly #queue: RunQueue
  readonly #totals: GatewayTotalsBook
  readonly #runner: Runner
  #closed = false

  private constructor (store: Store, init: DownloaderInit) {
    super()
    this.store = store
    const settings = resolveSettings(init)
    this.#settings = settings
    this.policy = settings.policy
    this.owner = init.owner ?? makeOwnerId()
    this.#confine = init.service?.dir === undefined ? undefined : resolve(init.service.dir)
    this.#guard = serviceGuard(init, settings)
    this.#limiter = new RateLimiter({ rate: settings.limitRate, now: settings.now, sleep: settings.sleep })
    this.#http = new HttpClient({
      timeoutMs: settings.policy.timeoutMs,
      limiters: [this.#limiter],
      ...(this.#guard === undefined ? {} : { guard: this.#guard, opaqueErrors: true }),
      ...(init.dispatcher === undefined ? {} : { dispatcher: init.dispatcher }),
      ...(settings.proxy === undefined ? {} : { proxy: settings.proxy }),
      ...(init.userAgent === undefined ? {} : { userAgent: init.userAgent })
    })
    this.#queue = new RunQueue(settings.concurrency)
    this.#totals = new GatewayTotalsBook(settings.gateways)
    this.#runner = new Runner({
      store,
      owner: this.owner,
      http: this.#http,
      settings,
      events: this,
      totals: this.#totals,
      health: healthRegistry(settings),
      providers: new ProviderFinder({ http: this.#http, routers: settings.providerRouters, allowLocal: settings.allowLocalProviders, now: settings.now }),
      checkConfined: async (output) => { await this.#checkConfined(output) }
    })
  }

  /** Opens the state, checks the options, and (by default) recovers downloads of dead processes. */
  static async open (init: DownloaderInit = {}): Promise<Downloader> {
    validateInit(init)
    let store = init.store
    if (store === undefined) {
      const location = init.state ?? defaultStatePath()
      // ~/.cidget is made on first use, private (the state and the service's token live there)
      if (resolve(location) === defaultStatePath()) await makeDirs(dirname(location), 0o700)
      store = await openStore(location)
    }
    const dl = new Downloader(store, init)
    if (init.recover !== false) await dl.recover()
    return dl
  }

  /**
   * Crash recovery: an `in_progress`/`resuming` download whose owner is dead or
   * whose lease expired is marked `paused` (CIDGET_ERR_INTERRUPTED), ready for
   * `resume`. Returns the recovered ids.
   */
  async recover (): Promise<number[]> {
    const out: number[] = []
    for (const rec of await this.store.listOrphaned(this.#now())) {
      if (!await this.#claim(rec.id)) continue
      try {
        const now = await this.store.getDownload(rec.id)
        if (now !== undefined && ACTIVE_STATUSES.includes(now.status)) {
          const outcome = await recordPaused(this.#journal(rec.id), 'Interrupted: the process working on it stopped', 'CIDGET_ERR_INTERRUPTED')
          emitStatus(this, rec.id, now.status, outcome)
          out.push(rec.id)
        }
      } finally {
        await this.store.releaseLease(rec.id, this.owner)
      }
    }
    return out
  }

  /**
   * Starts (or continues) a download. Adding a target whose earlier download to
   * the same output is unfinished resumes that one; a finished one whose file
   * is still there is returned as it is.
   */
  async add (targetText: string, opts: AddOptions = {}): Promise<DownloadJob> {
    this.#checkOpen()
    const target = parseTarget(targetText)
    checkRate(opts.limitRate, 'limitRate')
    const mode = opts.mode ?? 'verified'
    checkMode(mode)
    const sha256 = opts.sha256 === undefined ? null : normalizeSha256(opts.sha256)
    const gateways = opts.gateways !== undefined && opts.gateways.length > 0
      ? opts.gateways.map(normalizeGateway)
      : target.gateway !== undefined && opts.gateways === undefined
        ? dedupe([normalizeGateway(target.gateway), ...this.#settings.gateways])
        : this.#settings.gateways
    this.#checkGateways(gateways)
    const findAt = async (at: string): Promise<DownloadRecord | undefined> => target.name !== undefined
      ? await this.store.findNamedDownload(target.name, at)
      : await this.store.findDownload(target.cid, target.path, at)
    // `-o dir` naming the output of an earlier download (of this target, or a finished one of another: an update) means
    // that output, not a new one inside it; `-o dir/` always means inside
    const given = opts.output === undefined || opts.output === '' || opts.output.endsWith('/') ? undefined : resolve(opts.output)
    const output = given !== undefined && (await findAt(given) !== undefined || await this.store.findDoneByOutput(given) !== undefined)
      ? given
      : await resolveOutput(opts.output, outputName(target, mode))
    await ensureWritableDir(dirname(output))

    const find = async (): Promise<DownloadRecord | undefined> => await findAt(output)
    const existing = await find()
    if (existing !== undefined && !(existing.status === 'success' && target.name !== undefined && opts.force === true)) {
      if (existing.status === 'success' && await exists(output)) {
        // what the output holds now: this download's version, or a later update's (of another target)
        const current = await this.store.findDoneByOutput(output) ?? existing
        const now = target.name === undefined
          ? { cid: target.cid, path: target.path, sequence: null, validity: null, resolvedAt: null }
          : await resolveNow(target.name, gateways, this.#http, this.#settings)
        if ((now.cid === current.cid && now.path === current.path) || (target.name !== undefined && olderRecord(current, target.name, now))) {
          return { id: current.id, record: current, done: Promise.resolve(current) }
        }
        return await this.#update(current, now, { target, output, mode, gateways, sha256, priority: opts.priority ?? 0 }, opts.limitRate)
      }
      const patch: Parameters<Store['updateDownload']>[1] = { gateways }
      if (sha256 !== null) patch.expectedSha256 = sha256
      if (existing.status === 'success') {
        // the file was removed since: fetch it again (a name: as it resolves now)
        Object.assign(patch, { status: 'pending', currentSize: 0, hash: null, completedAt: null })
        if (existing.name !== null) Object.assign(patch, { cid: '', path: '', nameSequence: null, nameValidity: null, nameResolvedAt: null })
      }
      await this.store.updateDownload(existing.id, patch, this.#now())
      return await this.#start(existing.id, opts.limitRate)
    }
    if (opts.force !== true && await exists(output)) {
      // the output of an earlier download, finished: brought to this CID's version (a name's is found above)
      const before = target.name === undefined ? await this.store.findDoneByOutput(output) : undefined
      if (before !== undefined) {
        const now = { cid: target.cid, path: target.path, sequence: null, validity: null, resolvedAt: null }
        return await this.#update(before, now, { target, output, mode, gateways, sha256, priority: opts.priority ?? 0 }, opts.limitRate)
      }
      throw new CidgetError('CIDGET_ERR_OUTPUT_EXISTS', `${output} already exists; pass --force to overwrite it or choose another path with -o`)
    }
    let record: DownloadRecord
    try {
      record = await this.#create(target, output, mode, gateways, sha256, opts.priority ?? 0)
    } catch (err) {
      // another process created the same download a moment ago: join it (its lease decides who works)
      const raced = err instanceof CidgetError && err.code === 'CIDGET_ERR_OUTPUT_IN_USE' ? await find() : undefined
      if (raced === undefined || raced.status === 'success') throw err
      return await this.#start(raced.id, opts.limitRate)
    }
    this.emit('cidget:download:added', record)
    return await this.#start(record.id, opts.limitRate)
  }

  /**
   * The verified bytes of the file `target` names, in order, to `opts.write`:
   * nothing on disk, nothing in the state, not resumable (`cidget get … -o -`).
   */
  async stream (target: string, opts: StreamOptions): Promise<StreamOutcome> {
    this.#checkOpen()
    return await streamTarget({ http: this.#http, settings: this.#settings, runner: this.#runner, checkGateways: (g) => this.#checkGateways(g) }, target, opts)
  }

  /** Under `service`: refuses a gateway a client named that is visibly local (the rest is checked as it connects). */
  #checkGateways (gateways: string[]): string[] {
    if (this.#guard !== undefined) for (const g of gateways) this.#guard.checkUrl(g)
    return gateways
  }

  /** An update of `done`'s output to `now` (see {@link updateOf}). */
  async #update (done: DownloadRecord, now: UpdateTo, add: UpdateAdd, limitRate?: number): Promise<DownloadJob> {
    const record = await this.store.createDownload(updateOf(done, now, add), this.#now(), { exclusiveOutput: true })
    this.emit('cidget:download:added', record)
    return await this.#start(record.id, limitRate)
  }

  async #create (target: { cid: string, path: string, name?: string, input: string }, output: string, mode: Mode, gateways: string[],
    sha256: string | null, priority: number): Promise<DownloadRecord> {
    return await this.store.createDownload({
      cid: target.cid,
      path: target.path,
      name: target.name ?? null,
      target: target.input,
      output,
      mode,
      gateways,
      expectedSha256: sha256,
      priority
    }, this.#now(), { exclusiveOutput: true })
  }

  /** Continues a paused, failed, pending or interrupted download. */
  async resume (id: number): Promise<DownloadJob> {
    this.#checkOpen()
    const rec = await this.#mustGet(id)
    if (rec.status === 'success' || rec.status === 'cancelled') {
      throw new CidgetError('CIDGET_ERR_INVALID_TRANSITION', `Download ${id} is ${rec.status}; it cannot be resumed`)
    }
    return await this.#start(id)
  }

  /**
   * Resumes every paused and pending download (after recovering interrupted
   * ones), or with `interruptedOnly` only those a crash or a shutdown stopped
   * (and pending ones), leaving what a person paused alone. Skips downloads
   * another process holds.
   */
  async resumeAll (opts: { interruptedOnly?: boolean } = {}): Promise<DownloadJob[]> {
    this.#checkOpen()
    await this.recover()
    const jobs: DownloadJob[] = []
    for (const status of ['paused', 'pending'] as const) {
      for (const rec of await this.store.getDownloadsByStatus(status)) {
        if (this.#queue.has(rec.id)) continue
        if (opts.interruptedOnly === true && status === 'paused' && rec.errorCode !== 'CIDGET_ERR_INTERRUPTED') continue
        try {
          jobs.push(await this.#start(rec.id))
        } catch (err) {
          if (err instanceof CidgetError && err.code === 'CIDGET_ERR_LEASE_HELD') continue
          throw err
        }
      }
    }
    return jobs
  }

  /**
   * Queues downloads without starting them (status `pending`), all in one
   * transaction: for a queue that workers drain (`claimNext`). Each output is
   * relative to `dir` (default: the current directory) and must stay inside it;
   * none given: the target's name. Nothing is queued if one item is invalid
   * (CIDGET_ERR_BAD_TARGET, CIDGET_ERR_BAD_OPTION, CIDGET_ERR_OUTSIDE_DIR name
   * the item by its 1-based number).
   */
  async enqueue (items: readonly QueueItem[], opts: { dir?: string } = {}): Promise<DownloadRecord[]> {
    this.#checkOpen()
    const defaults = this.#settings.gateways
    const plan = await planQueue(items, resolve(opts.dir ?? '.'), (item, target) => this.#checkGateways(
      item.gateways !== undefined && item.gateways.length > 0
        ? item.gateways.map(normalizeGateway)
        : target.gateway !== undefined ? dedupe([normalizeGateway(target.gateway), ...defaults]) : defaults))
    let records: DownloadRecord[]
    try {
      // an unfinished download of the state (queued, running, paused) that writes there already refuses the list
      records = await this.store.createDownloads(plan.downloads, this.#now(), { exclusiveOutput: true })
    } catch (err) {
      throw nameQueueError(err, plan, items)
    }
    for (const r of records) this.emit('cidget:download:added', r)
    return records
  }

  /**
   * Takes the next download of the shared queue (highest priority, then the
   * oldest; see `Store.claimNext`) and starts it here; undefined when nothing
   * is claimable now. With `under`, only downloads whose output is inside that
   * directory. A fleet worker calls this whenever it has room.
   */
  async claimNext (opts: { under?: string } = {}): Promise<DownloadJob | undefined> {
    this.#checkOpen()
    const under = opts.under === undefined ? undefined : resolve(opts.under) + sep
    const rec = await this.store.claimNext(this.owner, this.#settings.leaseMs, this.#now(), under === undefined ? {} : { under })
    if (rec === undefined) return undefined
    return await this.#start(rec.id)
  }

  /** Downloads this Downloader runs at once. */
  get concurrency (): number {
    return this.#queue.concurrency
  }

  /** The process's bandwidth limit in bytes per second, shared by all its downloads; undefined: none. */
  get limitRate (): number | undefined {
    return this.#limiter.rate
  }

  /** Changes the process's limit (undefined: none): the bytes read from now on follow it. */
  setLimitRate (rate: number | undefined): void {
    this.#limiter.setRate(checkRate(rate, 'limitRate'))
  }

  /** Sets a download's own limit (null: none), recorded, and at once while it runs here; resolves with its record. */
  async setDownloadLimit (id: number, rate: number | null): Promise<DownloadRecord> {
    await this.#mustGet(id)
    await this.store.updateDownload(id, { limitRate: checkRate(rate ?? undefined, 'limitRate') ?? null }, this.#now())
    this.#queue.get(id)?.limiter?.setRate(rate ?? undefined)
    return await this.#mustGet(id)
  }

  /** Pauses a download this Downloader runs (progress made durable first) and resolves with its record. */
  async pause (id: number): Promise<DownloadRecord> {
    const running = this.#queue.get(id)
    if (running !== undefined) {
      running.controller.abort(new CidgetError('CIDGET_ERR_PAUSED', `Download ${id} paused`))
      return await running.done
    }
    const rec = await this.#mustGet(id)
    if (rec.status === 'pending' || ACTIVE_STATUSES.includes(rec.status)) {
      if (await this.#claim(id)) {
        try {
          emitStatus(this, id, rec.status, await recordPaused(this.#journal(id), null, null))
        } finally {
          await this.store.releaseLease(id, this.owner)
        }
        return await this.#mustGet(id)
      }
      return await this.#ask(id, 'pause')
    }
    if (rec.status === 'paused') return rec
    throw new CidgetError('CIDGET_ERR_INVALID_TRANSITION', `Download ${id} is ${rec.status}; it cannot be paused`)
  }

  /** Cancels a download: status `cancelled`, partial data deleted. */
  async cancel (id: number): Promise<DownloadRecord> {
    const running = this.#queue.get(id)
    if (running !== undefined) {
      running.controller.abort(new CidgetError('CIDGET_ERR_CANCELLED', `Download ${id} cancelled`))
      return await running.done
    }
    const rec = await this.#mustGet(id)
    if (rec.status === 'success' || rec.status === 'cancelled') {
      throw new CidgetError('CIDGET_ERR_INVALID_TRANSITION', `Download ${id} is ${rec.status}; it cannot be cancelled`)
    }
    if (!await this.#claim(id)) {
      return await this.#ask(id, 'cancel')
    }
    try {
      emitStatus(this, id, rec.status, await recordCancelled(this.#journal(id), rec.output, false))
    } finally {
      await this.store.releaseLease(id, this.owner)
    }
    return await this.#mustGet(id)
  }

  /** Under `service.dir`: an output in that directory must still lead nowhere else on disk (CIDGET_ERR_OUTSIDE_DIR). */
  async #checkConfined (output: string): Promise<void> {
    if (this.#confine !== undefined && isWithin(this.#confine, output)) await checkConfined(this.#confine, output, false)
  }

  /** Deletes the record and its partial data; `deleteFile` also deletes a finished output. */
  async remove (id: number, opts: { deleteFile?: boolean } = {}): Promise<void> {
    const running = this.#queue.get(id)
    if (running !== undefined) {
      running.controller.abort(new CidgetError('CIDGET_ERR_CANCELLED', `Download ${id} removed`))
      await running.done
    }
    const rec = await this.#mustGet(id)
    await claimOrThrow(this.#lease(), rec)
    await this.#checkConfined(rec.output)
    await removePartial(rec.output)
    if (opts.deleteFile === true && rec.status === 'success') {
      // a directory download's output is its tree (rm removes a link itself, never what it points to)
      await rm(rec.output, { force: true, recursive: true }).catch((err: unknown) => { throw fsError(err, `delete ${rec.output}`) })
    }
    await this.store.deleteDownload(id)
  }

  async get (id: number): Promise<DownloadRecord | undefined> {
    return await this.store.getDownload(id)
  }

  async list (opts: ListOptions = {}): Promise<DownloadRecord[]> {
    return await this.store.listDownloads(opts)
  }

  /** Jobs this Downloader is running or has queued. */
  get runningIds (): number[] {
    return this.#queue.ids()
  }

  /**
   * Health of every gateway this Downloader knows (its list and those of running
   * downloads): request, error and byte totals over all downloads so far, and
   * the latency, throughput and state seen by the downloads running now.
   */
  gatewayStats (): GatewayTotals[] {
    return this.#totals.stats()
  }

  /** Pauses what runs (progress durable), then closes the store and the HTTP client. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const pending = this.#queue.entries().map(async ([id, r]) => {
      r.controller.abort(new CidgetError('CIDGET_ERR_INTERRUPTED', `Download ${id} paused: the process shut down`))
      await r.done
    })
    await Promise.all(pending)
    await this.#http.close()
    await this.store.close()
  }

  /**
   * Asks the process holding the lease to pause or cancel (it acts at its next
   * heartbeat) and waits until it has. Throws LEASE_HELD if it does not answer.
   */
  async #ask (id: number, what: 'pause' | 'cancel'): Promise<DownloadRecord> {
    const init = { store: this.store, now: this.#now, waitMs: this.#settings.controlWaitMs, get: async (id: number) => await this.#mustGet(id) }
    const rec = await askHolder(init, id, what)
    if (rec !== undefined) return rec
    // the holder is gone: act ourselves
    return what === 'pause' ? await this.pause(id) : await this.cancel(id)
  }

  #checkOpen (): void {
    if (this.#closed) throw new CidgetError('CIDGET_ERR_STATE', 'The downloader is closed')
  }

  get #now (): () => number {
    return this.#settings.now
  }

  async #mustGet (id: number): Promise<DownloadRecord> {
    return await mustGet(this.store, id)
  }

  #lease (): LeaseInit {
    return { store: this.store, owner: this.owner, leaseMs: this.#settings.leaseMs, now: this.#now }
  }

  /** The record of a download whose lease this process holds, written through its journal (fenced on that lease). */
  #journal (id: number): Journal {
    return new Journal({ store: this.store, id, owner: this.owner, now: this.#now })
  }

  async #claim (id: number): Promise<boolean> {
    return await this.store.claimLease(id, this.owner, this.#settings.leaseMs, this.#now())
  }

  /** Claims the lease (or throws LEASE_HELD), starts its heartbeat, then queues the run. */
  async #start (id: number, limitRate?: number): Promise<DownloadJob> {
    // a download's own limit given with it (add): recorded before it runs
    if (limitRate !== undefined) await this.setDownloadLimit(id, limitRate)
    const existing = this.#queue.get(id)
    const record = await this.#mustGet(id)
    if (existing !== undefined) return { id, record, done: existing.done }
    await claimOrThrow(this.#lease(), record)
    const controller = new AbortController()
    const stopHeartbeat = startHeartbeat({ ...this.#lease(), id, heartbeatMs: this.#settings.heartbeatMs, controller })
    const running = this.#queue.add(record, controller,
      async (running) => await this.#runner.run(running, record, stopHeartbeat),
      async (id) => await this.#mustGet(id))
    return { id, record, done: running.done }
  }
}
