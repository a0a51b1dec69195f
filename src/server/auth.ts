/**
 * Bearer-token authentication of the API, and the loopback check of `--no-auth`.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { CidgetError } from '../core/errors.js'

/** Hostnames that name this machine's loopback interface. */
const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]'])

/** True for `localhost`, `127.x.y.z` and `::1` (with or without brackets). */
export function isLoopbackHost (host: string): boolean {
  const h = host.toLowerCase()
  return LOOPBACK_NAMES.has(h) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h.endsWith('.localhost')
}

/** Compares two tokens in time that does not depend on where they differ (nor, through the hashes, on their lengths). */
export function tokensEqual (given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

/** The token a request carries: `Authorization: Bearer <token>`, or `?token=` where `allowQuery`. */
function tokenOf (request: FastifyRequest, allowQuery: boolean): string | undefined {
  const header = request.headers.authorization
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
    if (m === null) throw new CidgetError('CIDGET_ERR_UNAUTHORIZED', 'The Authorization header must be "Bearer <token>"')
    return m[1]
  }
  if (allowQuery) {
    const q = (request.query as Record<string, unknown> | undefined)?.token
    if (typeof q === 'string') return q
  }
  return undefined
}

/**
 * Checks a request against the service's token. With `token` null (`--no-auth`)
 * every request is let in, but only under a loopback Host name: a web page
 * elsewhere cannot reach the API through DNS rebinding.
 */
export function authenticate (request: FastifyRequest, token: string | null, allowQuery: boolean): void {
  if (token === null) {
    const host = hostnameOf(request.headers.host)
    if (host === undefined || !isLoopbackHost(host)) {
      throw new CidgetError('CIDGET_ERR_UNAUTHORIZED', `Host "${request.headers.host ?? ''}" is not a loopback name; without a token only loopback names are served`)
    }
    return
  }
  const given = tokenOf(request, allowQuery)
  if (given === undefined) {
    throw new CidgetError('CIDGET_ERR_UNAUTHORIZED', allowQuery
      ? 'Missing token: send "Authorization: Bearer <token>" or ?token=<token>'
      : 'Missing token: send "Authorization: Bearer <token>"')
  }
  if (!tokensEqual(given, token)) throw new CidgetError('CIDGET_ERR_UNAUTHORIZED', 'Wrong token')
}

/** The hostname of a Host header (`h`, `h:port`, `[v6]:port`). */
function hostnameOf (host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    return end === -1 ? undefined : host.slice(0, end + 1)
  }
  const colon = host.lastIndexOf(':')
  return colon === -1 ? host : host.slice(0, colon)
}
