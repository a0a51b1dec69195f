/**
 * The REST API (`/api/downloads…`, `/api/gateways`) and `/metrics`. Each
 * route is one engine call; errors go to the app's one error handler.
 */
import { resolve } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { CidgetError } from '../core/errors.js'
import type { DownloadRecord } from '../core/types.js'
import type { Downloader } from '../engine/downloader.js'
import { authenticate } from './auth.js'
import { checkJsonContentType } from './origin.js'
import { renderMetrics, type MetricsCollector } from './metrics.js'
import { isWithin, confinedOutput } from '../sink/confine.js'
import {
  LIST_LIMIT, addBodySchema, clearBodySchema, type ClearBody, deleteQuerySchema, idParamsSchema, limitBodySchema, listQuerySchema, noQuerySchema,
  type AddBody, type DeleteQuery, type IdParams, type LimitBody, type ListQuery
} from './schemas.js'
import { parseRate } from '../gateways/limiter.js'
import { clearDownloads } from '../engine/clear.js'

/** A rate of a request body: bytes per second, undefined for none (null, 0). */
function rateOf (value: number | string | null | undefined): number | undefined {
  return value === null || value === undefined ? undefined : parseRate(value, 'limitRate')
}

/** A page of `GET /api/downloads`: `nextCursor` is null on the last page. */
export interface DownloadPage {
  items: DownloadRecord[]
  nextCursor: string | null
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route also takes its token as `?token=` (browsers cannot set headers on WebSocket and EventSource). */
    tokenInQuery?: boolean
  }
}

/**
 * Every route registered in `api` (an encapsulated context) needs the token,
 * and its state-changing requests `Content-Type: application/json` (checked
 * after the token, before the body is read); `/healthz` and the dashboard
 * live outside it.
 */
export function requireToken (api: FastifyInstance, token: string | null): void {
  api.addHook('onRequest', async (request) => {
    authenticate(request, token, request.routeOptions.config.tokenInQuery === true)
    checkJsonContentType(request)
  })
}

export function registerApi (api: FastifyInstance, opts: { downloader: Downloader, dir: string, metrics: MetricsCollector }): void {
  const { downloader: dl, dir, metrics } = opts

  const mustGet = async (id: number): Promise<DownloadRecord> => {
    const rec = await dl.get(id)
    if (rec === undefined) throw new CidgetError('CIDGET_ERR_UNKNOWN_DOWNLOAD', `No download with id ${id}`)
    return rec
  }

  api.post<{ Body: AddBody }>('/api/downloads', { schema: { body: addBodySchema, querystring: noQuerySchema } }, async (request, reply) => {
    const b = request.body
    const output = await confinedOutput(dir, b.output)
    const limitRate = rateOf(b.limitRate)
    const job = await dl.add(b.target, {
      output,
      ...(limitRate === undefined ? {} : { limitRate }),
      ...(b.mode === undefined ? {} : { mode: b.mode }),
      ...(b.sha256 === undefined ? {} : { sha256: b.sha256 }),
      ...(b.gateways === undefined ? {} : { gateways: b.gateways }),
      ...(b.priority === undefined ? {} : { priority: b.priority })
    })
    return await reply.code(201).send(job.record)
  })

  api.get<{ Querystring: ListQuery }>('/api/downloads', { schema: { querystring: listQuerySchema } }, async (request): Promise<DownloadPage> => {
    const { status, cursor } = request.query
    const limit = request.query.limit ?? LIST_LIMIT.default
    // one more than asked: whether there is a next page, without an empty last one
    const rows = await dl.list({ ...(status === undefined ? {} : { status }), limit: limit + 1, afterId: cursor === undefined ? 0 : Number(cursor) })
    const items = rows.slice(0, limit)
    const last = items[items.length - 1]
    return { items, nextCursor: rows.length > limit && last !== undefined ? String(last.id) : null }
  })

  api.get<{ Params: IdParams }>('/api/downloads/:id', { schema: { params: idParamsSchema, querystring: noQuerySchema } }, async (request) => {
    return await mustGet(request.params.id)
  })

  const action = { schema: { params: idParamsSchema, querystring: noQuerySchema } }
  api.post<{ Params: IdParams }>('/api/downloads/:id/pause', action, async (request) => await dl.pause(request.params.id))
  api.post<{ Params: IdParams }>('/api/downloads/:id/cancel', action, async (request) => await dl.cancel(request.params.id))
  // answers once the download is queued; its status changes when the run starts (watch /api/events)
  api.post<{ Params: IdParams }>('/api/downloads/:id/resume', action, async (request) => (await dl.resume(request.params.id)).record)

  api.delete<{ Params: IdParams, Querystring: DeleteQuery }>('/api/downloads/:id', { schema: { params: idParamsSchema, querystring: deleteQuerySchema } }, async (request, reply) => {
    const { id } = request.params
    const deleteFile = request.query.deleteFile === true
    if (deleteFile) {
      // a record the local CLI made can name a file anywhere: the API deletes files inside --dir only
      const rec = await mustGet(id)
      if (!isWithin(resolve(dir), rec.output)) {
        throw new CidgetError('CIDGET_ERR_OUTSIDE_DIR', `Download ${id} writes to ${rec.output}, outside the service's directory; its file is not deleted through the API`)
      }
    }
    await dl.remove(id, { deleteFile })
    return await reply.code(204).send()
  })

  // the records of downloads that ended (finished files stay; failed and cancelled ones' partial data goes)
  api.post<{ Body: ClearBody }>('/api/downloads/clear', { schema: { querystring: noQuerySchema, body: clearBodySchema } },
    async (request) => await clearDownloads(dl, request.body.status))

  // a download's own bandwidth limit, changed while it runs; the process's limit, shared by all its downloads
  api.post<{ Params: IdParams, Body: LimitBody }>('/api/downloads/:id/limit', { schema: { params: idParamsSchema, querystring: noQuerySchema, body: limitBodySchema } },
    async (request) => await dl.setDownloadLimit(request.params.id, rateOf(request.body.limitRate) ?? null))
  api.get('/api/limit', { schema: { querystring: noQuerySchema } }, async () => ({ limitRate: dl.limitRate ?? null }))
  api.put<{ Body: LimitBody }>('/api/limit', { schema: { querystring: noQuerySchema, body: limitBodySchema } }, async (request) => {
    dl.setLimitRate(rateOf(request.body.limitRate))
    return { limitRate: dl.limitRate ?? null }
  })

  api.get('/api/gateways', { schema: { querystring: noQuerySchema } }, async () => ({ gateways: dl.gatewayStats() }))

  api.get('/metrics', { schema: { querystring: noQuerySchema } }, async (_request, reply) => {
    return await reply.type('text/plain; version=0.0.4; charset=utf-8').send(await renderMetrics(dl, metrics))
  })
}
