/**
 * Providers found by delegated routing (Delegated Routing V1 HTTP API,
 * `GET /routing/v1/providers/CID`): the ones that serve the trustless gateway
 * protocol over HTTP (`transport-ipfs-gateway-http`), their multiaddrs turned
 * into gateway base URLs. Answers are bounded (size, providers, time),
 * cached for their `Cache-Control` lifetime, and a router that answers 429 or
 * 5xx is left alone for a while (its `Retry-After`, else a backoff).
 *
 * @module
 */
import { isIP } from 'node:net'
import { CidgetError } from '../core/errors.js'
import { parseRetryAfter } from '../core/retry.js'
import { isLocalAddress } from '../gateways/address.js'
import type { HttpClient } from '../gateways/http.js'

/** The protocol of providers that serve the trustless gateway protocol over HTTP. */
export const GATEWAY_PROTOCOL = 'transport-ipfs-gateway-http'
/** Bytes of one router's answer read at most. */
const MAX_ANSWER_BYTES = 1024 * 1024
/** Providers taken from one answer at most. */
const MAX_PROVIDERS = 32
/** How long an answer is kept without a `Cache-Control: max-age`. */
const DEFAULT_TTL_MS = 5 * 60_000
/** The longest an answer is kept, whatever the router says. */
const MAX_TTL_MS = 60 * 60_000
/** A router that failed without a Retry-After is left alone this long. */
const BACKOFF_MS = 60_000
/** The longest a router's answer may take, whole: a block no gateway has waits for it. */
const ANSWER_TIMEOUT_MS = 15_000

/**
 * A gateway base URL from a provider's multiaddr, or undefined when it is not
 * one cidget can use: `/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT` then `/https`,
 * `/tls/http` or `/http` (with an optional `/p2p/ID` at the end). Addresses on
 * loopback, private or link-local ranges (and `localhost`) are left out
 * unless `allowLocal`.
 */
export function multiaddrToUrl (addr: string, allowLocal = false): string | undefined {
  const parts = addr.split('/')
  if (parts[0] !== '' || parts.length < 6) return undefined
  const [, proto, host, tcp, port, ...rest] = parts as [string, string, string, string, string, ...string[]]
  if (!['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(proto) || tcp !== 'tcp' || !/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return undefined
  const tail = rest[rest.length - 2] === 'p2p' ? rest.slice(0, -2) : rest
  const scheme = tail.join('/') === 'https' || tail.join('/') === 'tls/http' ? 'https' : tail.join('/') === 'http' ? 'http' : undefined
  if (scheme === undefined) return undefined
  if (proto === 'ip4' && isIP(host) !== 4) return undefined
  if (proto === 'ip6' && isIP(host) !== 6) return undefined
  if (proto.startsWith('dns') && !/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i.test(host)) return undefined
  const name = host.toLowerCase().replace(/\.$/, '')
  const shown = proto === 'ip6' ? `[${host}]` : name
  const defaultPort = scheme === 'https' ? '443' : '80'
  const url = `${scheme}://${shown}${port === defaultPort ? '' : `:${port}`}`
  // what a URL makes of the host: a name of digits (`2130706433`, `127.1`, `0x7f000001`) becomes an address
  const parsed = new URL(url).hostname.replace(/^\[|\]$/g, '')
  if (proto.startsWith('dns') && isIP(parsed) !== 0) return undefined
  if (!allowLocal && (isLocalAddress(parsed) || name === 'localhost' || name.endsWith('.localhost'))) return undefined
  return url
}

/** One provider record of an answer (unknown fields and schemas ignored). */
interface ProviderRecord {
  Schema?: unknown
  Protocols?: unknown
  Protocol?: unknown
  Addrs?: unknown
}

/** The gateway URLs of the records that serve the gateway protocol. */
export function gatewayUrls (records: readonly unknown[], allowLocal: boolean): string[] {
  const urls: string[] = []
  for (const r of records) {
    if (r === null || typeof r !== 'object') continue
    const rec = r as ProviderRecord
    const protocols = Array.isArray(rec.Protocols) ? rec.Protocols : typeof rec.Protocol === 'string' ? [rec.Protocol] : []
    if (!protocols.includes(GATEWAY_PROTOCOL) || !Array.isArray(rec.Addrs)) continue
    for (const a of rec.Addrs.slice(0, 16)) {
      const url = typeof a === 'string' ? multiaddrToUrl(a, allowLocal) : undefined
      if (url !== undefined && !urls.includes(url)) urls.push(url)
    }
    if (urls.length >= MAX_PROVIDERS) break
  }
  return urls.slice(0, MAX_PROVIDERS)
}

/** `max-age` of a Cache-Control header in ms (bounded), else the default. */
function ttlOf (cacheControl: string | undefined): number {
  const m = /(?:^|,)\s*max-age\s*=\s*(\d+)/i.exec(cacheControl ?? '')
  if (/(?:^|,)\s*(no-store|no-cache)\b/i.test(cacheControl ?? '')) return 0
  return m === null ? DEFAULT_TTL_MS : Math.min(MAX_TTL_MS, Number(m[1]) * 1000)
}

export interface ProviderFinderInit {
  http: HttpClient
  /** Router base URLs (`https://delegated-ipfs.dev`). */
  routers: readonly string[]
  /** Keep providers on loopback, private and link-local addresses (tests, home networks). @default false */
  allowLocal?: boolean
  now?: () => number
  /** The longest one router's answer may take. @default 15000 */
  timeoutMs?: number
}

/** What a router said about a CID, as `find` reports it. */
export interface RouterAnswer {
  router: string
  /** Gateway URLs of the providers (none: 404, or none that serves the gateway protocol). */
  urls: string[]
  /** Why nothing came (an error status, a timeout, a router left alone after a failure). */
  error?: string
}

/**
 * Asks routers for the providers of CIDs, for one process: answers cached,
 * failing routers backed off. One finder serves every download of a Downloader.
 */
export class ProviderFinder {
  readonly #init: ProviderFinderInit
  readonly #now: () => number
  readonly #cache = new Map<string, { until: number, urls: string[] }>()
  readonly #blocked = new Map<string, number>()

  constructor (init: ProviderFinderInit) {
    this.#init = init
    this.#now = init.now ?? Date.now
  }

  /**
   * Asks every router at once for the providers of `cid`; `onProviders` gets
   * each router's gateway URLs as its answer arrives. Resolves with every
   * router's answer once all have answered, failed or been left out. Never
   * rejects but with the signal's reason.
   */
  async find (cid: string, onProviders: (urls: string[], router: string) => void, signal?: AbortSignal): Promise<RouterAnswer[]> {
    return await Promise.all(this.#init.routers.map(async (router) => {
      const given = new Set<string>()
      // an NDJSON answer's providers are handed on line by line, the rest at the end
      const hand = (urls: string[]): void => {
        const fresh = urls.filter((u) => !given.has(u))
        for (const u of fresh) given.add(u)
        if (fresh.length > 0) onProviders(fresh, router)
      }
      const answer = await this.#ask(router, cid, hand, signal)
      hand(answer.urls)
      return answer
    }))
  }

  async #ask (router: string, cid: string, hand: (urls: string[]) => void, signal?: AbortSignal): Promise<RouterAnswer> {
    const key = `${router} ${cid}`
    const now = this.#now()
    const cached = this.#cache.get(key)
    if (cached !== undefined && cached.until > now) return { router, urls: cached.urls }
    const blocked = this.#blocked.get(router)
    if (blocked !== undefined && blocked > now) return { router, urls: [], error: `left alone for ${Math.ceil((blocked - now) / 1000)} s after a failure` }
    const url = `${router}/routing/v1/providers/${encodeURIComponent(cid)}?filter-protocols=${GATEWAY_PROTOCOL}`
    const timeoutMs = this.#init.timeoutMs ?? ANSWER_TIMEOUT_MS
    const deadline = AbortSignal.timeout(timeoutMs)
    const both = signal === undefined ? deadline : AbortSignal.any([signal, deadline])
    try {
      const res = await this.#init.http.request(url, { gateway: router, headers: { accept: 'application/x-ndjson, application/json;q=0.9' }, signal: both })
      if (res.status === 404) {
        res.discard()
        this.#remember(key, res.headers['cache-control'], [])
        return { router, urls: [] }
      }
      if (res.status !== 200) {
        res.discard()
        if (res.status === 429 || res.status >= 500) {
          const told = parseRetryAfter(res.headers['retry-after'], this.#now())
          this.#blocked.set(router, this.#now() + Math.min(told ?? BACKOFF_MS, MAX_TTL_MS))
        }
        return { router, urls: [], error: `HTTP ${res.status}` }
      }
      const allowLocal = this.#init.allowLocal ?? false
      const records = await readRecords(res, (res.headers['content-type'] ?? '').includes('ndjson'), (some) => { hand(gatewayUrls(some, allowLocal)) })
      const urls = gatewayUrls(records, allowLocal)
      this.#remember(key, res.headers['cache-control'], urls)
      return { router, urls }
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      this.#blocked.set(router, this.#now() + BACKOFF_MS)
      return { router, urls: [], error: deadline.aborted ? `no whole answer within ${timeoutMs / 1000} s` : err instanceof Error ? err.message : String(err) }
    }
  }

  #remember (key: string, cacheControl: string | undefined, urls: string[]): void {
    const ttl = ttlOf(cacheControl)
    if (ttl > 0) this.#cache.set(key, { until: this.#now() + ttl, urls })
    // a process that asks about many CIDs: the oldest answers go first
    if (this.#cache.size > 1024) this.#cache.delete(this.#cache.keys().next().value as string)
  }
}

/**
 * The provider records of an answer: NDJSON (one record a line, each whole
 * line handed to `onLines` as it arrives) or JSON (`{"Providers": [...]}`),
 * at most MAX_ANSWER_BYTES (an NDJSON answer is cut there; a JSON one refused).
 */
async function readRecords (res: Awaited<ReturnType<HttpClient['request']>>, ndjson: boolean, onLines: (records: unknown[]) => void): Promise<unknown[]> {
  const decoder = new TextDecoder()
  const out: unknown[] = []
  let text = ''
  let size = 0
  const lines = (complete: boolean): void => {
    const parts = text.split('\n')
    text = complete ? '' : parts.pop() ?? ''
    const records: unknown[] = []
    for (const line of parts) {
      if (line.trim() === '' || out.length + records.length >= MAX_PROVIDERS * 4) continue
      try {
        records.push(JSON.parse(line))
      } catch {
        // a malformed line is skipped: the others may be good
      }
    }
    out.push(...records)
    if (records.length > 0) onLines(records)
  }
  for await (const chunk of res.body) {
    size += chunk.byteLength
    if (size > MAX_ANSWER_BYTES) {
      // what came is used (NDJSON: its whole lines); the rest is not read
      res.discard()
      if (!ndjson) throw new CidgetError('CIDGET_ERR_HTTP_STATUS', `the router's answer is larger than ${MAX_ANSWER_BYTES} bytes`)
      return out
    }
    text += decoder.decode(chunk, { stream: true })
    if (ndjson) lines(false)
  }
  text += decoder.decode()
  if (ndjson) {
    lines(true)
    return out
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new CidgetError('CIDGET_ERR_HTTP_STATUS', 'the router\'s answer is not JSON')
  }
  const list = (parsed as { Providers?: unknown } | null)?.Providers
  return Array.isArray(list) ? list : []
}
