import { homedir } from 'node:os'
import { join, resolve, dirname, sep } from 'node:path'
import { access, mkdir, rm, stat } from 'node:fs/promises'
import { constants as fsConstants } from 'node:fs'
import { setTimeout as delay } from 'node:timers/promises'
import type { LookupFunction } from 'node:net'
import type { Dispatcher } from 'undici'
import { CidgetError, isCidgetError, toCidgetError, systemCode, fsError } from '../core/errors.js'
import { DEFAULTS, DEFAULT_GATEWAYS } from '../core/defaults.js'
import { DEFAULT_POLICY, type DownloadPolicy } from '../core/policy.js'
import { TypedEmitter, type CidgetEvents, type ProgressEvent } from '../core/events.js'
import { ACTIVE_STATUSES, MODES, type DownloadRecord, type DownloadStatus, type Mode, type NewDownload } from '../core/types.js'
import { parseTarget, defaultName, normalizeGateway } from '../target/parse.js'
import { HttpClient } from '../gateways/http.js'
import { AddressGuard } from '../gateways/address.js'
import { openStore, makeOwnerId } from '../store/index.js'
import type { ListOptions, Store } from '../store/store.js'
import { exists, removePartial } from '../sink/partial.js'
import { checkConfined, confinedOutput, isWithin } from '../sink/confine.js'
import { runPathDownload } from '../strategies/path.js'
import { runVerifiedDownload, DEFAULT_DAG_LIMITS, type DagLimits } from '../strategies/verified/index.js'
import { runCarDownload } from '../strategies/verified/car.js'
import { checkFileAgainstDag, declaredFileSize } from '../strategies/verified/check.js'
import { GatewayPool, type GatewayStats } from '../gateways/pool.js'
import type { StrategyContext, StrategyResult } from '../strategies/types.js'
import { Journal } from './journal.js'

/** Options of `Downloader.open`. Unknown keys are refused. */
export interface DownloaderInit extends Partial<DownloadPolicy> {
  /** SQLite file of the state. @default ~/.cidget/state.db */
  state?: string
  /** A store to use instead of opening `state` (it is closed by `close()`). */
  store?: Store
  /** Gateways (base URLs) for new downloads. @default DEFAULT_GATEWAYS */
  gateways?: string[]
  /** Downloads run at once. @default 4 */
  concurrency?: number
  /** @default 30000 */
  leaseMs?: number
  /** @default 2000 */
  heartbeatMs?: number
  /**
   * How long a pause or cancel of a download another process holds waits for
   * that process to act (at its next heartbeat) before it fails with
   * CIDGET_ERR_LEASE_HELD. @default heartbeatMs × 3 + 10000
   */
  controlWaitMs?: number
  /** Lease owner id. @default host:pid:random */
  owner?: string
  /** Least time between two progress events of one download. @default 100 */
  progressIntervalMs?: number
  /** Verified mode: block requests in flight. @default 16 */
  blockConcurrency?: number
  /**
   * Verified mode: consecutive raw leaves asked for in one CAR request
   * (IPIP-402 entity bytes) from gateways that serve them; 0 or 1: one
   * request per block. @default 16
   */
  runBlocks?: number
  /** Verified mode: hedge a block request after this many ms without an answer (0: never). @default adaptive */
  hedgeAfterMs?: number
  /** Verified mode: limits on the DAG. @default DEFAULT_DAG_LIMITS */
  limits?: Partial<DagLimits>
  /** Verified mode: leave out symlinks that lead outside the output (on disk, through other links too) instead of failing. @default false */
  skipSymlinks?: boolean
  /** Path mode: check the finished file against the CID (inner nodes only) and repair bad ranges. @default true */
  checkPath?: boolean
  /** Pause downloads whose process died (`in_progress` with a dead lease) on open. @default true */
  recover?: boolean
  /** The User-Agent of every request. @default "cidget" */
  userAgent?: string
  /** undici dispatcher for all requests (tests, proxies). `service` does not guard a dispatcher of your own. */
  dispatcher?: Dispatcher
  /**
   * Set by `cidget serve` and `cidget worker`: downloads are named by API
   * clients, who are not trusted with this machine's network. Gateways other
   * than `gateways` (named by a download, by a gateway-URL target, or reached
   * through a redirect) may not connect to loopback, private or link-local
   * addresses, unless `allowLocal`; such a gateway named as an IP literal or
   * `localhost` is refused when the download is added
   * (CIDGET_ERR_ADDRESS_REFUSED). Connection failures are reported without
   * addresses or system error codes. `lookup` replaces DNS for the check (tests).
   * `dir`: the directory clients' outputs are confined to (`cidget serve --dir`,
   * `cidget worker --dir`); a download whose output lies in it is checked on
   * disk again when it starts and before its files are deleted (links on the
   * way may have appeared since it was added): CIDGET_ERR_OUTSIDE_DIR.
   * @default unset: every address, full error details (the CLI: its user is the operator)
   */
  service?: { allowLocal?: boolean, lookup?: LookupFunction, dir?: string }
  /** Clock, sleep and randomness, injectable for tests. */
  now?: () => number
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  random?: () => number
}

const INIT_KEYS = new Set<string>([
  'state', 'store', 'gateways', 'concurrency', 'leaseMs', 'heartbeatMs', 'controlWaitMs', 'owner', 'recover', 'dispatcher', 'service', 'userAgent', 'progressIntervalMs',
  'blockConcurrency', 'runBlocks', 'hedgeAfterMs', 'limits', 'skipSymlinks', 'checkPath',
  'now', 'sleep', 'random', ...Object.keys(DEFAULT_POLICY)
])

/** Options of `add`. */
export interface AddOptions {
  /** Output file path; a directory (existing, or ending in '/') receives the default name. @default ./<name> */
  output?: string
  /** @default 'verified' */
  mode?: Mode
  /** Expected SHA-256 (hex) of the file. */
  sha256?: string
  /** Gateways for this download. @default the Downloader's */
  gateways?: string[]
  /** Overwrite an existing file at the output path. @default false */
  force?: boolean
  /** Higher runs first. @default 0 */
  priority?: number
}

/** One download of `enqueue`. */
export interface QueueItem {
  /** CID, /ipfs/ path, ipfs:// URL or gateway URL. */
  target: string
  /** Relative to the queue's directory; ending in '/': a directory that receives the target's name. @default the target's name */
  output?: string
  /** @default 'verified' */
  mode?: Mode
  sha256?: string
  gateways?: string[]
  /** Higher runs first. @default 0 */
  priority?: number
}

/** A download being worked on by this Downloader. */
export interface DownloadJob {
  readonly id: number
  /** The record when the job was queued. */
  readonly record: DownloadRecord
  /** Resolves with the final record: success, failed, paused or cancelled. Never rejects. */
  readonly done: Promise<DownloadRecord>
}

interface Running {
  controller: AbortController
  done: Promise<DownloadRecord>
  heartbeat: NodeJS.Timeout
  status: DownloadStatus
  progressTimer?: NodeJS.Timeout
  flushProgress?: () => void
}

/**
 * Gateways besides the configured ones whose totals `gatewayStats()` (and so
 * `/api/gateways` and `/metrics`) reports one by one; the rest are summed up
 * in one entry whose url is {@link OTHER_GATEWAYS}.
 */
export const MAX_TRACKED_GATEWAYS = 64
/** The `url` of the entry that sums up the gateways beyond MAX_TRACKED_GATEWAYS. */
export const OTHER_GATEWAYS = 'other'

/** The default state file. */
export function defaultStatePath (): string {
  return join(homedir(), '.cidget', 'state.db')
}

async function abortableSleep (ms: number, signal: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, { signal })
  } catch (err) {
    if (signal.aborted) throw signal.reason
    throw err
  }
}

/**
 * The engine: queues downloads, holds their leases, runs a strategy for each,
 * and maps the outcome onto the record's status. The CLI and the service are
 * thin layers over it.
 */
export class Downloader extends TypedEmitter<CidgetEvents> {
  readonly store: Store
  readonly policy: DownloadPolicy
  readonly owner: string
  readonly #http: HttpClient
  readonly #gateways: string[]
  readonly #guard: AddressGuard | undefined
  /** Clients' outputs stay in this directory (service.dir): checked again on disk before they are written or deleted. */
  readonly #confine: string | undefined
  readonly #concurrency: number
  readonly #leaseMs: number
  readonly #heartbeatMs: number
  readonly #controlWaitMs: number
  readonly #progressIntervalMs: number
  readonly #blockConcurrency: number
  readonly #runBlocks: number | undefined
  readonly #hedgeAfterMs: number | undefined
  readonly #limits: DagLimits
  readonly #skipSymlinks: boolean
  readonly #checkPath: boolean
  readonly #now: () => number
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>
  readonly #random: () => number
  readonly #running = new Map<number, Running>()
  /** Pools of the verified downloads running now, for gatewayStats(). */
  readonly #pools = new Set<GatewayPool>()
  /** Totals of the pools of finished runs, per gateway. */
  readonly #pastStats = new Map<string, GatewayTotals>()
  /** Totals of the gateways left out of #pastStats (least recently used beyond MAX_TRACKED_GATEWAYS). */
  readonly #otherStats: GatewayTotals = emptyTotals(OTHER_GATEWAYS)
  readonly #queue: Array<{ id: number, priority: number, start: () => void }> = []
  #active = 0
  #closed = false

  private constructor (store: Store, init: DownloaderInit) {
    super()
    this.store = store
    const policy: DownloadPolicy = { ...DEFAULT_POLICY }
    for (const k of Object.keys(DEFAULT_POLICY) as Array<keyof DownloadPolicy>) {
      const v = init[k]
      if (v !== undefined) policy[k] = v
    }
    this.policy = policy
    this.owner = init.owner ?? makeOwnerId()
    this.#gateways = (init.gateways ?? [...DEFAULT_GATEWAYS]).map(normalizeGateway)
    this.#concurrency = init.concurrency ?? DEFAULTS.CONCURRENCY
    this.#leaseMs = init.leaseMs ?? DEFAULTS.LEASE_MS
    this.#heartbeatMs = init.heartbeatMs ?? DEFAULTS.HEARTBEAT_MS
    this.#controlWaitMs = init.controlWaitMs ?? this.#heartbeatMs * 3 + 10_000
    this.#progressIntervalMs = init.progressIntervalMs ?? 100
    this.#blockConcurrency = init.blockConcurrency ?? DEFAULTS.BLOCK_CONCURRENCY
    this.#runBlocks = init.runBlocks
    this.#hedgeAfterMs = init.hedgeAfterMs
    this.#limits = { ...DEFAULT_DAG_LIMITS, ...init.limits }
    this.#skipSymlinks = init.skipSymlinks ?? false
    this.#checkPath = init.checkPath ?? true
    this.#now = init.now ?? Date.now
    this.#sleep = init.sleep ?? abortableSleep
    this.#random = init.random ?? Math.random
    this.#confine = init.service?.dir === undefined ? undefined : resolve(init.service.dir)
    this.#guard = init.service === undefined
      ? undefined
      : new AddressGuard({
        trusted: this.#gateways,
        ...(init.service.allowLocal === undefined ? {} : { allowLocal: init.service.allowLocal }),
        ...(init.service.lookup === undefined ? {} : { lookup: init.service.lookup })
      })
    this.#http = new HttpClient({
      timeoutMs: policy.timeoutMs,
      ...(this.#guard === undefined ? {} : { guard: this.#guard, opaqueErrors: true }),
      ...(init.dispatcher === undefined ? {} : { dispatcher: init.dispatcher }),
      ...(init.userAgent === undefined ? {} : { userAgent: init.userAgent })
    })
  }

  /** Opens the state, checks the options, and (by default) recovers downloads of dead processes. */
  static async open (init: DownloaderInit = {}): Promise<Downloader> {
    validateInit(init)
    let store = init.store
    if (store === undefined) {
      const location = init.state ?? defaultStatePath()
      // ~/.cidget is made on first use, private (the state and the service's token live there)
      if (resolve(location) === defaultStatePath()) await mkdir(dirname(location), { recursive: true, mode: 0o700 })
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
      if (!await this.store.claimLease(rec.id, this.owner, this.#leaseMs, this.#now())) continue
      try {
        const now = await this.store.getDownload(rec.id)
        if (now !== undefined && ACTIVE_STATUSES.includes(now.status)) {
          await this.store.markDownloadPaused(rec.id, 'Interrupted: the process working on it stopped', 'CIDGET_ERR_INTERRUPTED')
          this.#emitStatus(rec.id, 'paused', now.status, 'Interrupted: the process working on it stopped', 'CIDGET_ERR_INTERRUPTED')
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
    const mode = opts.mode ?? 'verified'
    if (!MODES.includes(mode)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Unknown mode "${String(mode)}" (verified, path or car)`)
    const sha256 = opts.sha256 === undefined ? null : normalizeSha256(opts.sha256)
    const gateways = opts.gateways !== undefined && opts.gateways.length > 0
      ? opts.gateways.map(normalizeGateway)
      : target.gateway !== undefined && opts.gateways === undefined
        ? dedupe([normalizeGateway(target.gateway), ...this.#gateways])
        : this.#gateways
    this.#checkGateways(gateways)
    const output = await resolveOutput(opts.output, mode === 'car' ? `${defaultName(target)}.car` : defaultName(target))
    await ensureWritableDir(dirname(output))

    const existing = await this.store.findDownload(target.cid, target.path, output)
    if (existing !== undefined) {
      if (existing.status === 'success' && await exists(output)) {
        return { id: existing.id, record: existing, done: Promise.resolve(existing) }
      }
      const patch: Parameters<Store['updateDownload']>[1] = { gateways }
      if (sha256 !== null) patch.expectedSha256 = sha256
      if (existing.status === 'success') {
        // the file was removed since: fetch it again
        Object.assign(patch, { status: 'pending', currentSize: 0, hash: null, completedAt: null })
      }
      await this.store.updateDownload(existing.id, patch, this.#now())
      return await this.#start(existing.id)
    }
    if (opts.force !== true && await exists(output)) {
      throw new CidgetError('CIDGET_ERR_OUTPUT_EXISTS', `${output} already exists; pass --force to overwrite it or choose another path with -o`)
    }
    let record: DownloadRecord
    try {
      record = await this.#create(target, output, mode, gateways, sha256, opts.priority ?? 0)
    } catch (err) {
      // another process created the same download a moment ago: join it (its lease decides who works)
      const raced = err instanceof CidgetError && err.code === 'CIDGET_ERR_OUTPUT_IN_USE'
        ? await this.store.findDownload(target.cid, target.path, output)
        : undefined
      if (raced === undefined || raced.status === 'success') throw err
      return await this.#start(raced.id)
    }
    this.emit('cidget:download:added', record)
    return await this.#start(record.id)
  }

  /** Under `service`: refuses a gateway a client named that is visibly local (the rest is checked as it connects). */
  #checkGateways (gateways: string[]): string[] {
    if (this.#guard !== undefined) for (const g of gateways) this.#guard.checkUrl(g)
    return gateways
  }

  async #create (target: { cid: string, path: string, input: string }, output: string, mode: Mode, gateways: string[],
    sha256: string | null, priority: number): Promise<DownloadRecord> {
    return await this.store.createDownload({
      cid: target.cid,
      path: target.path,
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
        if (this.#running.has(rec.id)) continue
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
    const dir = resolve(opts.dir ?? '.')
    const inits: NewDownload[] = []
    for (const [n, item] of items.entries()) {
      try {
        const target = parseTarget(item.target)
        const mode = item.mode ?? 'verified'
        if (!MODES.includes(mode)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Unknown mode "${String(mode)}" (verified, path or car)`)
        const name = mode === 'car' ? `${defaultName(target)}.car` : defaultName(target)
        const confined = await confinedOutput(dir, item.output)
        const output = confined.endsWith(sep) ? join(confined, name) : confined
        // the default name joined on: the whole output checked again, its partial path included
        if (confined.endsWith(sep)) await checkConfined(dir, output)
        // a queue never overwrites: a file already there is the user's, or another download's
        if (await exists(output)) throw new CidgetError('CIDGET_ERR_OUTPUT_EXISTS', `${output} already exists`)
        inits.push({
          cid: target.cid,
          path: target.path,
          target: target.input,
          output,
          mode,
          gateways: this.#checkGateways(item.gateways !== undefined && item.gateways.length > 0
            ? item.gateways.map(normalizeGateway)
            : target.gateway !== undefined ? dedupe([normalizeGateway(target.gateway), ...this.#gateways]) : this.#gateways),
          expectedSha256: item.sha256 === undefined ? null : normalizeSha256(item.sha256),
          priority: item.priority ?? 0
        })
      } catch (err) {
        const e = toCidgetError(err)
        throw new CidgetError(e.code, `Item ${n + 1} (${JSON.stringify(item.target)}): ${e.message}`, { cause: err })
      }
    }
    const seen = new Map<string, number>()
    for (const [n, init] of inits.entries()) {
      const first = seen.get(init.output)
      if (first !== undefined) {
        throw new CidgetError('CIDGET_ERR_OUTPUT_IN_USE', `Item ${n + 1} (${JSON.stringify(items[n]?.target)}): item ${first + 1} writes to ${init.output} too`)
      }
      seen.set(init.output, n)
    }
    let records: DownloadRecord[]
    try {
      // an unfinished download of the state (queued, running, paused) that writes there already refuses the list
      records = await this.store.createDownloads(inits, this.#now(), { exclusiveOutput: true })
    } catch (err) {
      if (!isCidgetError(err, 'CIDGET_ERR_OUTPUT_IN_USE') || err.output === undefined) throw err
      const n = seen.get(err.output)
      if (n === undefined) throw err
      throw new CidgetError('CIDGET_ERR_OUTPUT_IN_USE', `Item ${n + 1} (${JSON.stringify(items[n]?.target)}): ${err.message}`, { cause: err, output: err.output })
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
    const rec = await this.store.claimNext(this.owner, this.#leaseMs, this.#now(), under === undefined ? {} : { under })
    if (rec === undefined) return undefined
    return await this.#start(rec.id)
  }

  /** Downloads this Downloader runs at once. */
  get concurrency (): number {
    return this.#concurrency
  }

  /** Pauses a download this Downloader runs (progress made durable first) and resolves with its record. */
  async pause (id: number): Promise<DownloadRecord> {
    const running = this.#running.get(id)
    if (running !== undefined) {
      running.controller.abort(new CidgetError('CIDGET_ERR_PAUSED', `Download ${id} paused`))
      return await running.done
    }
    const rec = await this.#mustGet(id)
    if (rec.status === 'pending' || ACTIVE_STATUSES.includes(rec.status)) {
      if (await this.#claimable(id)) {
        try {
          await this.store.markDownloadPaused(id, null, null)
          this.#emitStatus(id, 'paused', rec.status, null, null)
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
    const running = this.#running.get(id)
    if (running !== undefined) {
      running.controller.abort(new CidgetError('CIDGET_ERR_CANCELLED', `Download ${id} cancelled`))
      return await running.done
    }
    const rec = await this.#mustGet(id)
    if (rec.status === 'success' || rec.status === 'cancelled') {
      throw new CidgetError('CIDGET_ERR_INVALID_TRANSITION', `Download ${id} is ${rec.status}; it cannot be cancelled`)
    }
    if (!await this.store.claimLease(id, this.owner, this.#leaseMs, this.#now())) {
      return await this.#ask(id, 'cancel')
    }
    try {
      await removePartial(rec.output)
      await this.store.clearProgress(id)
      await this.store.updateDownload(id, { status: 'cancelled', currentSize: 0, error: null, errorCode: null }, this.#now())
      this.#emitStatus(id, 'cancelled', rec.status, null, null)
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
    const running = this.#running.get(id)
    if (running !== undefined) {
      running.controller.abort(new CidgetError('CIDGET_ERR_CANCELLED', `Download ${id} removed`))
      await running.done
    }
    const rec = await this.#mustGet(id)
    if (!await this.store.claimLease(id, this.owner, this.#leaseMs, this.#now())) {
      throw new CidgetError('CIDGET_ERR_LEASE_HELD', `Download ${id} is being worked on by another process (${rec.leaseOwner ?? '?'})`)
    }
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
    return [...this.#running.keys()]
  }

  /** Pauses what runs (progress durable), then closes the store and the HTTP client. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const pending = [...this.#running.entries()].map(async ([id, r]) => {
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
    await this.store.updateDownload(id, { control: what }, this.#now())
    const deadline = this.#now() + this.#controlWaitMs
    const settled: readonly DownloadStatus[] = what === 'pause' ? ['paused', 'success', 'failed', 'cancelled'] : ['cancelled', 'success', 'failed']
    while (true) {
      const rec = await this.#mustGet(id)
      if (settled.includes(rec.status) && rec.control === null) return rec
      if (rec.leaseOwner === null || rec.leaseExpires === null || rec.leaseExpires < this.#now()) {
        // the holder is gone: act ourselves
        await this.store.updateDownload(id, { control: null }, this.#now())
        return what === 'pause' ? await this.pause(id) : await this.cancel(id)
      }
      if (this.#now() > deadline) {
        throw new CidgetError('CIDGET_ERR_LEASE_HELD', `Download ${id} is held by ${rec.leaseOwner}, which did not act on the ${what} request`)
      }
      await delay(100)
    }
  }

  #checkOpen (): void {
    if (this.#closed) throw new CidgetError('CIDGET_ERR_STATE', 'The downloader is closed')
  }

  async #mustGet (id: number): Promise<DownloadRecord> {
    const rec = await this.store.getDownload(id)
    if (rec === undefined) throw new CidgetError('CIDGET_ERR_UNKNOWN_DOWNLOAD', `No download with id ${id}`)
    return rec
  }

  async #claimable (id: number): Promise<boolean> {
    return await this.store.claimLease(id, this.owner, this.#leaseMs, this.#now())
  }

  #emitStatus (id: number, status: DownloadStatus, previous: DownloadStatus | null, error: string | null, errorCode: string | null): void {
    this.emit('cidget:download:status', { id, status, previous, error, errorCode })
  }

  /** Claims the lease (or throws LEASE_HELD), then queues the run. */
  async #start (id: number): Promise<DownloadJob> {
    const existing = this.#running.get(id)
    const record = await this.#mustGet(id)
    if (existing !== undefined) return { id, record, done: existing.done }
    if (!await this.store.claimLease(id, this.owner, this.#leaseMs, this.#now())) {
      throw new CidgetError('CIDGET_ERR_LEASE_HELD', `Download ${id} is being worked on by another process (${record.leaseOwner ?? '?'})`)
    }
    const controller = new AbortController()
    let renewed = this.#now()
    let lastError = 'no answer from the state'
    const beat = async (): Promise<void> => {
      // Our lease runs out at renewed + leaseMs; past that another process may take the download
      // over. Checked at every beat, also while an earlier renewal still hangs: stop one heartbeat
      // before it (progress is durable).
      if (this.#now() + this.#heartbeatMs >= renewed + this.#leaseMs) {
        controller.abort(new CidgetError('CIDGET_ERR_STATE_UNAVAILABLE',
          `Download ${id} stopped: its lease could not be renewed before it runs out (${lastError})`))
        return
      }
      const at = this.#now()
      let held: boolean
      try {
        held = await this.store.renewLease(id, this.owner, this.#leaseMs, at)
      } catch (err) {
        lastError = toCidgetError(err).message
        throw err
      }
      // the lease lasts from the time the renewal asked for, not from when the answer came
      if (held) renewed = at
      if (!held) {
        controller.abort(new CidgetError('CIDGET_ERR_LEASE_HELD', `Lost the lease of download ${id} to another process`))
        return
      }
      const control = (await this.store.getDownload(id))?.control
      if (control === 'pause') controller.abort(new CidgetError('CIDGET_ERR_PAUSED', `Download ${id} paused by request`))
      if (control === 'cancel') controller.abort(new CidgetError('CIDGET_ERR_CANCELLED', `Download ${id} cancelled by request`))
    }
    const heartbeat = setInterval(() => {
      beat().catch(() => { /* a transient store error: the next beat tries again */ })
    }, this.#heartbeatMs)
    heartbeat.unref()
    let startRun!: () => void
    const slot = new Promise<void>(resolve => { startRun = resolve })
    const running: Running = { controller, heartbeat, status: record.status, done: Promise.resolve(record) }
    running.done = (async () => {
      await slot
      return await this.#run(id, running, record)
    })()
    this.#running.set(id, running)
    this.#queue.push({ id, priority: record.priority, start: startRun })
    this.#queue.sort((a, b) => b.priority - a.priority || a.id - b.id)
    this.#pump()
    return { id, record, done: running.done }
  }

  #pump (): void {
    while (this.#active < this.#concurrency && this.#queue.length > 0) {
      const next = this.#queue.shift()
      if (next === undefined) break
      this.#active++
      next.start()
    }
  }

  async #run (id: number, running: Running, queued: DownloadRecord): Promise<DownloadRecord> {
    const { controller } = running
    let record = queued
    try {
      record = await this.#mustGet(id)
      if (controller.signal.aborted) throw controller.signal.reason
      await this.#checkConfined(record.output)
      const ctx = this.#context(record, running)
      const result = record.mode === 'path' ? await this.#path(ctx) : await this.#verified(ctx)
      running.flushProgress?.()
      await this.store.updateDownload(id, { gateway: result.gateway, control: null }, this.#now())
      await this.store.markDownloadSuccess(id, result.hash, result.size, this.#now())
      this.#emitStatus(id, 'success', running.status, null, null)
      running.status = 'success'
    } catch (thrown) {
      running.flushProgress?.()
      const err = controller.signal.aborted ? toCidgetError(controller.signal.reason) : toCidgetError(thrown)
      // without the state (PostgreSQL unreachable), the status cannot be written: the lease then
      // lapses and the download is claimed again, from its durable progress
      await this.#settle(id, running, record, err).catch(() => {})
    } finally {
      running.flushProgress?.()
      clearInterval(running.heartbeat)
      // once more if the first try fails (a dropped connection is replaced by then); else the lease runs out
      await this.store.releaseLease(id, this.owner).catch(async () => { await this.store.releaseLease(id, this.owner) }).catch(() => {})
      this.#running.delete(id)
      this.#active--
      this.#pump()
    }
    try {
      return await this.#mustGet(id)
    } catch {
      // the state cannot be read just now: the record as this run last knew it
      return { ...record, status: running.status }
    }
  }

  /**
   * Health of every gateway this Downloader knows (its list and those of running
   * downloads): request, error and byte totals over all downloads so far, and
   * the latency, throughput and state seen by the downloads running now.
   */
  gatewayStats (): GatewayTotals[] {
    const ops = new Set(this.#gateways)
    const out = new Map<string, GatewayTotals>()
    const add = (t: GatewayTotals): void => {
      const o = out.get(t.url)
      if (o === undefined) { out.set(t.url, { ...t }); return }
      addCounts(o, t)
      o.inFlight += t.inFlight
      o.dropped ||= t.dropped
      o.blockedUntil = Math.max(o.blockedUntil, t.blockedUntil)
    }
    // the operator's gateways, then the others most recent first: running downloads' ones, then finished ones newest first
    for (const url of this.#gateways) add(emptyTotals(url))
    for (const pool of this.#pools) for (const s of pool.stats()) add(totalsOf(s))
    for (const t of [...this.#pastStats.values()].reverse()) add({ ...t, inFlight: 0, dropped: false, blockedUntil: 0 })
    // gateways clients named are many and unbounded: beyond MAX_TRACKED_GATEWAYS they are one "other" entry
    const result: GatewayTotals[] = []
    let others = 0
    const other = { ...this.#otherStats, inFlight: 0, dropped: false, blockedUntil: 0 }
    for (const t of out.values()) {
      if (ops.has(t.url) || others++ < MAX_TRACKED_GATEWAYS) {
        result.push(t)
      } else {
        addCounts(other, t)
        other.inFlight += t.inFlight
      }
    }
    if (other.requests > 0 || other.inFlight > 0 || others > MAX_TRACKED_GATEWAYS) result.push(other)
    return result
  }

  /** A gateway pool for one download: scores and dropped gateways are per download. */
  #pool (ctx: StrategyContext, onBlock: (gateway: string) => void): GatewayPool {
    return new GatewayPool({
      gateways: ctx.record.gateways,
      http: this.#http,
      concurrency: this.#blockConcurrency,
      ...(this.#hedgeAfterMs === undefined ? {} : { hedgeAfterMs: this.#hedgeAfterMs }),
      backoff: {
        initialMs: this.policy.initialBackoffMs,
        multiplier: this.policy.backoffMultiplier,
        maxMs: this.policy.maxBackoffMs,
        jitter: this.policy.backoffJitter,
        random: this.#random
      },
      maxRetryAfterMs: this.policy.maxRetryAfterMs,
      now: this.#now,
      sleep: this.#sleep,
      random: this.#random,
      onEvent: (e) => {
        if (e.type === 'block') onBlock(e.gateway)
        else if (e.type === 'retry') {
          ctx.onRetry({ code: e.code, message: e.message, gateway: e.gateway, action: 'switch', offset: 0, delayMs: e.delayMs })
        } else if (e.type === 'gateway') {
          this.emit('cidget:gateway', { id: ctx.record.id, gateway: e.gateway, state: e.state, reason: e.reason })
        }
      }
    })
  }

  /** Runs `fn` with `pool` counted in gatewayStats(); its totals are kept when it is done. */
  async #withPool<T> (pool: GatewayPool, fn: () => Promise<T>): Promise<T> {
    this.#pools.add(pool)
    try {
      return await fn()
    } finally {
      this.#pools.delete(pool)
      for (const s of pool.stats()) {
        const past = this.#pastStats.get(s.url) ?? emptyTotals(s.url)
        addCounts(past, totalsOf(s))
        // most recently used last (a Map keeps insertion order): the first one is the least recently used
        this.#pastStats.delete(s.url)
        this.#pastStats.set(s.url, past)
      }
      this.#boundPastStats()
    }
  }

  /**
   * Keeps the totals of at most MAX_TRACKED_GATEWAYS gateways besides the
   * operator's: the least recently used ones are added into one "other" entry,
   * so that clients naming ever new gateways cannot grow memory or /metrics.
   */
  #boundPastStats (): void {
    const ops = new Set(this.#gateways)
    let extra = 0
    for (const url of this.#pastStats.keys()) if (!ops.has(url)) extra++
    for (const [url, t] of this.#pastStats) {
      if (extra <= MAX_TRACKED_GATEWAYS) break
      if (ops.has(url)) continue
      addCounts(this.#otherStats, t)
      this.#pastStats.delete(url)
      extra--
    }
  }

  /** Path mode; the finished file is checked against the CID through a pool of the same gateways. */
  async #path (ctx: StrategyContext): Promise<StrategyResult> {
    if (!this.#checkPath) return await runPathDownload(ctx)
    const pool = this.#pool(ctx, () => {})
    const dag = {
      cid: ctx.record.cid,
      path: ctx.record.path,
      journal: ctx.journal,
      blocks: pool,
      limits: this.#limits,
      signal: ctx.signal,
      concurrency: this.#blockConcurrency
    }
    return await this.#withPool(pool, async () => await runPathDownload({
      ...ctx,
      checkAgainstCid: async (file, size) => await checkFileAgainstDag(file, size, dag),
      declaredSize: async () => await declaredFileSize(dag),
      onRepair: (report) => { this.emit('cidget:download:repaired', { id: ctx.record.id, ...report }) }
    }))
  }

  /** Verified mode (files or CAR), with a gateway pool of its own. */
  async #verified (ctx: StrategyContext): Promise<StrategyResult> {
    // the status lifecycle (pending → in_progress | resuming) holds for verified runs too; path mode sets it per request
    await ctx.setStatus(ctx.record.currentSize > 0 ? 'resuming' : 'in_progress')
    let lastGateway: string | null = null
    const pool = this.#pool(ctx, (gateway) => { lastGateway = gateway })
    const vctx = {
      ...ctx,
      blocks: pool,
      limits: this.#limits,
      skipSymlinks: this.#skipSymlinks,
      concurrency: this.#blockConcurrency,
      ...(this.#runBlocks === undefined ? {} : { runBlocks: this.#runBlocks }),
      // two runs per gateway keep every gateway busy while each run's last bytes arrive
      runsAhead: Math.max(4, 2 * ctx.record.gateways.length),
      runSpread: ctx.record.gateways.length,
      lastGateway: () => lastGateway
    }
    return await this.#withPool(pool, async () => ctx.record.mode === 'car' ? await runCarDownload(vctx) : await runVerifiedDownload(vctx))
  }

  /** Maps a run's failure onto the record's status. */
  async #settle (id: number, running: Running, record: DownloadRecord, err: CidgetError): Promise<void> {
    const from = running.status
    // another process owns it now: its status is not ours to write (a pause or cancel asked for stays asked)
    if (err.code === 'CIDGET_ERR_LEASE_HELD') return
    // not the download's fault: it stays as it is (its progress is durable), and once the lease
    // is released here, or has run out, the queue hands it out again
    if (err.code === 'CIDGET_ERR_STATE_UNAVAILABLE') return
    // a run that went on past the end of its lease (the process was stopped, the machine starved)
    // may have lost the download to another process meanwhile: then neither its failure nor a pause
    // or cancel of it is ours to write (a cancel would delete the partial data the other one uses)
    if ((await this.store.getDownload(id))?.leaseOwner !== this.owner) return
    await this.store.updateDownload(id, { control: null }, this.#now())
    switch (err.code) {
      case 'CIDGET_ERR_CANCELLED':
        await removePartial(record.output).catch(() => {})
        await this.store.clearProgress(id).catch(() => {})
        await this.store.updateDownload(id, { status: 'cancelled', currentSize: 0, error: null, errorCode: null }, this.#now())
        this.#emitStatus(id, 'cancelled', from, null, null)
        running.status = 'cancelled'
        return
      case 'CIDGET_ERR_PAUSED':
        await this.store.markDownloadPaused(id, null, null)
        this.#emitStatus(id, 'paused', from, null, null)
        running.status = 'paused'
        return
      case 'CIDGET_ERR_INTERRUPTED':
      case 'CIDGET_ERR_DISK_FULL':
        // INTERRUPTED: paused by a shutdown, not by a person (`resumeAll({ interruptedOnly: true })` and the queue pick it up)
        await this.store.markDownloadPaused(id, err.message, err.code)
        this.#emitStatus(id, 'paused', from, err.message, err.code)
        running.status = 'paused'
        return
      default:
        await this.store.markDownloadFailed(id, err.message, err.code)
        this.#emitStatus(id, 'failed', from, err.message, err.code)
        running.status = 'failed'
    }
  }

  #context (record: DownloadRecord, running: Running): StrategyContext {
    const id = record.id
    // Progress is for people: throttled on the wall clock, with a trailing event so the last value is never lost.
    const interval = this.#progressIntervalMs
    let lastEmit = 0
    let lastBytes = -1
    let lastFiles: number | null = null
    let speed = 0
    let speedAt = performance.now()
    let speedBytes = 0
    let pending: ProgressEvent | undefined
    const flush = (): void => {
      if (running.progressTimer !== undefined) clearTimeout(running.progressTimer)
      running.progressTimer = undefined
      if (pending === undefined) return
      const e = pending
      pending = undefined
      lastEmit = performance.now()
      this.emit('cidget:download:progress', e)
    }
    running.flushProgress = flush
    return {
      record,
      journal: new Journal({ store: this.store, id, owner: this.owner, now: this.#now }),
      http: this.#http,
      policy: this.policy,
      signal: running.controller.signal,
      now: this.#now,
      sleep: this.#sleep,
      random: this.#random,
      setStatus: async (status) => {
        if (status === running.status) return
        const from = running.status
        running.status = status
        // fenced like the journal's writes: a run that lost its lease stops here
        await this.store.updateDownload(id, { status, error: null, errorCode: null }, this.#now(), this.owner)
        this.#emitStatus(id, status, from, null, null)
      },
      onProgress: (bytes, total, gateway, files) => {
        const now = performance.now()
        if (bytes < speedBytes) { speedBytes = bytes; speedAt = now }
        const dt = now - speedAt
        if (dt >= 250) {
          const inst = (bytes - speedBytes) * 1000 / dt
          speed = speed === 0 ? inst : speed * 0.7 + inst * 0.3
          speedAt = now
          speedBytes = bytes
        }
        if (bytes === lastBytes && (files ?? null) === lastFiles) return
        lastBytes = bytes
        lastFiles = files ?? null
        pending = { id, bytes, total, speed, gateway, files: files ?? null }
        const done = total !== null && bytes >= total
        if (done || now - lastEmit >= interval) {
          flush()
        } else if (running.progressTimer === undefined) {
          running.progressTimer = setTimeout(flush, interval - (now - lastEmit))
          running.progressTimer.unref()
        }
      },
      onRetry: (event) => {
        this.emit('cidget:download:retry', { id, ...event })
      }
    }
  }
}

/**
 * One gateway's health as `gatewayStats()` reports it: the pool's stats without
 * the per-download ranking fields.
 */
export type GatewayTotals = Omit<GatewayStats, 'notFound' | 'reliability'>

function emptyTotals (url: string): GatewayTotals {
  return { url, requests: 0, successes: 0, errors: 0, invalidBlocks: 0, bytes: 0, inFlight: 0, latencyMs: 0, throughputBps: 0, dropped: false, blockedUntil: 0 }
}

function totalsOf ({ notFound: _n, reliability: _r, ...totals }: GatewayStats): GatewayTotals {
  return totals
}

/** Adds `from`'s counts to `into`; latency and throughput take the newest measurement. */
function addCounts (into: GatewayTotals, from: GatewayTotals): void {
  into.requests += from.requests
  into.successes += from.successes
  into.errors += from.errors
  into.invalidBlocks += from.invalidBlocks
  into.bytes += from.bytes
  if (from.latencyMs > 0) into.latencyMs = from.latencyMs
  if (from.throughputBps > 0) into.throughputBps = from.throughputBps
}

function validateInit (init: DownloaderInit): void {
  for (const key of Object.keys(init)) {
    if (!INIT_KEYS.has(key)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Unknown Downloader option "${key}"`)
  }
  const positive = (name: string, v: number | undefined, min = 0): void => {
    if (v !== undefined && (!Number.isFinite(v) || v < min)) {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Option ${name} must be a number ≥ ${min}, got ${String(v)}`)
    }
  }
  for (const k of Object.keys(DEFAULT_POLICY) as Array<keyof DownloadPolicy>) positive(k, init[k])
  positive('timeoutMs', init.timeoutMs, 1)
  positive('concurrency', init.concurrency, 1)
  positive('leaseMs', init.leaseMs, 1)
  positive('heartbeatMs', init.heartbeatMs, 1)
  positive('controlWaitMs', init.controlWaitMs)
  if (init.runBlocks !== undefined && !(Number.isSafeInteger(init.runBlocks) && init.runBlocks >= 0)) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Option runBlocks must be a whole number ≥ 0, got ${String(init.runBlocks)}`)
  }
  if (init.resumeThreshold !== undefined && init.resumeThreshold > 1) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'Option resumeThreshold must be between 0 and 1')
  }
  if (init.gateways !== undefined && init.gateways.length === 0) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'At least one gateway is needed')
  }
}

function normalizeSha256 (hex: string): string {
  const h = hex.trim().toLowerCase()
  if (!/^[0-9a-f]{64}$/.test(h)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--sha256 must be 64 hex digits, got "${hex}"`)
  return h
}

function dedupe (list: string[]): string[] {
  return [...new Set(list)]
}

/** Creates `dir` if needed and checks that files can be created in it. */
async function ensureWritableDir (dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
    await access(dir, fsConstants.W_OK)
  } catch (err) {
    const code = systemCode(err)
    const why = code === 'EROFS' ? 'read-only file system' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'ENOTDIR' || code === 'EEXIST' ? 'a parent is not a directory' : (err as Error).message
    throw new CidgetError('CIDGET_ERR_OUTPUT_NOT_WRITABLE', `Cannot write to ${dir}: ${why}`, { cause: err })
  }
}

/** The absolute output path: `output` as given, or `name` inside it when it is a directory. */
async function resolveOutput (output: string | undefined, name: string): Promise<string> {
  if (output === undefined || output === '') return resolve(name)
  if (output.endsWith('/')) return resolve(output, name)
  try {
    if ((await stat(output)).isDirectory()) return resolve(output, name)
  } catch (err) {
    if (systemCode(err) !== 'ENOENT' && systemCode(err) !== 'ENOTDIR') throw toCidgetError(err)
  }
  return resolve(output)
}
