/**
 * The test gateway's HTTP server: listening, connections, the record of each
 * request, routing to an answer, and closing.
 *
 * @module
 */

import { EventEmitter } from 'node:events'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { CID } from 'multiformats/cid'
import { CidgetError } from '../../core/errors.js'
import { Answers } from './answers.js'
import { GatewayContent } from './content.js'
import { FaultRules } from './faults.js'
import { RateLimiter, checkRate, sleep } from './pace.js'
import { HttpError, IPNS_RECORD_CONTENT_TYPE, detectFormat, errorStatus, headerValue, parseCid, parseIpfsPath } from './request.js'
import type { Ctx } from './request.js'
import { Responder } from './respond.js'
import { DEFAULT_TEST_GATEWAY_CHUNK_SIZE } from './types.js'
import type { FaultRule, RequestRecord, TestGateway, TestGatewayEvents, TestGatewayOptions } from './types.js'

export class TestGatewayServer extends EventEmitter<TestGatewayEvents> implements TestGateway {
  readonly #limiter: RateLimiter
  readonly #respond: Responder
  readonly #answers: Answers
  readonly #faults = new FaultRules()
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  readonly #active = new Set<Ctx>()
  readonly #requests: RequestRecord[] = []
  readonly #ipns: Map<string, Uint8Array>
  #nextId = 1
  #url = ''
  #closing: Promise<void> | undefined

  constructor (opts: TestGatewayOptions) {
    super()
    const chunkSize = opts.chunkSize ?? DEFAULT_TEST_GATEWAY_CHUNK_SIZE
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', `chunkSize must be a positive integer, got ${chunkSize}`)
    }
    this.#limiter = new RateLimiter(checkRate(opts.maxBytesPerSecond, 'maxBytesPerSecond'))
    this.#respond = new Responder(chunkSize, this.#limiter, (record) => this.emit('progress', record))
    this.#answers = new Answers(new GatewayContent(opts.blocks), this.#respond)
    this.#ipns = new Map(opts.ipnsRecords ?? [])
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
    this.#faults.add(rule)
  }

  setFaults (rules: FaultRule[]): void {
    this.#faults.set(rules)
  }

  clearFaults (): void {
    this.#faults.clear()
  }

  setMaxBytesPerSecond (bytesPerSecond: number | undefined): void {
    this.#limiter.setRate(checkRate(bytesPerSecond, 'maxBytesPerSecond'))
  }

  setIpnsRecord (name: string, record: Uint8Array | undefined): void {
    if (record === undefined) this.#ipns.delete(name)
    else this.#ipns.set(name, record)
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
      format: ipfs === null && !url.pathname.startsWith('/ipns/') ? null : detectFormat(url.searchParams, req.headers.accept),
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
      this.#respond.sendText(ctx, 400, 'bad percent-encoding in path\n')
      return
    }
    this.#handle(ctx).catch((err: unknown) => { this.#fail(ctx, err) })
  }

  #fail (ctx: Ctx, err: unknown): void {
    const { res } = ctx
    if (ctx.signal.aborted || res.destroyed) return
    if (res.headersSent) {
      // Too late for another status: end the connection so the client sees a broken body, not a short one.
      void this.#respond.cut(ctx, 'reset', ctx.record.bytesSent === 0)
      return
    }
    const status = err instanceof HttpError ? err.status : errorStatus(err)
    const message = err instanceof Error ? err.message : String(err)
    this.#respond.sendText(ctx, status, `${message}\n`)
  }

  async #handle (ctx: Ctx): Promise<void> {
    const { req, record } = ctx
    const fault = this.#faults.pick(record)
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
      this.#respond.sendText(ctx, fault.status, `injected fault: status ${fault.status}\n`, headers)
      return
    }
    if (record.method !== 'GET' && record.method !== 'HEAD') {
      this.#respond.sendText(ctx, 405, 'only GET and HEAD are supported\n', { Allow: 'GET, HEAD' })
      return
    }
    if (ctx.ipfs === null && ctx.rawPath.startsWith('/ipns/')) {
      this.#ipnsRecord(ctx)
      return
    }
    if (ctx.ipfs === null) {
      this.#respond.sendText(ctx, 404, 'not found: the test gateway serves /ipfs/CID[/path] only\n')
      return
    }
    if (record.format === null || record.format === 'ipns-record') {
      this.#respond.sendText(ctx, 400, `unsupported format: ${ctx.query.get('format') ?? ''}\n`)
      return
    }
    let cid: CID
    try {
      cid = parseCid(ctx.ipfs.cidText)
    } catch (err) {
      this.#respond.sendText(ctx, 400, `invalid CID "${ctx.ipfs.cidText}": ${err instanceof Error ? err.message : String(err)}\n`)
      return
    }
    switch (record.format) {
      case 'raw': await this.#answers.raw(ctx, cid, fault); return
      case 'car': await this.#answers.car(ctx, cid, fault); return
      default: await this.#answers.path(ctx, cid, fault)
    }
  }

  /** `/ipns/NAME` as a record (`?format=ipns-record`); a name without a record, or another format, is a 404. */
  #ipnsRecord (ctx: Ctx): void {
    const name = ctx.rawPath.slice('/ipns/'.length).split('/')[0] ?? ''
    const bytes = ctx.record.format === 'ipns-record' ? this.#ipns.get(name) : undefined
    if (bytes === undefined) {
      this.#respond.sendText(ctx, 404, ctx.record.format === 'ipns-record' ? `no IPNS record for ${name}\n` : 'the test gateway serves /ipns/ names as records only\n')
      return
    }
    this.#respond.head(ctx, 200, { 'Content-Type': IPNS_RECORD_CONTENT_TYPE, 'Content-Length': String(bytes.byteLength), 'Cache-Control': 'public, max-age=60' })
    if (ctx.record.method === 'HEAD') {
      ctx.res.end()
      return
    }
    ctx.res.end(bytes)
    ctx.record.bytesSent = bytes.byteLength
  }
}
