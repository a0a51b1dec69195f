/**
 * The three kinds of answer: a file on the path gateway, a raw block, and a
 * CAR (trustless gateway).
 *
 * @module
 */

import { exporter } from 'ipfs-unixfs-exporter'
import type { CID } from 'multiformats/cid'
import { windowed } from './body.js'
import { carLayout, carPlan, carStream, fnv1a, lazyCar, parseEntityBytes } from './car.js'
import type { CarPlan } from './car.js'
import type { GatewayContent } from './content.js'
import { CAR_CONTENT_TYPE, HttpError, IMMUTABLE, RAW_CONTENT_TYPE } from './request.js'
import type { Ctx } from './request.js'
import type { Responder } from './respond.js'
import type { Fault } from './types.js'

/** Answers a request for content once the server has routed it and picked its fault. */
export class Answers {
  readonly #content: GatewayContent
  readonly #respond: Responder

  constructor (content: GatewayContent, respond: Responder) {
    this.#content = content
    this.#respond = respond
  }

  async path (ctx: Ctx, cid: CID, fault: Fault | null): Promise<void> {
    const { cid: target } = await this.#content.resolve(cid, ctx.ipfs?.segments ?? [], ctx.signal)
    const entry = await exporter(target, this.#content.store, { signal: ctx.signal })
    if (entry.type === 'directory') {
      throw new HttpError(501, 'the test gateway does not list directories; request a file inside it')
    }
    if (entry.type !== 'file' && entry.type !== 'raw' && entry.type !== 'identity') {
      throw new HttpError(501, `the test gateway cannot serve a ${entry.type} node on the path gateway`)
    }
    const size = entry.type === 'file' ? Number(entry.unixfs.fileSize()) : entry.node.length
    const etag = `"${entry.cid.toString()}"`
    const signal = ctx.signal
    await this.#respond.serveSized(ctx, {
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

  async raw (ctx: Ctx, cid: CID, fault: Fault | null): Promise<void> {
    if (ctx.ipfs !== null && ctx.ipfs.segments.length > 0) {
      throw new HttpError(400, 'a raw block has no paths: request /ipfs/CID?format=raw')
    }
    let bytes = this.#content.blocks.get(cid)
    if (fault?.type === 'wrong-block') bytes = this.#content.wrongBytes(cid, bytes)
    const etag = `"${cid.toString()}.raw"`
    await this.#respond.serveSized(ctx, {
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

  async car (ctx: Ctx, cid: CID, fault: Fault | null): Promise<void> {
    const { record, res } = ctx
    const scopeParam = ctx.query.get('dag-scope') ?? 'all'
    if (scopeParam !== 'block' && scopeParam !== 'entity' && scopeParam !== 'all') {
      throw new HttpError(400, `invalid dag-scope "${scopeParam}": use block, entity or all`)
    }
    const bytesParam = ctx.query.get('entity-bytes')
    const entityBytes = bytesParam === null ? null : parseEntityBytes(bytesParam)
    // a gateway that does not know entity-bytes sends the whole entity
    const served = fault?.type === 'ignore-range' ? null : entityBytes
    const resolved = await this.#content.resolve(cid, ctx.ipfs?.segments ?? [], ctx.signal)
    // a plain answer of a whole entity or DAG streams as the walk finds its blocks (a real gateway's
    // first byte does not wait for a walk of the whole DAG); the others are planned first
    const lazy = entityBytes === null && (fault === null || ['latency', 'throttle', 'reset', 'stall'].includes(fault.type))
      ? lazyCar(this.#content.blocks, resolved, scopeParam)
      : undefined
    // a gateway that does not know dag-scope sends the terminal block alone, whatever was asked
    const plan = lazy !== undefined
      ? undefined
      : fault?.type === 'ignore-scope'
        ? carPlan(this.#content.blocks, resolved, 'block', null)
        : carPlan(this.#content.blocks, resolved, entityBytes === null ? scopeParam : 'entity', served)
    if (fault?.type === 'wrong-block' && plan?.blocks[0] !== undefined) {
      const first = plan.blocks[0]
      plan.blocks[0] = { cid: first.cid, bytes: this.#content.wrongBytes(first.cid, first.bytes) }
    }
    record.carBlocks = lazy?.sent ?? (plan as CarPlan).blocks.map((b) => b.cid.toString())
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
    if (fault?.type === 'range-not-satisfiable' && plan !== undefined) {
      this.#respond.head(ctx, 416, { ...headers, 'Content-Range': `bytes */${carLayout(cid, plan.blocks).total}`, 'Content-Length': '0' })
      res.end()
      return
    }
    // a HEAD's record lists the blocks too (walked before the answer, so that a walk's error is still a 500)
    if (record.method === 'HEAD') lazy?.finish()
    this.#respond.head(ctx, 200, headers)
    if (record.method === 'HEAD') {
      res.end()
      return
    }
    if (lazy !== undefined) {
      // the record lists every block of the answer by the time the server reports the request's end, even an aborted one's
      ctx.signal.addEventListener('abort', () => { lazy.finish() }, { once: true })
      try {
        await this.#respond.writeBody(ctx, carStream(cid, lazy.blocks), fault, undefined, lazy.truncated)
      } finally {
        lazy.finish()
      }
      return
    }
    const p = plan as CarPlan
    const flipAt = fault?.type === 'flip' ? (fault.atByte ?? carLayout(cid, p.blocks).middle) : undefined
    await this.#respond.writeBody(ctx, carStream(cid, p.blocks), fault, flipAt, p.truncated)
  }
}
