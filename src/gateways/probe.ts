/**
 * Probing gateways: is it reachable, does it answer trustless (raw block and
 * CAR) requests, does it honour `Range`, how fast does it answer and deliver.
 *
 * Independent of the CLI: `cidget gateways` prints the results, and the
 * engine can learn a gateway's capabilities from the same function.
 *
 * @module
 */

import { CidgetError, toCidgetError, type ErrorCode } from '../core/errors.js'
import { gatewayUrl, normalizeGateway, parseTarget } from '../target/parse.js'
import { parseContentRange } from './headers.js'
import type { HttpClient, HttpResponse } from './http.js'

/**
 * The empty identity CID: its "hash" is the (empty) content itself, so every
 * gateway can answer it without looking anything up on the network.
 */
export const EMPTY_CID = 'bafkqaaa'

/** Defaults of {@link ProbeOptions}. */
export const PROBE_DEFAULTS = {
  /** Small requests whose median time to response headers is the latency. */
  LATENCY_SAMPLES: 3,
  /** The throughput measurement stops reading the sample after this many bytes. */
  MAX_SAMPLE_BYTES: 16 * 1024 * 1024,
  /** …or after this long, whichever comes first. */
  MAX_SAMPLE_MS: 10_000
} as const

/** Bodies of the capability checks are read up to this size; a CAR of `bafkqaaa` is about 60 bytes. */
const SMALL_BODY_LIMIT = 64 * 1024

const RAW_TYPE = 'application/vnd.ipld.raw'
const CAR_TYPE = 'application/vnd.ipld.car'

/** What a probe learned about one gateway. `null` means the probe could not tell. */
export interface GatewayProbe {
  /** The gateway base URL, normalised. */
  gateway: string
  /** The gateway answered HTTP at all (any status). */
  reachable: boolean
  /** Why it is not reachable (`CIDGET_ERR_NETWORK`, `CIDGET_ERR_TIMEOUT`); `null` when reachable. */
  error: ErrorCode | null
  /** `GET /ipfs/bafkqaaa?format=raw` answered 200 with `application/vnd.ipld.raw`. `null` when unreachable. */
  trustlessRaw: boolean | null
  /** `GET /ipfs/bafkqaaa?format=car` answered 200 with `application/vnd.ipld.car`. `null` when unreachable. */
  trustlessCar: boolean | null
  /**
   * `Range: bytes=0-0` on the sample answered 206 with `Content-Range: bytes 0-0/…`
   * (`false`: 200 or a wrong Content-Range). `null` without a sample, or when
   * the gateway could not serve the sample (404, 5xx, errors).
   */
  range: boolean | null
  /** Median time to response headers of small requests, in ms; `null` when none succeeded. */
  latencyMs: number | null
  /** Bytes per second while fetching the sample (request to last byte); `null` without a sample or when it failed. */
  throughputBps: number | null
}

/** Options of {@link probeGateways} and {@link probeGateway}. */
export interface ProbeOptions {
  /** The client; its idle timeout applies to every request. */
  http: HttpClient
  /**
   * Content the gateways have (`CID` or `CID/path`), for the Range check and
   * the throughput. Without it, `range` and `throughputBps` are `null`.
   */
  sample?: string
  /** Aborts every request; the promise then rejects with the signal's reason. */
  signal?: AbortSignal
  /** @default 3 ({@link PROBE_DEFAULTS}.LATENCY_SAMPLES) */
  latencySamples?: number
  /** @default 16 MiB ({@link PROBE_DEFAULTS}.MAX_SAMPLE_BYTES) */
  maxSampleBytes?: number
  /** @default 10000 ({@link PROBE_DEFAULTS}.MAX_SAMPLE_MS) */
  maxSampleMs?: number
}

/**
 * Probes every gateway concurrently; results are in the order of `urls`
 * (duplicates after normalisation are probed once). Gateway failures are
 * results, not rejections: it rejects only for bad input (CIDGET_ERR_BAD_OPTION,
 * CIDGET_ERR_BAD_TARGET, before any request) or when `signal` aborts.
 */
export async function probeGateways (urls: string[], opts: ProbeOptions): Promise<GatewayProbe[]> {
  const gateways = [...new Set(urls.map(normalizeGateway))]
  if (gateways.length === 0) throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'No gateway to probe')
  const plan = resolve(opts)
  return await Promise.all(gateways.map(async gateway => await probeNormalized(gateway, plan)))
}

/** Probes one gateway; see {@link probeGateways}. */
export async function probeGateway (url: string, opts: ProbeOptions): Promise<GatewayProbe> {
  return await probeNormalized(normalizeGateway(url), resolve(opts))
}

/** Validated options, with the sample as the pieces of a gateway URL. */
interface Plan {
  http: HttpClient
  signal: AbortSignal | undefined
  sample: { cid: string, path: string } | undefined
  latencySamples: number
  maxSampleBytes: number
  maxSampleMs: number
}

/** Checks the options before any request; throws CIDGET_ERR_BAD_OPTION or (for the sample) CIDGET_ERR_BAD_TARGET. */
function resolve (opts: ProbeOptions): Plan {
  const t = opts.sample === undefined ? undefined : parseTarget(opts.sample)
  return {
    http: opts.http,
    signal: opts.signal,
    sample: t === undefined ? undefined : { cid: t.cid, path: t.path },
    latencySamples: checkCount('latencySamples', opts.latencySamples, PROBE_DEFAULTS.LATENCY_SAMPLES, 1),
    maxSampleBytes: checkCount('maxSampleBytes', opts.maxSampleBytes, PROBE_DEFAULTS.MAX_SAMPLE_BYTES, 1),
    maxSampleMs: checkCount('maxSampleMs', opts.maxSampleMs, PROBE_DEFAULTS.MAX_SAMPLE_MS, 1)
  }
}

function checkCount (name: string, value: number | undefined, fallback: number, min: number): number {
  const n = value ?? fallback
  if (!Number.isSafeInteger(n) || n < min) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${name} must be an integer ≥ ${min}, got ${n}`)
  }
  return n
}

async function probeNormalized (gateway: string, plan: Plan): Promise<GatewayProbe> {
  const { http, signal, sample, latencySamples, maxSampleBytes, maxSampleMs } = plan
  const empty = `${gateway}/ipfs/${EMPTY_CID}`
  const send = async (url: string, init: { method?: 'GET' | 'HEAD', headers?: Record<string, string> } = {}): Promise<HttpResponse> =>
    await http.request(url, { gateway, ...init, ...(signal === undefined ? {} : { signal }) })

  // The raw check doubles as the reachability check: any HTTP answer means reachable.
  let trustlessRaw: boolean
  try {
    const res = await send(`${empty}?format=raw`, { headers: { accept: RAW_TYPE } })
    await readSome(res, SMALL_BODY_LIMIT)
    trustlessRaw = res.status === 200 && mediaType(res) === RAW_TYPE
  } catch (err) {
    if (signal?.aborted === true) throw signal.reason
    return {
      gateway,
      reachable: false,
      error: toCidgetError(err).code,
      trustlessRaw: null,
      trustlessCar: null,
      range: null,
      latencyMs: null,
      throughputBps: null
    }
  }

  const trustlessCar = await settle(signal, false, async () => {
    const res = await send(`${empty}?format=car`, { headers: { accept: CAR_TYPE } })
    await readSome(res, SMALL_BODY_LIMIT)
    return res.status === 200 && mediaType(res) === CAR_TYPE
  })

  // After the first two requests the connection is warm: these measure answers, not handshakes.
  const times: number[] = []
  for (let i = 0; i < latencySamples; i++) {
    await settle(signal, undefined, async () => {
      const start = performance.now()
      const res = await send(`${empty}?format=raw`, { method: 'HEAD', headers: { accept: RAW_TYPE } })
      times.push(performance.now() - start)
      await readSome(res, SMALL_BODY_LIMIT)
    })
  }
  const mid = median(times)
  const latencyMs = mid === null ? null : Math.round(mid * 100) / 100

  let range: boolean | null = null
  let throughputBps: number | null = null
  if (sample !== undefined) {
    const url = gatewayUrl(gateway, sample.cid, sample.path)
    range = await settle(signal, null, async () => {
      const res = await send(url, { headers: { range: 'bytes=0-0' } })
      await readSome(res, SMALL_BODY_LIMIT)
      if (res.status === 200) return false // Range ignored: the whole body
      if (res.status !== 206) return null // the gateway could not serve the sample: no verdict
      const cr = parseContentRange(res.headers['content-range'])
      return cr !== undefined && cr.start === 0 && cr.end === 0
    })
    throughputBps = await settle(signal, null, async () => {
      const start = performance.now()
      const res = await send(url)
      if (res.status !== 200) {
        res.discard()
        return null
      }
      const bytes = await readSome(res, maxSampleBytes, start + maxSampleMs)
      const seconds = (performance.now() - start) / 1000
      return bytes > 0 && seconds > 0 ? Math.round(bytes / seconds) : null
    })
  }

  return { gateway, reachable: true, error: null, trustlessRaw, trustlessCar, range, latencyMs, throughputBps }
}

/** Runs one check; a failed check gives `fallback`, an abort rejects. */
async function settle<T> (signal: AbortSignal | undefined, fallback: T, check: () => Promise<T>): Promise<T> {
  try {
    return await check()
  } catch {
    if (signal?.aborted === true) throw signal.reason
    return fallback
  }
}

/** The media type of the response without parameters, lower case. */
function mediaType (res: HttpResponse): string {
  return (res.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
}

/** Reads the body up to `limit` bytes (or until `deadline`, a `performance.now()` time), then frees the connection. */
async function readSome (res: HttpResponse, limit: number, deadline = Number.POSITIVE_INFINITY): Promise<number> {
  let bytes = 0
  try {
    for await (const chunk of res.body) {
      bytes += chunk.byteLength
      if (bytes >= limit || performance.now() >= deadline) break
    }
  } finally {
    res.discard()
  }
  return bytes
}

function median (values: number[]): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const hi = sorted[mid] as number
  return sorted.length % 2 === 1 ? hi : ((sorted[mid - 1] as number) + hi) / 2
}
