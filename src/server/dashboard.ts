/**
 * The web dashboard's routes: `GET /` (the page), `/dashboard.css` and
 * `/dashboard.js`. They need no token: the page holds no data, it asks the
 * API for everything with the token it reads from `#token=…` (a URL fragment
 * never reaches the server or a Referer).
 *
 * @module
 */

import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { DASHBOARD_CSS, DASHBOARD_CSS_PATH, DASHBOARD_HTML, DASHBOARD_JS, DASHBOARD_JS_PATH } from './dashboard/assets.js'

interface Asset {
  path: string
  type: string
  body: Buffer
  etag: string
}

function asset (path: string, type: string, text: string): Asset {
  const body = Buffer.from(text, 'utf8')
  return { path, type, body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` }
}

const ASSETS: readonly Asset[] = [
  asset('/', 'text/html; charset=utf-8', DASHBOARD_HTML),
  asset(DASHBOARD_CSS_PATH, 'text/css; charset=utf-8', DASHBOARD_CSS),
  asset(DASHBOARD_JS_PATH, 'text/javascript; charset=utf-8', DASHBOARD_JS)
]

/**
 * Only this origin's scripts, styles and connections ('self' covers ws:/wss:
 * to the same host in CSP 3); no inline code, no framing, no external loads.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

const HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  // revalidate every time (cheap: an ETag match answers 304), so an upgrade shows at once
  'cache-control': 'no-cache'
}

/** Serves the dashboard page and its two assets. Called by `buildServer`. */
export function registerDashboard (app: FastifyInstance): void {
  for (const a of ASSETS) {
    app.get(a.path, async (request, reply) => {
      void reply.headers(HEADERS).header('etag', a.etag)
      const match = request.headers['if-none-match']
      if (match !== undefined && match.split(',').some(t => t.trim() === a.etag)) {
        return reply.code(304).send()
      }
      return reply.type(a.type).send(a.body)
    })
  }
}
