/**
 * Writing an answer: status and headers, `Range` and `If-Range` against a
 * body of known size, and the body itself in paced writes with the body
 * faults (cut, stall, flip, throttle, endless) applied on the way.
 *
 * @module
 */

import type { ServerResponse } from 'node:http'
import { endless, rechunk } from './body.js'
import { RateLimiter, sleep } from './pace.js'
import { headerValue, parseRange } from './request.js'
import type { ByteRange, Ctx } from './request.js'
import type { Fault, RequestRecord } from './types.js'

/** A body of known size, as the path and raw answers offer it. */
export interface SizedResource {
  size: number
  etag: string
  headers: Record<string, string>
  body: (offset: number, length: number) => AsyncIterable<Uint8Array> | Iterable<Uint8Array>
}

/** Writes the answers of one gateway, through its shared bandwidth cap. */
export class Responder {
  readonly #chunkSize: number
  readonly #limiter: RateLimiter
  readonly #onProgress: (record: RequestRecord) => void

  constructor (chunkSize: number, limiter: RateLimiter, onProgress: (record: RequestRecord) => void) {
    this.#chunkSize = chunkSize
    this.#limiter = limiter
    this.#onProgress = onProgress
  }

  /** Status, Range, If-Range and the range faults for a body of known size. */
  async serveSized (ctx: Ctx, resource: SizedResource, fault: Fault | null): Promise<void> {
    const { req, res, record } = ctx
    const { size } = resource
    let range: ByteRange | 'unsatisfiable' | null = null
    if (req.headers.range !== undefined && fault?.type !== 'ignore-range') {
      const ifRange = headerValue(req.headers['if-range'])
      if (ifRange === null || ifRange === resource.etag) range = parseRange(req.headers.range, size)
    }
    if (fault?.type === 'range-not-satisfiable') range = 'unsatisfiable'
    if (range === 'unsatisfiable') {
      this.head(ctx, 416, {
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
    this.head(ctx, status, headers)
    if (record.method === 'HEAD') {
      res.end()
      return
    }
    const flipAt = fault?.type === 'flip' ? (fault.atByte ?? Math.floor(length / 2)) : undefined
    const body = length === 0 ? [] : resource.body(start, length)
    await this.writeBody(ctx, fault?.type === 'endless' ? endless(body, this.#chunkSize) : body, fault, flipAt, false)
  }

  head (ctx: Ctx, status: number, headers: Record<string, string>): void {
    ctx.res.writeHead(status, headers)
    ctx.record.status = status
  }

  sendText (ctx: Ctx, status: number, text: string, headers: Record<string, string> = {}): void {
    const body = Buffer.from(text)
    this.head(ctx, status, {
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
  async writeBody (
    ctx: Ctx,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    fault: Fault | null,
    flipAt: number | undefined,
    truncated: boolean | (() => boolean)
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
          await this.cut(ctx, cutMode, sent === 0)
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
        this.#onProgress(record)
        if (!ok) await waitForDrain(res, signal)
      }
    }
    if (signal.aborted) return
    if (cutAt !== undefined) {
      await this.cut(ctx, cutMode, sent === 0)
      return
    }
    if (typeof truncated === 'function' ? truncated() : truncated) {
      await this.cut(ctx, 'reset', sent === 0)
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
  async cut (ctx: Ctx, mode: 'reset' | 'stall', flushHeaders: boolean): Promise<void> {
    const { res, signal } = ctx
    const socket = res.socket
    if (flushHeaders) res.flushHeaders()
    if (socket === null) return
    // Let the kernel have every byte written so far, so the client sees exactly them before the cut.
    for (let i = 0; i < 2500 && (res.writableLength > 0 || socket.writableLength > 0) && !socket.destroyed && !signal.aborted; i++) {
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
