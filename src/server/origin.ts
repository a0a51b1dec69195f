/**
 * What keeps a browser on another site from driving the service: a request
 * that carries a foreign `Origin` is refused on every route (the WebSocket
 * handshake and SSE included), and a state-changing request must say
 * `Content-Type: application/json`, which a page cannot send cross-site
 * without a CORS preflight (and the service answers none). Both hold with or
 * without a token: `--no-auth` has nothing else in the way.
 */
import type { FastifyRequest } from 'fastify'
import { CidgetError } from '../core/errors.js'

/** Methods that change nothing: they need no JSON content type. */
const SAFE_METHODS = new Set(['GET', 'HEAD'])

/**
 * Refuses a request whose `Origin` header names another origin than the one
 * it was sent to (its `Host`). Requests without `Origin` (curl, the CLI, a
 * browser's same-origin GET) pass; `Origin: null` (a sandboxed frame, a
 * `file:` page) is foreign.
 */
export function checkOrigin (request: FastifyRequest): void {
  const origin = request.headers.origin
  if (origin === undefined) return
  const host = request.headers.host
  if (host !== undefined && sameHost(origin, host)) return
  throw new CidgetError('CIDGET_ERR_FOREIGN_ORIGIN', `Requests from the web origin ${JSON.stringify(origin)} are refused: only pages of this service may call it`)
}

function sameHost (origin: string, host: string): boolean {
  let url: URL
  try {
    url = new URL(origin)
  } catch {
    return false
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false
  // the origin as the browser wrote it, against the Host it sent: the same text up to a default port
  let expected: URL
  try {
    expected = new URL(`${url.protocol}//${host}`)
  } catch {
    return false
  }
  return url.host === expected.host
}

/**
 * Refuses a state-changing request (anything but GET and HEAD) unless its
 * `Content-Type` is `application/json` (parameters such as `charset` allowed),
 * with a body or without one.
 */
export function checkJsonContentType (request: FastifyRequest): void {
  if (SAFE_METHODS.has(request.method)) return
  const type = request.headers['content-type']
  const media = type?.split(';')[0]?.trim().toLowerCase()
  if (media === 'application/json') return
  throw new CidgetError('CIDGET_ERR_UNSUPPORTED_MEDIA_TYPE', type === undefined
    ? `${request.method} requests need "Content-Type: application/json" (also without a body)`
    : `${request.method} requests need "Content-Type: application/json", not ${JSON.stringify(type)}`)
}
