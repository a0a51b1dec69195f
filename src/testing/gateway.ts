/**
 * A fault-injecting IPFS HTTP gateway for tests, demos and benchmarks.
 *
 * It is a real `node:http` server on loopback that serves content from a
 * {@link MemoryBlocks} store as a path gateway (`/ipfs/CID[/path]`, with
 * `Range`) and as a trustless gateway (`?format=raw`, `?format=car` with
 * `dag-scope` and IPIP-402 `entity-bytes`), and misbehaves on demand through
 * {@link FaultRule}s.
 *
 * @example
 * ```ts
 * import { MemoryBlocks, addFile, seededBytes, startTestGateway } from 'cidget/testing'
 *
 * const blocks = new MemoryBlocks()
 * const cid = await addFile(blocks, seededBytes(1 << 20))
 * const gw = await startTestGateway({ blocks })
 * gw.addFault({ fault: { type: 'reset', afterBytes: 4096 }, times: 1 })
 * // GET `${gw.url}/ipfs/${cid}` now breaks once after 4 KiB, then works.
 * await gw.close()
 * ```
 *
 * @module
 */

import { EventEmitter } from 'node:events'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { blockLength, headerLength } from '@ipld/car/buffer-writer'
import { CarWriter } from '@ipld/car/writer'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { exporter, walkPath } from 'ipfs-unixfs-exporter'
import { bases } from 'multiformats/basics'
import { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import { abortableSleep } from '../core/async.js'
import { CidgetError } from '../core/errors.js'
import { IDENTITY_CODE } from './blocks.js'
import type { MemoryBlocks, UnixFSStorage } from './blocks.js'

/** Default size of each body write: 64 KiB. */
export const DEFAULT_TEST_GATEWAY_CHUNK_SIZE = 64 * 1024
/** Default listening address: loopback only. */
export const DEFAULT_TEST_GATEWAY_HOST = '127.0.0.1'

const IMMUTABLE = 'public, max-age=29030400, immutable'
const CAR_CONTENT_TYPE = 'application/vnd.ipld.car; version=1; order=dfs; dups=n'
const RAW_CONTENT_TYPE = 'application/vnd.ipld.raw'

/** Options of {@link startTestGateway}. */
export interface TestGatewayOptions {
  /** Where the content comes from. The gateway reads it live: blocks added later are served too. */
  blocks: MemoryBlocks
  /** Address to listen on. @default '127.0.0.1' */
  host?: string
  /** Port to listen on; `0` picks a free one (read it from {@link TestGateway.url}). @default 0 */
  port?: number
  /**
   * Bandwidth cap in bytes per second, shared by **all** connections of this
   * gateway (one token bucket). `undefined` means unlimited. Change it later
   * with {@link TestGateway.setMaxBytesPerSecond}.
   * @default undefined
   */
  maxBytesPerSecond?: number
  /** Size of each body write; smaller values give finer `progress` events. @default 65536 */
  chunkSize?: number
}

/** Which kind of answer a request asked for; `null` for paths outside `/ipfs/` and unknown formats. */
export type RequestFormat = 'path' | 'raw' | 'car'

/**
 * One request as the gateway saw it. The same object is updated while the
 * response goes out: `status` when the headers are written, `bytesSent` after
 * each body write, and `aborted`/`endedAt` when the response ends (the
 * `'response'` event).
 */
export interface RequestRecord {
  /** 1, 2, 3… in arrival order. */
  id: number
  method: string
  /** The request target as received (path and query, still encoded). */
  url: string
  /** The URL path, percent-decoded, without the query: `/ipfs/CID/sub`. */
  path: string
  format: RequestFormat | null
  /** The `Range` request header, or `null`. */
  range: string | null
  /** The `If-Range` request header, or `null`. */
  ifRange: string | null
  /** Response status; `0` until headers are written (and for `refuse`). */
  status: number
  /** Body bytes written so far (headers excluded). */
  bytesSent: number
  /** The `User-Agent` request header, or `null`. */
  userAgent: string | null
  /** For a CAR answer: the CIDs of the blocks its body carries, in order (a fault may cut it short); otherwise `null`. */
  carBlocks: string[] | null
  /** The type of the fault applied to this request, or `null`. */
  fault: Fault['type'] | null
  /** `true` when the response did not end normally: the client went away, or the gateway reset or refused it. */
  aborted: boolean
  /** `Date.now()` at arrival. */
  startedAt: number
  /** `Date.now()` when the response ended or was aborted; `null` while it is going on. */
  endedAt: number | null
}

/**
 * A fault to inject. Body faults count bytes of **this** response body
 * (after any `Range` is applied).
 *
 * | type | what the client sees | applies to |
 * |---|---|---|
 * | `reset` | headers, `afterBytes` body bytes, then the connection closes | GET |
 * | `stall` | headers, `afterBytes` body bytes, then nothing, connection open | GET |
 * | `flip` | one body byte inverted (`atByte`, default: the middle; for CAR, the middle byte of the middle block) | GET |
 * | `ignore-range` | `200` and the whole body for a `Range` request; for a CAR with `entity-bytes`, the whole entity | requests with `Range`, CAR requests with `entity-bytes` |
 * | `range-not-satisfiable` | `416` with `Content-Range: bytes *\/SIZE` | GET, HEAD |
 * | `status` | that status, optional `Retry-After`, a short text body | any |
 * | `wrong-block` | another valid block's bytes (or the right block mutated) under the requested CID; for CAR the first (root) block is replaced | `raw`, `car` |
 * | `throttle` | this response limited to `bytesPerSecond` (on top of the gateway-wide cap) | GET |
 * | `latency` | a delay of `ms` before the response headers; the request is then served normally | any |
 * | `refuse` | the connection destroyed as soon as the request arrives, no response | any |
 * | `no-length` | no `Content-Length` (chunked transfer encoding) | GET |
 * | `endless` | no `Content-Length` (or `claimLength`, a false one), and after the body zero bytes that never end (until the client goes away) | GET |
 * | `bad-content-range` | `206` whose `Content-Range` start (and end) is off by one from the requested range; the body is the requested bytes | requests with `Range` |
 *
 * `reset` and `stall` with `afterBytes` at or past the end of the body send
 * the whole body and then close or stall instead of ending the response.
 * `reset` closes the socket once the bytes are flushed (a FIN, not an RST,
 * so the client reliably receives the first `afterBytes` bytes).
 */
export type Fault =
  | { type: 'reset', afterBytes: number }
  | { type: 'stall', afterBytes: number }
  | { type: 'flip', atByte?: number }
  | { type: 'ignore-range' }
  | { type: 'range-not-satisfiable' }
  | { type: 'status', status: number, retryAfter?: number | string }
  | { type: 'wrong-block' }
  | { type: 'throttle', bytesPerSecond: number }
  | { type: 'latency', ms: number }
  | { type: 'refuse' }
  | { type: 'no-length' }
  | { type: 'endless', claimLength?: number }
  | { type: 'bad-content-range' }

/**
 * When to inject a {@link Fault}. For each request, rules are tried in
 * order and the first one that matches, can apply to the request (see the
 * table on {@link Fault}), has budget left and wins its probability draw is
 * applied. At most one fault applies per request.
 */
export interface FaultRule {
  fault: Fault
  /** Apply to the first `times` matching requests only. @default unlimited */
  times?: number
  /**
   * Apply with this probability (0–1), drawn from a PRNG seeded with
   * {@link seed}: the same request sequence gets the same faults every run.
   * @default 1
   */
  probability?: number
  /** Seed of this rule's PRNG. @default 1 */
  seed?: number
  /** Every given field must match; an absent `match` matches every request. */
  match?: {
    /** HTTP method, case-insensitive. */
    method?: string
    format?: RequestFormat
    /** A string must equal {@link RequestRecord.path}; a RegExp is tested against it. */
    path?: string | RegExp
    /** `true`: only requests with a `Range` header; `false`: only requests without. */
    ranged?: boolean
  }
}

/** Events of a {@link TestGateway}; each passes the live {@link RequestRecord}. */
export interface TestGatewayEvents {
  /** A request arrived (before any fault or handling). */
  request: [record: RequestRecord]
  /** A body chunk was written; `record.bytesSent` is up to date. */
  progress: [record: RequestRecord]
  /** The response ended or was aborted; the record is final. */
  response: [record: RequestRecord]
}

/** A running test gateway; see {@link startTestGateway}. */
export interface TestGateway extends EventEmitter<TestGatewayEvents> {
  /** `http://HOST:PORT`, without a trailing slash. */
  readonly url: string
  /**
   * Every request so far, in arrival order. Records are live: they are
   * final once their `'response'` event fired. The gateway only appends, so
   * a test may empty the array (`requests.length = 0`) between phases; ids
   * keep counting.
   */
  readonly requests: RequestRecord[]
  /** Appends a rule (after the existing ones). */
  addFault (rule: FaultRule): void
  /** Replaces all rules; budgets and PRNGs start afresh. */
  setFaults (rules: FaultRule[]): void
  /** Removes all rules. */
  clearFaults (): void
  /** Changes the gateway-wide bandwidth cap; `undefined` removes it. */
  setMaxBytesPerSecond (bytesPerSecond: number | undefined): void
  /** Sum of body bytes sent, over all records in {@link requests} or those `filter` accepts. */
  bytesSent (filter?: (record: RequestRecord) => boolean): number
  /** Stops listening and destroys every open connection, stalled ones included. Idempotent. */
  close (): Promise<void>
}

/**
 * Starts a test gateway and resolves once it listens.
 *
 * HTTP behaviour:
 * - `GET|HEAD /ipfs/CID[/path]` (path gateway): resolves the path through
 *   UnixFS (HAMT-sharded directories too) and serves the file as
 *   `application/octet-stream` with `Content-Length`, `Accept-Ranges: bytes`,
 *   strong `ETag: "<resolved CID>"`, immutable `Cache-Control`, `X-Ipfs-Path`.
 *   One `Range` (`bytes=a-b`, `bytes=a-`, `bytes=-n`) gives `206`; an
 *   unsatisfiable one `416` with `Content-Range: bytes *\/SIZE`; several ranges,
 *   a malformed one, or an `If-Range` that differs from the ETag give `200`
 *   and the whole body. A directory gives `501`.
 * - `?format=raw` or `Accept: application/vnd.ipld.raw`: the block bytes,
 *   `ETag: "<cid>.raw"` (a path gives `400`; `Range` works as above).
 * - `?format=car` or `Accept: application/vnd.ipld.car`: a CARv1 stream, root
 *   = the CID in the URL, DFS order, no duplicates, no `Content-Length`; the
 *   blocks of the path first, then by `dag-scope` (`block`, `entity`, `all`,
 *   default `all`) and `entity-bytes=from:to`. Identity CIDs are not written
 *   (they carry their data); codecs other than dag-pb and raw are written but
 *   not traversed. A block missing below the root ends the stream abruptly.
 * - Identity CIDs resolve to their digest: `HEAD /ipfs/bafkqaaa` is `200`.
 * - Unknown CID or missing block `404`; unparsable CID `400`; other paths
 *   `404`; methods other than GET and HEAD `405`.
 */
export async function startTestGateway (opts: TestGatewayOptions): Promise<TestGateway> {
  const gateway = new TestGatewayServer(opts)
  await gateway.listen(opts.host ?? DEFAULT_TEST_GATEWAY_HOST, opts.port ?? 0)
  return gateway
}

// ---------------------------------------------------------------------------

interface Ctx {
  req: IncomingMessage
  res: ServerResponse
  record: RequestRecord
  signal: AbortSignal
  abort: () => void
  query: URLSearchParams
  /** Path segments after the CID, decoded; `null` when the path is not `/ipfs/…`. */
  ipfs: { cidText: string, segments: string[] } | null
  /** The raw (encoded) URL path, for X-Ipfs-Path. */
  rawPath: string
}

interface RuleState {
  rule: FaultRule
  applied: number
  random: () => number
}

interface Resolved {
  cid: CID
  /** Every block on the way, from the URL's CID to the terminal one (HAMT shards included). */
  roots: CID[]
}

interface SizedResource {
  size: number
  etag: string
  headers: Record<string, string>
  body: (offset: number, length: number) => AsyncIterable<Uint8Array> | Iterable<Uint8Array>
}

interface Block { cid: CID, bytes: Uint8Array }

class HttpError extends Error {
  constructor (readonly status: number, message: string) {
    super(message)
  }
}

class TestGatewayServer extends EventEmitter<TestGatewayEvents> implements TestGateway {
  readonly #blocks: MemoryBlocks
  readonly #store: UnixFSStorage
  readonly #chunkSize: number
  readonly #limiter: RateLimiter
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  readonly #active = new Set<Ctx>()
  readonly #requests: RequestRecord[] = []
  #nextId = 1
  #rules: RuleState[] = []
  #url = ''
  #closing: Promise<void> | undefined

  constructor (opts: TestGatewayOptions) {
    super()
    const chunkSize = opts.chunkSize ?? DEFAULT_TEST_GATEWAY_CHUNK_SIZE
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', `chunkSize must be a positive integer, got ${chunkSize}`)
    }
    this.#blocks = opts.blocks
    this.#store = opts.blocks.asBlockstore()
    this.#chunkSize = chunkSize
    this.#limiter = new RateLimiter(checkRate(opts.maxBytesPerSecond, 'maxBytesPerSecond'))
    this.#server = createServer((req, res) => { this.#onRequest(req, res) })
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket)
      socket.once('close', () => this.#sockets.delete(socket))
    })
  }

  async listen (host: string, port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject)
        resolve()
      })
    })
    const address = this.#server.address()
    if (address === null || typeof address === 'string') throw new Error('test gateway: no TCP address')
    const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address
    this.#url = `http://${hostPart}:${address.port}`
  }

  get url (): string { return this.#url }
  get requests (): RequestRecord[] { return this.#requests }

  addFault (rule: FaultRule): void {
    this.#rules.push(ruleState(rule))
  }

  setFaults (rules: FaultRule[]): void {
    this.#rules = rules.map(ruleState)
  }

  clearFaults (): void {
    this.#rules = []
  }

  setMaxBytesPerSecond (bytesPerSecond: number | undefined): void {
    this.#limiter.setRate(checkRate(bytesPerSecond, 'maxBytesPerSecond'))
  }

  bytesSent (filter?: (record: RequestRecord) => boolean): number {
    let sum = 0
    for (const r of this.#requests) if (filter === undefined || filter(r)) sum += r.bytesSent
    return sum
  }

  async close (): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      for (const ctx of this.#active) ctx.abort()
      this.#server.close(() => resolve())
      this.#server.closeAllConnections()
      for (const socket of this.#sockets) socket.destroy()
    })
    return await this.#closing
  }

  // --- request life cycle ---------------------------------------------------

  #onRequest (req: IncomingMessage, res: ServerResponse): void {
    const target = req.url ?? '/'
    let url: URL
    try {
      // Origin-form ("/ipfs/…") is the norm; concatenating keeps "//x" a path, not a host.
      url = target.startsWith('/') ? new URL(`http://gateway.invalid${target}`) : new URL(target)
    } catch {
      url = new URL('http://gateway.invalid/')
    }
    let path: string
    try {
      path = decodeURIComponent(url.pathname)
    } catch {
      path = url.pathname
    }
    const ipfs = parseIpfsPath(url.pathname)
    const record: RequestRecord = {
      id: this.#nextId++,
      method: req.method ?? 'GET',
      url: target,
      path,
      format: ipfs === null ? null : detectFormat(url.searchParams, req.headers.accept),
      range: req.headers.range ?? null,
      ifRange: headerValue(req.headers['if-range']),
      userAgent: req.headers['user-agent'] ?? null,
      status: 0,
      bytesSent: 0,
      carBlocks: null,
      fault: null,
      aborted: false,
      startedAt: Date.now(),
      endedAt: null
    }
    this.#requests.push(record)
    const controller = new AbortController()
    const ctx: Ctx = {
      req,
      res,
      record,
      signal: controller.signal,
      abort: () => controller.abort(),
      query: url.searchParams,
      ipfs: ipfs === 'bad' ? { cidText: '', segments: [] } : ipfs,
      rawPath: url.pathname
    }
    this.#active.add(ctx)
    res.once('close', () => {
      this.#active.delete(ctx)
      if (!res.writableFinished) record.aborted = true
      record.endedAt = Date.now()
      controller.abort()
      this.emit('response', record)
    })
    this.emit('request', record)
    if (ipfs === 'bad') {
      this.#sendText(ctx, 400, 'bad percent-encoding in path\n')
      return
    }
    this.#handle(ctx).catch((err: unknown) => { this.#fail(ctx, err) })
  }

  #fail (ctx: Ctx, err: unknown): void {
    const { res } = ctx
    if (ctx.signal.aborted || res.destroyed) return
    if (res.headersSent) {
      // Too late for another status: end the connection so the client sees a broken body, not a short one.
      void this.#cut(ctx, 'reset', ctx.record.bytesSent === 0)
      return
    }
    const status = err instanceof HttpError ? err.status : errorStatus(err)
    const message = err instanceof Error ? err.message : String(err)
    this.#sendText(ctx, status, `${message}\n`)
  }

  async #handle (ctx: Ctx): Promise<void> {
    const { req, record } = ctx
    const fault = this.#pickFault(record)
    record.fault = fault?.type ?? null

    if (fault?.type === 'refuse') {
      record.aborted = true
      req.socket.destroy()
      return
    }
    if (fault?.type === 'latency') {
      await sleep(fault.ms, ctx.signal)
      if (ctx.signal.aborted) return
    }
    if (fault?.type === 'status') {
      const headers: Record<string, string> = {}
      if (fault.retryAfter !== undefined) headers['Retry-After'] = String(fault.retryAfter)
      this.#sendText(ctx, fault.status, `injected fault: status ${fault.status}\n`, headers)
      return
    }
    if (record.method !== 'GET' && record.method !== 'HEAD') {
      this.#sendText(ctx, 405, 'only GET and HEAD are supported\n', { Allow: 'GET, HEAD' })
      return
    }
    if (ctx.ipfs === null) {
      this.#sendText(ctx, 404, 'not found: the test gateway serves /ipfs/CID[/path] only\n')
      return
    }
    if (record.format === null) {
      this.#sendText(ctx, 400, `unsupported format: ${ctx.query.get('format') ?? ''}\n`)
      return
    }
    let cid: CID
    try {
      cid = parseCid(ctx.ipfs.cidText)
    } catch (err) {
      this.#sendText(ctx, 400, `invalid CID "${ctx.ipfs.cidText}": ${err instanceof Error ? err.message : String(err)}\n`)
      return
    }
    switch (record.format) {
      case 'raw': await this.#serveRaw(ctx, cid, fault); return
      case 'car': await this.#serveCar(ctx, cid, fault); return
      default: await this.#servePath(ctx, cid, fault)
    }
  }

  #pickFault (record: RequestRecord): Fault | null {
    for (const state of this.#rules) {
      const { rule } = state
      if (rule.times !== undefined && state.applied >= rule.times) continue
      if (!ruleMatches(rule, record) || !faultApplies(rule.fault, record)) continue
      if (rule.probability !== undefined && !(state.random() < rule.probability)) continue
      state.applied++
      return rule.fault
    }
    return null
  }

  // --- the three kinds of answer ---------------------------------------------

  async #servePath (ctx: Ctx, cid: CID, fault: Fault | null): Promise<void> {
    const { cid: target } = await this.#resolve(cid, ctx)
    const entry = await exporter(target, this.#store, { signal: ctx.signal })
    if (entry.type === 'directory') {
      throw new HttpError(501, 'the test gateway does not list directories; request a file inside it')
    }
    if (entry.type !== 'file' && entry.type !== 'raw' && entry.type !== 'identity') {
      throw new HttpError(501, `the test gateway cannot serve a ${entry.type} node on the path gateway`)
    }
    const size = entry.type === 'file' ? Number(entry.unixfs.fileSize()) : entry.node.length
    const etag = `"${entry.cid.toString()}"`
    const signal = ctx.signal
    await this.#serveSized(ctx, {
      size,
      etag,
      headers: {
        'Content-Type': 'application/octet-stream',
        'Accept-Ranges': 'bytes',
        ETag: etag,
        'Cache-Control': IMMUTABLE,
        'X-Ipfs-Path': ctx.rawPath
      },
      body: entry.type === 'file'
        ? (offset, length) => windowed(offset, length, (o, l) => entry.content({ offset: o, length: l, signal }))
        : (offset, length) => entry.content({ offset, length, signal })
    }, fault)
  }

  async #serveRaw (ctx: Ctx, cid: CID, fault: Fault | null): Promise<void> {
    if (ctx.ipfs !== null && ctx.ipfs.segments.length > 0) {
      throw new HttpError(400, 'a raw block has no paths: request /ipfs/CID?format=raw')
    }
    let bytes = this.#blocks.get(cid)
    if (fault?.type === 'wrong-block') bytes = this.#wrongBytes(cid, bytes)
    const etag = `"${cid.toString()}.raw"`
    await this.#serveSized(ctx, {
      size: bytes.length,
      etag,
      headers: {
        'Content-Type': RAW_CONTENT_TYPE,
        'Accept-Ranges': 'bytes',
        ETag: etag,
        'Cache-Control': IMMUTABLE,
        'Content-Disposition': `attachment; filename="${cid.toString()}.bin"`,
        'X-Content-Type-Options': 'nosniff',
        Vary: 'Accept',
        'X-Ipfs-Path': ctx.rawPath
      },
      body: (offset, length) => [bytes.subarray(offset, offset + length)]
    }, fault)
  }

  async #serveCar (ctx: Ctx, cid: CID, fault: Fault | null): Promise<void> {
    const { record, res } = ctx
    const scopeParam = ctx.query.get('dag-scope') ?? 'all'
    if (scopeParam !== 'block' && scopeParam !== 'entity' && scopeParam !== 'all') {
      throw new HttpError(400, `invalid dag-scope "${scopeParam}": use block, entity or all`)
    }
    const bytesParam = ctx.query.get('entity-bytes')
    const entityBytes = bytesParam === null ? null : parseEntityBytes(bytesParam)
    // a gateway that does not know entity-bytes sends the whole entity
    const served = fault?.type === 'ignore-range' ? null : entityBytes
    const resolved = await this.#resolve(cid, ctx)
    const plan = carPlan(this.#blocks, resolved, entityBytes === null ? scopeParam : 'entity', served)
    if (fault?.type === 'wrong-block' && plan.blocks[0] !== undefined) {
      const first = plan.blocks[0]
      plan.blocks[0] = { cid: first.cid, bytes: this.#wrongBytes(first.cid, first.bytes) }
    }
    record.carBlocks = plan.blocks.map((b) => b.cid.toString())
    const layout = carLayout(cid, plan.blocks)
    const tag = fnv1a(`${ctx.ipfs?.segments.join('/') ?? ''}|${scopeParam}|${bytesParam ?? ''}`)
    const headers: Record<string, string> = {
      'Content-Type': CAR_CONTENT_TYPE,
      ETag: `"${cid.toString()}.car.${tag}"`,
      'Cache-Control': IMMUTABLE,
      'Content-Disposition': `attachment; filename="${cid.toString()}.car"`,
      'X-Content-Type-Options': 'nosniff',
      'Accept-Ranges': 'none',
      Vary: 'Accept',
      'X-Ipfs-Path': ctx.rawPath
    }
    if (fault?.type === 'range-not-satisfiable') {
      this.#head(ctx, 416, { ...headers, 'Content-Range': `bytes */${layout.total}`, 'Content-Length': '0' })
      res.end()
      return
    }
    this.#head(ctx, 200, headers)
    if (record.method === 'HEAD') {
      res.end()
      return
    }
    const flipAt = fault?.type === 'flip' ? (fault.atByte ?? layout.middle) : undefined
    await this.#writeBody(ctx, carStream(cid, plan.blocks), fault, flipAt, plan.truncated)
  }

  /** Walks `cid/segments…`, mapping failures to 404. */
  async #resolve (cid: CID, ctx: Ctx): Promise<Resolved> {
    const segments = ctx.ipfs?.segments ?? []
    let last: Resolved = { cid, roots: [cid] }
    try {
      const path = [cid.toString(), ...segments].join('/')
      for await (const entry of walkPath(path, this.#store, { signal: ctx.signal, yieldSubShards: true })) {
        last = { cid: entry.cid, roots: entry.roots }
      }
    } catch (err) {
      throw new HttpError(errorStatus(err), err instanceof Error ? err.message : String(err))
    }
    if (!this.#blocks.has(last.cid)) {
      throw new HttpError(404, `block ${last.cid.toString()} is not in the test blockstore`)
    }
    return last
  }

  /** A different valid block's bytes, or `bytes` mutated when the store has no other block. */
  #wrongBytes (cid: CID, bytes: Uint8Array): Uint8Array {
    for (const [other, otherBytes] of this.#blocks.entries()) {
      if (!other.multihash.bytes.every((b, i) => cid.multihash.bytes[i] === b) && !sameBytes(otherBytes, bytes)) {
        return otherBytes
      }
    }
    if (bytes.length === 0) return Uint8Array.of(0)
    const mutated = new Uint8Array(bytes)
    mutated[0] = (mutated[0] ?? 0) ^ 0xff
    return mutated
  }

  // --- response writing ------------------------------------------------------

  /** Status, Range, If-Range and the range faults for a body of known size. */
  async #serveSized (ctx: Ctx, resource: SizedResource, fault: Fault | null): Promise<void> {
    const { req, res, record } = ctx
    const { size } = resource
    let range: ByteRange | 'unsatisfiable' | null = null
    if (req.headers.range !== undefined && fault?.type !== 'ignore-range') {
      const ifRange = headerValue(req.headers['if-range'])
      if (ifRange === null || ifRange === resource.etag) range = parseRange(req.headers.range, size)
    }
    if (fault?.type === 'range-not-satisfiable') range = 'unsatisfiable'
    if (range === 'unsatisfiable') {
      this.#head(ctx, 416, {
        ETag: resource.etag,
        'Accept-Ranges': 'bytes',
        'Content-Range': `bytes */${size}`,
        'Content-Length': '0'
      })
      res.end()
      return
    }
    const headers = { ...resource.headers }
    let status = 200
    let start = 0
    let length = size
    if (range !== null) {
      status = 206
      start = range.start
      length = range.end - range.start + 1
      let shownStart = range.start
      let shownEnd = range.end
      if (fault?.type === 'bad-content-range') {
        const delta = range.start > 0 ? -1 : 1
        shownStart += delta
        shownEnd = Math.min(shownEnd + delta, size - 1)
      }
      headers['Content-Range'] = `bytes ${shownStart}-${shownEnd}/${size}`
    }
    if (fault?.type === 'endless') {
      if (fault.claimLength !== undefined) headers['Content-Length'] = String(fault.claimLength)
    } else if (fault?.type !== 'no-length') headers['Content-Length'] = String(length)
    this.#head(ctx, status, headers)
    if (record.method === 'HEAD') {
      res.end()
      return
    }
    const flipAt = fault?.type === 'flip' ? (fault.atByte ?? Math.floor(length / 2)) : undefined
    const body = length === 0 ? [] : resource.body(start, length)
    await this.#writeBody(ctx, fault?.type === 'endless' ? endless(body, this.#chunkSize) : body, fault, flipAt, false)
  }

  #head (ctx: Ctx, status: number, headers: Record<string, string>): void {
    ctx.res.writeHead(status, headers)
    ctx.record.status = status
  }

  #sendText (ctx: Ctx, status: number, text: string, headers: Record<string, string> = {}): void {
    const body = Buffer.from(text)
    this.#head(ctx, status, {
      ...headers,
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': String(body.length)
    })
    if (ctx.record.method === 'HEAD') {
      ctx.res.end()
      return
    }
    ctx.res.end(body)
    ctx.record.bytesSent = body.length
  }

  /**
   * Streams `source` in `chunkSize` writes, honouring backpressure, the rate
   * limits, and the body faults. Stops as soon as the client goes away.
   */
  async #writeBody (
    ctx: Ctx,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    fault: Fault | null,
    flipAt: number | undefined,
    truncated: boolean
  ): Promise<void> {
    const { res, record, signal } = ctx
    const cutAt = fault?.type === 'reset' || fault?.type === 'stall' ? Math.max(0, fault.afterBytes) : undefined
    const cutMode = fault?.type === 'stall' ? 'stall' : 'reset'
    const throttle = fault?.type === 'throttle' ? new RateLimiter(fault.bytesPerSecond) : undefined
    let sent = 0
    for await (const piece of rechunk(source, this.#chunkSize)) {
      let offset = 0
      while (offset < piece.length) {
        if (signal.aborted) return
        if (cutAt !== undefined && sent >= cutAt) {
          await this.#cut(ctx, cutMode, sent === 0)
          return
        }
        let n = Math.min(piece.length - offset, this.#sliceSize(throttle))
        if (cutAt !== undefined) n = Math.min(n, cutAt - sent)
        let chunk = piece.subarray(offset, offset + n)
        if (flipAt !== undefined && flipAt >= sent && flipAt < sent + n) {
          chunk = new Uint8Array(chunk) // a copy: the original may be a view of a stored block
          chunk[flipAt - sent] = (chunk[flipAt - sent] ?? 0) ^ 0xff
        }
        if (throttle !== undefined) await throttle.acquire(n, signal)
        await this.#limiter.acquire(n, signal)
        if (signal.aborted) return
        const ok = res.write(chunk)
        sent += n
        offset += n
        record.bytesSent = sent
        this.emit('progress', record)
        if (!ok) await waitForDrain(res, signal)
      }
    }
    if (signal.aborted) return
    if (cutAt !== undefined) {
      await this.#cut(ctx, cutMode, sent === 0)
      return
    }
    if (truncated) {
      await this.#cut(ctx, 'reset', sent === 0)
      return
    }
    res.end()
  }

  /** Largest write allowed now: small enough to keep a throttled stream smooth (about 20 writes per second). */
  #sliceSize (throttle: RateLimiter | undefined): number {
    const rates = [throttle?.rate, this.#limiter.rate].filter((r): r is number => r !== undefined)
    if (rates.length === 0) return Number.POSITIVE_INFINITY
    return Math.max(1, Math.floor(Math.min(...rates) / 20))
  }

  /**
   * Closes (`reset`) or freezes (`stall`) the response where it is.
   * `flushHeaders`: nothing of the body was written, so the headers may still
   * sit in the response (`headersSent` is true as soon as `writeHead` ran).
   */
  async #cut (ctx: Ctx, mode: 'reset' | 'stall', flushHeaders: boolean): Promise<void> {
    const { res, signal } = ctx
    const socket = res.socket
    if (flushHeaders) res.flushHeaders()
    if (socket === null) return
    // Let the kernel have every byte written so far, so the client sees exactly them before the cut.
    for (let i = 0; i < 2500 && socket.writableLength > 0 && !socket.destroyed && !signal.aborted; i++) {
      await sleep(2, signal)
    }
    if (mode === 'reset') {
      socket.destroy()
      return
    }
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve()
      else signal.addEventListener('abort', () => resolve(), { once: true })
    })
  }
}

// --- faults ------------------------------------------------------------------

function ruleState (rule: FaultRule): RuleState {
  validateRule(rule)
  return { rule, applied: 0, random: seededRandom(rule.seed ?? 1) }
}

function validateRule (rule: FaultRule): void {
  const bad = (what: string): never => {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `fault rule: ${what}`)
  }
  const { fault } = rule
  if (rule.times !== undefined && (!Number.isSafeInteger(rule.times) || rule.times < 0)) bad('times must be a non-negative integer')
  if (rule.probability !== undefined && !(rule.probability >= 0 && rule.probability <= 1)) bad('probability must be between 0 and 1')
  switch (fault.type) {
    case 'reset':
    case 'stall':
      if (!(fault.afterBytes >= 0)) bad(`${fault.type}.afterBytes must be >= 0`)
      break
    case 'flip':
      if (fault.atByte !== undefined && !(fault.atByte >= 0)) bad('flip.atByte must be >= 0')
      break
    case 'status':
      if (!Number.isInteger(fault.status) || fault.status < 100 || fault.status > 599) bad('status.status must be an HTTP status')
      break
    case 'throttle':
      if (!(fault.bytesPerSecond > 0)) bad('throttle.bytesPerSecond must be > 0')
      break
    case 'latency':
      if (!(fault.ms >= 0)) bad('latency.ms must be >= 0')
      break
    case 'ignore-range':
    case 'range-not-satisfiable':
    case 'wrong-block':
    case 'refuse':
    case 'no-length':
    case 'endless':
    case 'bad-content-range':
      break
    default:
      bad(`unknown fault type ${(fault as { type: unknown }).type as string}`)
  }
}

function ruleMatches (rule: FaultRule, record: RequestRecord): boolean {
  const m = rule.match
  if (m === undefined) return true
  if (m.method !== undefined && m.method.toUpperCase() !== record.method.toUpperCase()) return false
  if (m.format !== undefined && m.format !== record.format) return false
  if (m.ranged !== undefined && m.ranged !== (record.range !== null)) return false
  if (m.path !== undefined) {
    if (typeof m.path === 'string') return m.path === record.path
    m.path.lastIndex = 0 // a /g or /y RegExp keeps state between test() calls
    return m.path.test(record.path)
  }
  return true
}

/** Whether a fault makes sense for this request; one that does not is not applied (and not counted). */
function faultApplies (fault: Fault, record: RequestRecord): boolean {
  switch (fault.type) {
    case 'reset':
    case 'stall':
    case 'flip':
    case 'throttle':
    case 'no-length':
    case 'endless':
      return record.method === 'GET'
    case 'ignore-range':
      return (record.range !== null && (record.method === 'GET' || record.method === 'HEAD')) ||
        (record.format === 'car' && record.url.includes('entity-bytes='))
    case 'bad-content-range':
      return record.range !== null && (record.method === 'GET' || record.method === 'HEAD')
    case 'range-not-satisfiable':
      return record.method === 'GET' || record.method === 'HEAD'
    case 'wrong-block':
      return record.format === 'raw' || record.format === 'car'
    default:
      return true
  }
}

/** `body`, then zero bytes in pieces of `piece` bytes, without end. */
async function * endless (body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, piece: number): AsyncIterable<Uint8Array> {
  yield * body
  const zeros = new Uint8Array(piece)
  while (true) yield zeros
}

/**
 * A small seeded PRNG (mulberry32), uniform in [0, 1): the fault draws of the
 * test gateway, and any test that must replay the same random choices.
 */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// --- rate limiting -------------------------------------------------------------

function checkRate (rate: number | undefined, name: string): number | undefined {
  if (rate !== undefined && !(rate > 0 && Number.isFinite(rate))) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${name} must be a positive number, got ${rate}`)
  }
  return rate
}

/**
 * Paces writes so that the bytes sent by time t never exceed rate × t: each
 * write waits until the moment its last byte is "due". Shared by every
 * response of a gateway, so connections split the rate between them.
 */
const BURST_MS = 100

class RateLimiter {
  #rate: number | undefined
  #next = 0

  constructor (rate: number | undefined) {
    this.setRate(rate)
  }

  get rate (): number | undefined { return this.#rate }

  setRate (rate: number | undefined): void {
    this.#rate = rate
    this.#next = performance.now()
  }

  async acquire (bytes: number, signal: AbortSignal): Promise<void> {
    const rate = this.#rate
    if (rate === undefined) return
    const now = performance.now()
    // A token bucket holding up to BURST_MS of the rate: time lost to late timers is made up,
    // so the gateway delivers its cap rather than ~3/4 of it, and idle time is not hoarded.
    this.#next = Math.max(now - BURST_MS, this.#next) + (bytes * 1000) / rate
    const wait = this.#next - now
    if (wait >= 1) await sleep(wait, signal)
  }
}

// --- small helpers ---------------------------------------------------------------

/** Resolves after `ms`, or as soon as `signal` aborts (never rejects: an aborted request just ends). */
async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await abortableSleep(ms, signal).catch(() => {})
}

async function waitForDrain (res: ServerResponse, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      signal.removeEventListener('abort', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
    signal.addEventListener('abort', done, { once: true })
  })
}

/** Bytes of file content asked of the exporter at a time; see {@link windowed}. */
const CONTENT_WINDOW = 1024 * 1024

/**
 * Reads `[offset, offset + length)` as a series of 1 MiB `content()` calls.
 *
 * ipfs-unixfs-exporter 16's `content()` walks the whole requested range
 * eagerly into an unbounded queue, copying every block, whatever the pace of
 * its reader: one call for a 512 MiB file grew the RSS by 550 MiB. Asking for
 * one window at a time keeps what is read ahead to about a window, so a slow
 * client (or a throttle) holds back the DAG walk as well as the socket.
 */
async function * windowed (
  offset: number,
  length: number,
  content: (offset: number, length: number) => AsyncIterable<Uint8Array>
): AsyncGenerator<Uint8Array> {
  const end = offset + length
  for (let at = offset; at < end; at += CONTENT_WINDOW) {
    yield * content(at, Math.min(CONTENT_WINDOW, end - at))
  }
}

/** Regroups a byte stream into pieces of exactly `size` bytes (the last may be shorter). */
async function * rechunk (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = []
  let pendingLength = 0
  for await (const piece of source) {
    if (piece.length === 0) continue
    let bytes = piece
    if (pendingLength > 0) {
      pending.push(piece)
      pendingLength += piece.length
      if (pendingLength < size) continue
      bytes = Buffer.concat(pending, pendingLength)
      pending = []
      pendingLength = 0
    }
    let offset = 0
    while (bytes.length - offset >= size) {
      yield bytes.subarray(offset, offset + size)
      offset += size
    }
    if (offset < bytes.length) {
      pending = [bytes.subarray(offset)]
      pendingLength = bytes.length - offset
    }
  }
  if (pendingLength > 0) yield pending.length === 1 && pending[0] !== undefined ? pending[0] : Buffer.concat(pending, pendingLength)
}

function headerValue (value: string | string[] | undefined): string | null {
  if (value === undefined) return null
  return Array.isArray(value) ? value.join(', ') : value
}

/** `/ipfs/CID/a/b` → its parts, decoded; `null` for other paths; `'bad'` for undecodable ones. */
function parseIpfsPath (pathname: string): { cidText: string, segments: string[] } | null | 'bad' {
  if (!pathname.startsWith('/ipfs/')) return null
  try {
    const parts = pathname.slice('/ipfs/'.length).split('/').map(decodeURIComponent)
    const [cidText = '', ...rest] = parts
    return { cidText, segments: rest.filter((s) => s !== '') }
  } catch {
    return 'bad'
  }
}

function detectFormat (query: URLSearchParams, accept: string | undefined): RequestFormat | null {
  const format = query.get('format')
  if (format !== null) {
    if (format === 'raw' || format === 'car') return format
    return format === '' ? 'path' : null
  }
  for (const item of (accept ?? '').split(',')) {
    const type = (item.split(';')[0] ?? '').trim().toLowerCase()
    if (type === RAW_CONTENT_TYPE) return 'raw'
    if (type === 'application/vnd.ipld.car') return 'car'
  }
  return 'path'
}

const BASES = new Map(Object.values(bases).map((b) => [b.prefix as string, b]))

/** Any CID string that multiformats can decode: CIDv0, and CIDv1 in any of its bundled bases. */
function parseCid (text: string): CID {
  if (text === '') throw new Error('empty CID')
  const first = text[0]
  if (first === 'Q' || first === 'b' || first === 'z') return CID.parse(text)
  const base = first === undefined ? undefined : BASES.get(first)
  if (base === undefined) throw new Error(`unknown multibase prefix "${first ?? ''}"`)
  return CID.decode(base.decoder.decode(text))
}

function errorStatus (err: unknown): number {
  if (err instanceof HttpError) return err.status
  if (err instanceof CidgetError && err.code === 'CIDGET_ERR_NOT_FOUND') return 404
  const name = err instanceof Error ? err.name : ''
  if (name === 'NotFoundError' || name === 'BadPathError') return 404
  return 500
}

interface ByteRange { start: number, end: number }

/**
 * One `bytes=` range against `size`. `null` means "ignore the header and send
 * everything" (malformed, or several ranges); `'unsatisfiable'` means 416.
 */
function parseRange (header: string, size: number): ByteRange | 'unsatisfiable' | null {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (m === null) return null
  const a = m[1] ?? ''
  const b = m[2] ?? ''
  if (a === '' && b === '') return null
  if (a === '') {
    const suffix = Number(b)
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(a)
  if (b !== '' && Number(b) < start) return null
  if (start >= size) return 'unsatisfiable'
  return { start, end: b === '' ? size - 1 : Math.min(Number(b), size - 1) }
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))
}

function fnv1a (text: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h.toString(16).padStart(8, '0')
}

// --- CAR -------------------------------------------------------------------------

interface EntityBytes { from: number, to: number | '*' }

/** `from:to` as in IPIP-402: integers, negative from the end, `to` may be `*`. */
function parseEntityBytes (text: string): EntityBytes {
  const m = /^(-?\d+):(-?\d+|\*)$/.exec(text)
  if (m === null || m[1] === undefined || m[2] === undefined) {
    throw new HttpError(400, `invalid entity-bytes "${text}": use from:to, e.g. 0:1023, 1024:*, -1024:*`)
  }
  return { from: Number(m[1]), to: m[2] === '*' ? '*' : Number(m[2]) }
}

interface CarPlan {
  blocks: Block[]
  /** A block below the root was missing: the stream must end abruptly after `blocks`. */
  truncated: boolean
}

class MissingBlock extends Error {}

/**
 * Lists the blocks of a CAR answer, in DFS order without duplicates: the
 * blocks of the path, then the terminal entity by scope. Only references to
 * stored blocks are kept, so even a 1 GiB file costs a few thousand entries.
 */
function carPlan (store: MemoryBlocks, resolved: Resolved, scope: 'block' | 'entity' | 'all', entityBytes: EntityBytes | null): CarPlan {
  const blocks: Block[] = []
  const seen = new Set<string>()

  /** Adds `cid` and returns its bytes, or `null` when it must not be added (identity, or already there). */
  const add = (cid: CID): Uint8Array | null => {
    if (cid.multihash.code === IDENTITY_CODE) return null
    const key = cid.toString()
    if (seen.has(key)) return null
    if (!store.has(cid)) throw new MissingBlock(key)
    const bytes = store.get(cid)
    seen.add(key)
    blocks.push({ cid, bytes })
    return bytes
  }

  const all = (cid: CID): void => {
    const bytes = add(cid)
    if (bytes === null || cid.code !== dagPb.code) return
    for (const link of dagPb.decode(bytes).Links) all(link.Hash)
  }

  /** The blocks of a file that overlap [from, to]; `base` is the file offset of `cid`'s first byte. */
  const fileRange = (cid: CID, bytes: Uint8Array, base: number, from: number, to: number): void => {
    if (cid.code !== dagPb.code) return
    const node = dagPb.decode(bytes)
    const unixfs = unmarshal(node)
    if (unixfs === null || node.Links.length !== unixfs.blockSizes.length) {
      for (const link of node.Links) all(link.Hash)
      return
    }
    let position = base + (unixfs.data?.length ?? 0)
    node.Links.forEach((link, i) => {
      const size = Number(unixfs.blockSizes[i] ?? 0n)
      if (position <= to && position + size - 1 >= from) {
        const child = add(link.Hash)
        if (child !== null) fileRange(link.Hash, child, position, from, to)
      }
      position += size
    })
  }

  const shards = (node: dagPb.PBNode, unixfs: UnixFS): void => {
    const padLength = (Number(unixfs.fanout ?? 256n) - 1).toString(16).length
    for (const link of node.Links) {
      if ((link.Name ?? '').length !== padLength) continue // a directory entry, not a sub-shard
      const bytes = add(link.Hash)
      if (bytes === null) continue
      const child = dagPb.decode(bytes)
      const childFs = unmarshal(child)
      if (childFs !== null) shards(child, childFs)
    }
  }

  const entity = (cid: CID): void => {
    const bytes = add(cid)
    if (bytes === null || cid.code !== dagPb.code) return
    const node = dagPb.decode(bytes)
    const unixfs = unmarshal(node)
    if (unixfs === null) return
    if (unixfs.type === 'hamt-sharded-directory') {
      shards(node, unixfs)
      return
    }
    if (unixfs.type !== 'file' && unixfs.type !== 'raw') return
    let from = 0
    let to = Number.POSITIVE_INFINITY
    if (entityBytes !== null) {
      const range = resolveEntityBytes(entityBytes, Number(unixfs.fileSize()))
      if (range === null) return // zero-length range: like dag-scope=block
      ;({ from, to } = range)
    }
    fileRange(cid, bytes, 0, from, to)
  }

  const terminal = resolved.cid
  try {
    for (const cid of resolved.roots.slice(0, -1)) add(cid)
    if (entityBytes !== null && terminal.code === rawCodec.code && terminal.multihash.code !== IDENTITY_CODE) {
      // A raw file: one block, but an out-of-range request is still a 400.
      resolveEntityBytes(entityBytes, store.get(terminal).length)
    }
    if (scope === 'block') add(terminal)
    else if (scope === 'entity') entity(terminal)
    else all(terminal)
  } catch (err) {
    if (!(err instanceof MissingBlock)) throw err
    return { blocks, truncated: true }
  }
  return { blocks, truncated: false }
}

function unmarshal (node: dagPb.PBNode): UnixFS | null {
  if (node.Data === undefined) return null
  try {
    return UnixFS.unmarshal(node.Data)
  } catch {
    return null
  }
}

/** IPIP-402 range against a file of `size` bytes: inclusive bounds, or `null` for an empty range. */
function resolveEntityBytes (eb: EntityBytes, size: number): { from: number, to: number } | null {
  const from = eb.from < 0 ? Math.max(0, size + eb.from) : eb.from
  const to = eb.to === '*' ? size - 1 : eb.to < 0 ? size + eb.to : Math.min(eb.to, size - 1)
  if (size > 0 && from >= size) {
    throw new HttpError(400, `entity-bytes ${eb.from}:${eb.to} is outside the entity (${size} bytes)`)
  }
  return to < from ? null : { from, to }
}

/** Body length of the CAR, and the default `flip` position: the middle byte of the middle block. */
function carLayout (root: CID, blocks: Block[]): { total: number, middle: number } {
  let total = headerLength({ roots: [root] })
  let middle: number | undefined
  const middleIndex = Math.floor(blocks.length / 2)
  blocks.forEach((block, i) => {
    const length = blockLength(block)
    if (i === middleIndex && block.bytes.length > 0) middle = total + length - block.bytes.length + Math.floor(block.bytes.length / 2)
    total += length
  })
  return { total, middle: middle ?? Math.floor(total / 2) }
}

/** The CAR bytes, produced by `CarWriter` one block at a time as the consumer pulls (its `put` waits for the reader). */
async function * carStream (root: CID, blocks: Block[]): AsyncGenerator<Uint8Array> {
  const { writer, out } = CarWriter.create([root])
  let failure: unknown
  const producer = (async () => {
    for (const block of blocks) await writer.put(block)
    await writer.close()
  })().catch((err: unknown) => { failure = err })
  yield * out
  await producer
  if (failure !== undefined) throw failure
}
