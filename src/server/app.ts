/**
 * The service: a fastify app over one Downloader. Routes, auth, the error
 * shape and the live events are set up here; the behaviour is the engine's.
 */
import { readFileSync } from 'node:fs'
import { makeDirs } from '../sink/dirs.js'
import type { ServerResponse } from 'node:http'
import { resolve } from 'node:path'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import websocket from '@fastify/websocket'
import { CidgetError } from '../core/errors.js'
import type { Downloader } from '../engine/downloader.js'
import { registerDashboard } from './dashboard.js'
import { errorResponse } from './errors.js'
import { EventHub } from './events.js'
import { MetricsCollector } from './metrics.js'
import { checkOrigin } from './origin.js'
import { registerApi, requireToken } from './routes.js'
import { formatValidationErrors } from './schemas.js'
import { registerEvents } from './stream.js'

/** Options of {@link buildServer}. */
export interface ServerInit {
  /** The engine the service drives. Not closed with the server: its owner closes it. */
  downloader: Downloader
  /** Outputs of downloads added through the API are resolved inside this directory (created if missing). */
  dir: string
  /** The bearer token every `/api/*` and `/metrics` request needs, or `null` for none (loopback Host names only). */
  token: string | null
  /** fastify's logger option. @default false */
  logger?: FastifyServerOptions['logger']
  /** Least time between two progress events of one download on `/api/events`. @default 250 */
  progressIntervalMs?: number
  /** An SSE comment this often on `/api/events` keeps proxies and idle timeouts from closing the stream. @default 15000 */
  eventsKeepaliveMs?: number
  /** An `/api/events` client further behind than this many bytes is disconnected (WebSocket close code 1013). @default 4 MiB */
  maxEventBacklogBytes?: number
}

/** One route of the app, as registered (HEAD routes fastify adds included). */
export interface RouteEntry {
  method: string
  url: string
}

const ROUTES = new WeakMap<FastifyInstance, RouteEntry[]>()

/** Every route `buildServer` registered on this app, in order: what the auth tests walk. */
export function routesOf (app: FastifyInstance): readonly RouteEntry[] {
  return ROUTES.get(app) ?? []
}

/** The package version, for `/healthz`. */
export const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** Shutting down: every WebSocket gets a close frame, and a client that does not answer within a second is cut off. */
const WS_CLOSE_GRACE_MS = 1_000

/** A URL with the value of every `token=` query parameter replaced (`/api/events?token=…` must not reach a log). */
export function redactUrl (url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]')
}

/** fastify's logger option with a request serializer that logs the URL without its token. */
function redactingLogger (logger: NonNullable<ServerInit['logger']>): FastifyServerOptions['logger'] {
  if (logger === false) return false
  const opts = logger === true ? {} : logger
  return {
    ...opts,
    serializers: {
      ...opts.serializers,
      req: (req: { method?: string, url?: string, host?: string, ip?: string, socket?: { remotePort?: number } }) => ({
        method: req.method,
        url: redactUrl(req.url ?? ''),
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort
      })
    }
  }
}

/**
 * Builds the service's fastify app (not listening yet): the REST API, the
 * events endpoint (WebSocket and SSE), `/healthz`, `/metrics` and the
 * dashboard. `app.close()` ends event streams and detaches from the engine.
 */
export async function buildServer (init: ServerInit): Promise<FastifyInstance> {
  const { downloader } = init
  const dir = resolve(init.dir)
  await makeDirs(dir)
  if (init.token !== null && init.token.length === 0) throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'The token must not be empty')

  const app = Fastify({
    logger: redactingLogger(init.logger ?? false),
    // refuse unknown fields instead of dropping them (fastify's default removes them)
    ajv: { customOptions: { removeAdditional: false } },
    schemaErrorFormatter: formatValidationErrors,
    return503OnClosing: true
  })

  const routes: RouteEntry[] = []
  ROUTES.set(app, routes)
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url })
  })

  // JSON bodies; an empty one is no body at all (clients often send the header with nothing after it)
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (text.trim() === '') { done(null, undefined); return }
    try {
      done(null, JSON.parse(text))
    } catch (err) {
      done(Object.assign(new Error(`The body is not valid JSON: ${(err as Error).message}`), { statusCode: 400 }), undefined)
    }
  })

  app.setErrorHandler((err, request, reply) => {
    const { status, body, error } = errorResponse(err)
    if (status >= 500) request.log.error({ err }, 'request failed')
    if (error.code === 'CIDGET_ERR_UNAUTHORIZED') void reply.header('www-authenticate', 'Bearer realm="cidget"')
    void reply.code(status).send(body)
  })
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.replace(/\?.*$/s, '')
    const { status, body } = errorResponse(new CidgetError('CIDGET_ERR_NOT_FOUND', `No route ${request.method} ${path}`))
    void reply.code(status).send(body)
  })

  const hub = new EventHub(downloader, init.progressIntervalMs === undefined ? {} : { progressIntervalMs: init.progressIntervalMs })
  const metrics = new MetricsCollector(downloader)
  const streams = new Set<ServerResponse>()
  app.addHook('preClose', async () => {
    for (const res of streams) res.end()
    streams.clear()
  })
  app.addHook('onClose', async () => {
    hub.close()
    metrics.close()
  })

  await app.register(websocket, {
    options: { maxPayload: 64 * 1024 },
    preClose: function (done) {
      for (const client of app.websocketServer.clients) {
        client.close(1001, 'server shutting down')
        setTimeout(() => { client.terminate() }, WS_CLOSE_GRACE_MS).unref()
      }
      app.websocketServer.close()
      done()
    }
  })

  // every route, the dashboard and the WebSocket handshake included; before the token (a page must learn nothing)
  app.addHook('onRequest', async (request) => { checkOrigin(request) })

  app.get('/healthz', async () => ({ ok: true, version: VERSION }))
  await app.register(async (api) => {
    requireToken(api, init.token)
    registerApi(api, { downloader, dir, metrics })
    registerEvents(api, {
      hub,
      streams,
      ...(init.eventsKeepaliveMs === undefined ? {} : { keepaliveMs: init.eventsKeepaliveMs }),
      ...(init.maxEventBacklogBytes === undefined ? {} : { maxBacklogBytes: init.maxEventBacklogBytes })
    })
  })
  registerDashboard(app)
  return app
}
