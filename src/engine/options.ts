/**
 * The Downloader's options: their types, the check that refuses unknown or
 * out-of-range ones, and the settings they resolve to.
 *
 * @module
 */

import { homedir } from 'node:os'
import { join } from 'node:path'
import type { LookupFunction } from 'node:net'
import type { Dispatcher } from 'undici'
import { CidgetError } from '../core/errors.js'
import { DEFAULTS, DEFAULT_DNS_RESOLVERS, DEFAULT_GATEWAYS, DEFAULT_ROUTERS } from '../core/defaults.js'
import { abortableSleep } from '../core/async.js'
import { DEFAULT_POLICY, type DownloadPolicy } from '../core/policy.js'
import type { DownloadRecord, Mode } from '../core/types.js'
import { normalizeGateway } from '../target/parse.js'
import { checkProxyUrl, type ProxySettings } from '../gateways/proxy.js'
import { HealthRegistry } from '../gateways/health.js'
import { AddressGuard } from '../gateways/address.js'
import { SYSTEM_RESOLVER } from '../names/dnslink.js'
import type { Store } from '../store/store.js'
import { DEFAULT_DAG_LIMITS, type DagLimits } from '../strategies/verified/index.js'

/** Options of `Downloader.open`. Unknown keys are refused. */
export interface DownloaderInit extends Partial<DownloadPolicy> {
  /** SQLite file of the state. @default ~/.cidget/state.db */
  state?: string
  /** A store to use instead of opening `state` (it is closed by `close()`). */
  store?: Store
  /** Gateways (base URLs) for new downloads. @default DEFAULT_GATEWAYS */
  gateways?: string[]
  /** Delegated routers asked for the IPNS records of names (besides the download's gateways); [] for none. @default DEFAULT_ROUTERS */
  routers?: string[]
  /** DNS-over-HTTPS endpoints (JSON API) asked in order for DNSLink, or `system` for the system resolver. @default DEFAULT_DNS_RESOLVERS */
  dnsResolvers?: string[]
  /** Names: once one valid IPNS record arrived, how long other sources may still send a newer one. @default 1500 */
  nameSettleMs?: number
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
   * request per block, and no CAR requests at all (a tree's subtrees are not
   * streamed whole either). @default 16
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
  /**
   * Sends every request (gateways, routers, DNS-over-HTTPS) through an HTTP
   * proxy: one URL for all, or one per kind of target with the hosts that
   * bypass it (`resolveProxy()` reads them from the environment as the CLI
   * does). Not applied to a `dispatcher` of your own. @default none: direct
   */
  proxy?: string | ProxySettings
  /**
   * Verified and CAR modes: also ask the `routers` for providers of each
   * download's CID that serve the trustless gateway protocol over HTTP, and
   * fetch from them too. @default true
   */
  routing?: boolean
  /** Keep providers found by routing whose addresses are loopback, private or link-local. @default false (`service.allowLocal` sets it) */
  allowLocalProviders?: boolean
  /** Bandwidth limit of the whole process in bytes per second, shared by all its downloads (hedges, runs and streams counted); `setLimitRate` changes it. @default none */
  limitRate?: number
  /** undici dispatcher for all requests (tests). `service` does not guard a dispatcher of your own. */
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
  'state', 'store', 'gateways', 'routers', 'dnsResolvers', 'nameSettleMs', 'concurrency', 'leaseMs', 'heartbeatMs', 'controlWaitMs', 'owner', 'recover', 'dispatcher', 'proxy', 'limitRate', 'routing', 'allowLocalProviders', 'service', 'userAgent', 'progressIntervalMs',
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
  /** This download's own bandwidth limit in bytes per second (on top of the process's), recorded with it. @default none */
  limitRate?: number
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

/** The default state file. */
export function defaultStatePath (): string {
  return join(homedir(), '.cidget', 'state.db')
}

export function validateInit (init: DownloaderInit): void {
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
  positive('nameSettleMs', init.nameSettleMs)
  if (init.runBlocks !== undefined && !(Number.isSafeInteger(init.runBlocks) && init.runBlocks >= 0)) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Option runBlocks must be a whole number ≥ 0, got ${String(init.runBlocks)}`)
  }
  for (const [k, v] of Object.entries(init.limits ?? {}) as Array<[string, unknown]>) {
    if (!(k in DEFAULT_DAG_LIMITS)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Unknown limit "${k}"`)
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 1)) {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Option limits.${k} must be a positive integer, got ${String(v)}`)
    }
  }
  if (init.resumeThreshold !== undefined && init.resumeThreshold > 1) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'Option resumeThreshold must be between 0 and 1')
  }
  if (init.gateways !== undefined && init.gateways.length === 0) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'At least one gateway is needed')
  }
}

/** What the options resolve to, defaults filled in. */
export interface Settings {
  policy: DownloadPolicy
  gateways: string[]
  routers: string[]
  dnsResolvers: string[]
  nameSettleMs: number | undefined
  proxy: ProxySettings | undefined
  limitRate: number | undefined
  /** Routers asked for providers (none: routing off). */
  providerRouters: string[]
  allowLocalProviders: boolean
  concurrency: number
  leaseMs: number
  heartbeatMs: number
  controlWaitMs: number
  progressIntervalMs: number
  blockConcurrency: number
  runBlocks: number | undefined
  hedgeAfterMs: number | undefined
  limits: DagLimits
  skipSymlinks: boolean
  checkPath: boolean
  now: () => number
  sleep: (ms: number, signal: AbortSignal) => Promise<void>
  random: () => number
}

export function resolveSettings (init: DownloaderInit): Settings {
  const policy: DownloadPolicy = { ...DEFAULT_POLICY }
  for (const k of Object.keys(DEFAULT_POLICY) as Array<keyof DownloadPolicy>) {
    const v = init[k]
    if (v !== undefined) policy[k] = v
  }
  const heartbeatMs = init.heartbeatMs ?? DEFAULTS.HEARTBEAT_MS
  return {
    policy,
    gateways: (init.gateways ?? [...DEFAULT_GATEWAYS]).map(normalizeGateway),
    routers: (init.routers ?? [...DEFAULT_ROUTERS]).map((r) => normalizeEndpoint(r, 'router')),
    dnsResolvers: (init.dnsResolvers ?? [...DEFAULT_DNS_RESOLVERS]).map((r) => r === SYSTEM_RESOLVER ? r : normalizeEndpoint(r, 'DNS resolver')),
    nameSettleMs: init.nameSettleMs,
    proxy: proxySettings(init.proxy),
    limitRate: checkRate(init.limitRate, 'limitRate'),
    providerRouters: init.routing === false ? [] : (init.routers ?? [...DEFAULT_ROUTERS]).map((r) => normalizeEndpoint(r, 'router')),
    allowLocalProviders: init.allowLocalProviders ?? init.service?.allowLocal ?? false,
    concurrency: init.concurrency ?? DEFAULTS.CONCURRENCY,
    leaseMs: init.leaseMs ?? DEFAULTS.LEASE_MS,
    heartbeatMs,
    controlWaitMs: init.controlWaitMs ?? heartbeatMs * 3 + 10_000,
    progressIntervalMs: init.progressIntervalMs ?? 100,
    blockConcurrency: init.blockConcurrency ?? DEFAULTS.BLOCK_CONCURRENCY,
    runBlocks: init.runBlocks,
    hedgeAfterMs: init.hedgeAfterMs,
    limits: { ...DEFAULT_DAG_LIMITS, ...init.limits },
    skipSymlinks: init.skipSymlinks ?? false,
    checkPath: init.checkPath ?? true,
    now: init.now ?? Date.now,
    sleep: init.sleep ?? abortableSleep,
    random: init.random ?? Math.random
  }
}

/** The `proxy` option as settings, its URLs checked. */
function proxySettings (proxy: string | ProxySettings | undefined): ProxySettings | undefined {
  if (proxy === undefined) return undefined
  if (typeof proxy === 'string') {
    const url = checkProxyUrl(proxy, 'proxy')
    return { http: url, https: url }
  }
  return {
    ...(proxy.http === undefined ? {} : { http: checkProxyUrl(proxy.http, 'proxy.http') }),
    ...(proxy.https === undefined ? {} : { https: checkProxyUrl(proxy.https, 'proxy.https') }),
    ...(proxy.noProxy === undefined ? {} : { noProxy: proxy.noProxy })
  }
}

/** Under `service`: the guard of the addresses clients' gateways may reach (the operator's endpoints trusted). */
export function serviceGuard (init: DownloaderInit, settings: Settings): AddressGuard | undefined {
  if (init.service === undefined) return undefined
  return new AddressGuard({
    // the operator's endpoints: routers and DNS-over-HTTPS resolvers are trusted like the gateways
    trusted: [...settings.gateways, ...settings.routers, ...settings.dnsResolvers.filter((r) => r !== SYSTEM_RESOLVER)],
    ...(init.service.allowLocal === undefined ? {} : { allowLocal: init.service.allowLocal }),
    ...(init.service.lookup === undefined ? {} : { lookup: init.service.lookup })
  })
}

/** The process's gateway health: backed-off gateways shared by its downloads, the configured ones never forgotten. */
export function healthRegistry (settings: Settings): HealthRegistry {
  return new HealthRegistry({
    keep: settings.gateways,
    backoff: {
      initialMs: settings.policy.initialBackoffMs,
      multiplier: settings.policy.backoffMultiplier,
      maxMs: settings.policy.maxBackoffMs,
      jitter: settings.policy.backoffJitter,
      random: settings.random
    },
    maxRetryAfterMs: settings.policy.maxRetryAfterMs,
    now: settings.now
  })
}

/** A bandwidth limit as an option: a whole number of bytes per second ≥ 1, or undefined for none. */
export function checkRate (rate: number | undefined, name: string): number | undefined {
  if (rate !== undefined && !(Number.isSafeInteger(rate) && rate >= 1)) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Option ${name} must be a whole number of bytes per second ≥ 1, got ${String(rate)}`)
  }
  return rate
}

/** A router's or DNS-over-HTTPS resolver's URL: http(s), no query or fragment, no trailing slash. */
export function normalizeEndpoint (url: string, what: string): string {
  let u: URL
  try {
    u = new URL(url.trim())
  } catch {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Invalid ${what} URL "${url}"`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CidgetError('CIDGET_ERR_BAD_OPTION', `The ${what} URL "${url}" must be http or https`)
  if (u.search !== '' || u.hash !== '') throw new CidgetError('CIDGET_ERR_BAD_OPTION', `The ${what} URL "${url}" must not have a query or fragment`)
  return u.origin + u.pathname.replace(/\/+$/, '')
}
