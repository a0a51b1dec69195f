import type { Readable } from 'node:stream'
import { Agent, buildConnector, interceptors, request, type Dispatcher } from 'undici'
import { CidgetError, systemCode, isNetworkCode } from '../core/errors.js'
import { DEFAULTS } from '../core/defaults.js'
import type { AddressGuard } from './address.js'
import { proxyDispatcher, proxyRefusal, type ProxySettings } from './proxy.js'
import type { RateLimiter } from './limiter.js'

export interface HttpClientInit {
  /** Idle timeout in ms: for the connection, the headers, and each gap between body chunks. */
  timeoutMs?: number
  /** Bring your own undici dispatcher (it is not closed by `close()`). */
  dispatcher?: Dispatcher
  /** Redirects followed per request; default 5. */
  maxRedirections?: number
  userAgent?: string
  /**
   * Checks every connection (redirects included) against the addresses its
   * origin may reach: see {@link AddressGuard}. Not applied to a `dispatcher`
   * of your own. @default none: every address
   */
  guard?: AddressGuard
  /**
   * Connection failures say only that the connection failed or timed out, with
   * no system error code or address (a service's clients must not learn which
   * ports of a host are open). @default false
   */
  opaqueErrors?: boolean
  /** Sends requests through these proxies (not applied to a `dispatcher` of your own). @default none: direct */
  proxy?: ProxySettings
  /** Bandwidth limits every response body passes through (see {@link HttpClient.limited}). @default none */
  limiters?: RateLimiter[]
}

export interface HttpResponse {
  status: number
  /** Lower-cased header names; repeated headers joined with ", ". */
  headers: Record<string, string>
  /** The body; errors are CidgetErrors (CIDGET_ERR_TIMEOUT phase body, CIDGET_ERR_STREAM_RESET). */
  body: AsyncIterable<Uint8Array>
  /** Stops reading and frees the connection. */
  discard: () => void
}

function flattenHeaders (raw: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v
  }
  return out
}

/** Maps an undici/socket error to a CidgetError; rethrows the abort reason when the signal fired. */
function mapError (err: unknown, gateway: string, phase: 'request' | 'body', signal?: AbortSignal, opaque = false): unknown {
  if (signal?.aborted === true) return signal.reason
  if (err instanceof CidgetError) return err
  const refusal = proxyRefusal(err, gateway, opaque)
  if (refusal !== undefined) return refusal
  const code = systemCode(err)
  if (opaque) return opaqueError(err, code, gateway, phase)
  const detail = err instanceof Error ? err.message : String(err)
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new CidgetError('CIDGET_ERR_TIMEOUT', `${gateway}: connect timed out`, { cause: err, gateway, phase: 'connect' })
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new CidgetError('CIDGET_ERR_TIMEOUT', `${gateway}: no response headers within the timeout`, { cause: err, gateway, phase: 'headers' })
  }
  if (code === 'UND_ERR_BODY_TIMEOUT') {
    return new CidgetError('CIDGET_ERR_TIMEOUT', `${gateway}: no body bytes within the timeout`, { cause: err, gateway, phase: 'body' })
  }
  if (phase === 'body') {
    return new CidgetError('CIDGET_ERR_STREAM_RESET', `${gateway}: connection lost mid-body (${code ?? detail})`, { cause: err, gateway })
  }
  if (isNetworkCode(code) || code?.startsWith('UND_ERR') === true) {
    return new CidgetError('CIDGET_ERR_NETWORK', `${gateway}: ${code ?? ''} ${detail}`.trim(), { cause: err, gateway })
  }
  return new CidgetError('CIDGET_ERR_NETWORK', `${gateway}: ${detail}`, { cause: err, gateway })
}

/**
 * The same classes as `mapError`, told without the details: refused, reset,
 * unreachable and timed out before the answer all read "the connection
 * failed", so that an error cannot tell an open port from a closed one.
 */
function opaqueError (err: unknown, code: string | undefined, gateway: string, phase: 'request' | 'body'): CidgetError {
  if (code === 'UND_ERR_BODY_TIMEOUT') {
    return new CidgetError('CIDGET_ERR_TIMEOUT', `${gateway}: no body bytes within the timeout`, { cause: err, gateway, phase: 'body' })
  }
  if (phase === 'body') return new CidgetError('CIDGET_ERR_STREAM_RESET', `${gateway}: connection lost mid-body`, { cause: err, gateway })
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new CidgetError('CIDGET_ERR_TIMEOUT', `${gateway}: no answer within the timeout`, { cause: err, gateway, phase: 'headers' })
  }
  return new CidgetError('CIDGET_ERR_NETWORK', `${gateway}: the connection failed`, { cause: err, gateway })
}

/**
 * undici's connector with every connection checked by `guard` first: an IP
 * literal at once, a name through the lookup that `net.connect` calls, so the
 * check sees the very addresses the socket connects to. Nothing is sent to a
 * refused address: the connection is never opened.
 */
function guardedConnector (guard: AddressGuard, timeoutMs: number): buildConnector.connector {
  const open = buildConnector({ timeout: timeoutMs, ...(guard.resolver === undefined ? {} : { lookup: guard.resolver }) } as buildConnector.BuildOptions)
  const checked = buildConnector({ timeout: timeoutMs, lookup: guard.lookup } as buildConnector.BuildOptions)
  return (opts, callback) => {
    const { guarded, error } = guard.check(opts.protocol, opts.hostname, opts.port)
    if (error !== undefined) {
      queueMicrotask(() => { callback(error, null) })
      return
    }
    ;(guarded ? checked : open)(opts, callback)
  }
}

function prematureClose (): Error {
  return Object.assign(new Error('the response body closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })
}

/** Chunks held before the body is paused (what the socket delivered while the reader was busy). */
const BODY_QUEUE_CHUNKS = 4

/**
 * The body's chunks one by one, as the socket delivered them. A `for await`
 * over the stream itself would hand over everything buffered at each step,
 * copied into one new buffer: a copy of most of the bytes when the reader is
 * the slower side, and more garbage for the collector. Here a busy reader
 * pauses the stream after a few chunks instead (the same backpressure).
 * Listens from the moment it is called, before the first read: a body that
 * fails before it is read (a reset right after the headers) fails the read.
 */
function chunksOf (body: Readable): AsyncGenerator<Uint8Array> {
  const queue: Uint8Array[] = []
  let ended = false
  let failure: { err: unknown } | undefined
  let wake: (() => void) | undefined
  const notify = (): void => {
    const w = wake
    wake = undefined
    w?.()
  }
  const onData = (chunk: Uint8Array): void => {
    queue.push(chunk)
    if (queue.length >= BODY_QUEUE_CHUNKS) body.pause()
    notify()
  }
  const onEnd = (): void => { ended = true; notify() }
  const onError = (err: unknown): void => { failure = { err }; notify() }
  // destroyed without an error: the body ended short
  const onClose = (): void => {
    if (!ended && failure === undefined) failure = { err: prematureClose() }
    notify()
  }
  body.on('data', onData)
  body.once('end', onEnd)
  body.once('error', onError)
  body.once('close', onClose)
  async function * read (): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const chunk = queue.shift()
        if (chunk !== undefined) {
          if (queue.length === 0 && body.isPaused() && !ended) body.resume()
          yield chunk
          continue
        }
        if (failure !== undefined) throw failure.err
        if (ended) return
        await new Promise<void>((resolve) => { wake = resolve })
      }
    } finally {
      body.off('data', onData)
      body.off('end', onEnd)
      body.off('error', onError)
      body.off('close', onClose)
      // a reader that stopped early: free the connection (an error after this is nobody's)
      if (!ended) {
        body.on('error', () => {})
        body.destroy()
      }
    }
  }
  return read()
}

/**
 * A small HTTP GET client over undici with idle (not total) timeouts, redirects,
 * and errors classified into CidgetErrors that name the gateway and the phase.
 */
export class HttpClient {
  readonly #dispatcher: Dispatcher
  readonly #own: Dispatcher | undefined
  readonly #timeoutMs: number
  readonly #userAgent: string
  readonly #opaque: boolean
  readonly #limiters: RateLimiter[]

  constructor (init: HttpClientInit = {}) {
    this.#timeoutMs = init.timeoutMs ?? DEFAULTS.TIMEOUT_MS
    this.#userAgent = init.userAgent ?? 'cidget'
    this.#opaque = init.opaqueErrors ?? false
    this.#limiters = init.limiters ?? []
    if (init.dispatcher !== undefined) {
      this.#dispatcher = init.dispatcher
    } else {
      const options: Agent.Options = {
        ...(init.guard === undefined ? { connectTimeout: this.#timeoutMs } : { connect: guardedConnector(init.guard, this.#timeoutMs) }),
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
        keepAliveTimeout: 4_000,
        connections: 16
      }
      this.#own = init.proxy === undefined ? new Agent(options) : proxyDispatcher(init.proxy, options, init.guard)
      this.#dispatcher = this.#own.compose(interceptors.redirect({ maxRedirections: init.maxRedirections ?? 5 }))
    }
  }

  get timeoutMs (): number {
    return this.#timeoutMs
  }

  /**
   * This client with one more bandwidth limit (a download's own): the same
   * connections, its bodies also pass through `limiter`. Closing it closes nothing.
   */
  limited (limiter: RateLimiter): HttpClient {
    return new HttpClient({
      timeoutMs: this.#timeoutMs,
      userAgent: this.#userAgent,
      opaqueErrors: this.#opaque,
      dispatcher: this.#dispatcher,
      limiters: [...this.#limiters, limiter]
    })
  }

  /**
   * Sends a request and returns once the headers arrived. `gateway` names the
   * source in errors. Throws CidgetError (NETWORK, TIMEOUT) or the abort reason.
   */
  async request (url: string, opts: { gateway: string, method?: 'GET' | 'HEAD', headers?: Record<string, string>, signal?: AbortSignal }): Promise<HttpResponse> {
    const { gateway, signal } = opts
    let res: Dispatcher.ResponseData
    try {
      res = await request(url, {
        method: opts.method ?? 'GET',
        headers: { 'user-agent': this.#userAgent, ...opts.headers },
        dispatcher: this.#dispatcher,
        signal,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs
      })
    } catch (err) {
      throw mapError(err, gateway, 'request', signal, this.#opaque)
    }
    const body = res.body
    const chunks = chunksOf(body)
    const opaque = this.#opaque
    const limiters = this.#limiters
    async function * iterate (): AsyncGenerator<Uint8Array> {
      try {
        if (limiters.length === 0) {
          yield * chunks
          return
        }
        for await (const chunk of chunks) {
          // reading waits while a limit is spent: the socket's flow control holds the sender back
          for (const limiter of limiters) await limiter.take(chunk.byteLength, signal)
          yield chunk
        }
      } catch (err) {
        throw mapError(err, gateway, 'body', signal, opaque)
      }
    }
    let discarded = false
    return {
      status: res.statusCode,
      headers: flattenHeaders(res.headers),
      body: iterate(),
      discard: () => {
        if (discarded) return
        discarded = true
        // nobody reads it any more: swallow the abort error that destroying it emits
        body.on('error', () => {})
        body.destroy()
      }
    }
  }

  async close (): Promise<void> {
    // destroy, not close: close() would wait for a stalled response that nobody reads any more
    if (this.#own !== undefined) await this.#own.destroy()
  }
}

/**
 * The whole body of `res`, at most `max` bytes: past them the answer is
 * discarded and `over()` thrown (small answers read whole: a record, a DNS answer).
 */
export async function readBody (res: HttpResponse, max: number, over: () => Error): Promise<Buffer> {
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of res.body) {
    size += chunk.byteLength
    if (size > max) {
      res.discard()
      throw over()
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, size)
}
