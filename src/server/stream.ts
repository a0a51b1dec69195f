/**
 * `GET /api/events`: the live events over a WebSocket, or as Server-Sent
 * Events when the request accepts `text/event-stream`. Slow clients are cut
 * off rather than buffered without bound.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import { CidgetError } from '../core/errors.js'
import type { EventHub } from './events.js'
import { eventsQuerySchema, type EventsQuery } from './schemas.js'

/** A client further behind than this many bytes is disconnected (it can reconnect and reload the list). */
export const MAX_CLIENT_BACKLOG_BYTES = 4 * 1024 * 1024
/** An SSE comment this often keeps proxies and idle timeouts from closing the stream. */
export const SSE_KEEPALIVE_MS = 15_000

/**
 * Registers the events route. Open SSE responses are kept in `streams`: the
 * app ends them when it closes (they would keep `close()` waiting).
 */
export function registerEvents (api: FastifyInstance, opts: { hub: EventHub, streams: Set<ServerResponse>, keepaliveMs?: number, maxBacklogBytes?: number }): void {
  const { hub, streams } = opts
  const keepaliveMs = opts.keepaliveMs ?? SSE_KEEPALIVE_MS
  const maxBacklogBytes = opts.maxBacklogBytes ?? MAX_CLIENT_BACKLOG_BYTES

  api.route<{ Querystring: EventsQuery }>({
    method: 'GET',
    url: '/api/events',
    schema: { querystring: eventsQuerySchema },
    config: { tokenInQuery: true },
    wsHandler: (socket: WebSocket) => {
      const unsubscribe = hub.subscribe((json) => {
        if (socket.readyState !== socket.OPEN) return
        if (socket.bufferedAmount > maxBacklogBytes) {
          socket.close(1013, 'too far behind')
          return
        }
        socket.send(json)
      })
      socket.on('close', unsubscribe)
      socket.on('error', unsubscribe)
      // clients have nothing to say; their messages are read and dropped
      socket.on('message', () => {})
    },
    handler: async (request, reply) => {
      const accept = request.headers.accept ?? ''
      if (!accept.split(',').some(t => t.trim().toLowerCase().startsWith('text/event-stream'))) {
        throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'GET /api/events is a WebSocket (Upgrade: websocket) or a Server-Sent Events stream (Accept: text/event-stream)')
      }
      const res = reply.raw
      reply.hijack()
      // subscribe before the headers go out: a client that has seen them misses nothing after
      const unsubscribe = hub.subscribe((json, type) => {
        if (res.writableLength > maxBacklogBytes) {
          res.destroy()
          return
        }
        res.write(`event: ${type}\ndata: ${json}\n\n`)
      })
      const keepalive = setInterval(() => { res.write(': keepalive\n\n') }, keepaliveMs)
      keepalive.unref()
      streams.add(res)
      res.on('close', () => {
        unsubscribe()
        clearInterval(keepalive)
        streams.delete(res)
      })
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no'
      })
      res.write('retry: 2000\n\n')
    }
  })
}
