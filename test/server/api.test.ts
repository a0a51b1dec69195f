/**
 * The service's REST API in process (`app.inject()`), over a real Downloader,
 * a real SQLite state and the local test gateway.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { buildServer, routesOf } from '../../src/server/app.js'
import type { Downloader } from '../../src/engine/downloader.js'
import type { DownloadRecord, DownloadStatus } from '../../src/core/types.js'
import { MAX_TRACKED_GATEWAYS, OTHER_GATEWAYS, type GatewayTotals } from '../../src/engine/downloader.js'
import { addDirectory, seededBytes, startTestGateway } from '../../src/testing/index.js'
import { world, fileSha256, progressReaches, KiB, type World } from '../helpers.js'

const TOKEN = 'test-token-0123456789'
const AUTH = { authorization: `Bearer ${TOKEN}` }

let w: World
let dl: Downloader
let app: FastifyInstance
let dir: string

beforeAll(async () => {
  w = await world({ size: 512 * KiB })
  dl = await w.open({ now: () => Date.now(), concurrency: 8 })
  dir = join(w.dir, 'downloads')
  app = await buildServer({ downloader: dl, dir, token: TOKEN })
})
afterAll(async () => {
  await app.close()
  await w.close()
})

async function call (opts: InjectOptions & { auth?: boolean }): Promise<{ status: number, body: unknown, headers: Record<string, unknown> }> {
  const { auth, ...rest } = opts
  // state-changing requests are JSON, also without a body (inject sets it itself for an object payload)
  const json = rest.method !== undefined && rest.method !== 'GET' && rest.payload === undefined ? { 'content-type': 'application/json' } : {}
  const res = await app.inject({ ...rest, headers: { ...(auth === false ? {} : AUTH), ...json, ...rest.headers } })
  const type = String(res.headers['content-type'] ?? '')
  return { status: res.statusCode, body: type.startsWith('application/json') && res.body !== '' ? res.json() : res.body, headers: res.headers }
}

async function add (body: Record<string, unknown>): Promise<DownloadRecord> {
  const r = await call({ method: 'POST', url: '/api/downloads', payload: { gateways: [w.gateways[0]!.url], ...body } })
  expect(r.status, JSON.stringify(r.body)).toBe(201)
  return r.body as DownloadRecord
}

/** Polls the API until the download has one of `statuses`. */
async function until (id: number, statuses: DownloadStatus[]): Promise<DownloadRecord> {
  for (let i = 0; i < 500; i++) {
    const r = await call({ url: `/api/downloads/${id}` })
    const rec = r.body as DownloadRecord
    if (statuses.includes(rec.status)) return rec
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  throw new Error(`download ${id} never reached ${statuses.join('/')}`)
}

function errorOf (body: unknown): { code: string, message: string } {
  return (body as { error: { code: string, message: string } }).error
}

/** The routes that need no token. */
const OPEN_ROUTES = new Set(['/healthz', '/', '/dashboard.css', '/dashboard.js'])

/** Every route the app registered, with `:id` filled in. */
function appRoutes (): Array<[InjectOptions['method'], string]> {
  return routesOf(app).map(r => [r.method as InjectOptions['method'], r.url.replace(/:id\b/g, '1')])
}

describe('auth', () => {
  it('/healthz is open and tells the version', async () => {
    const r = await call({ url: '/healthz', auth: false })
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ ok: true, version: expect.stringMatching(/^\d+\.\d+\.\d+/) })
  })

  it('every route the app registers answers 401 without the token or with a wrong one, but /healthz and the dashboard', async () => {
    const routes = appRoutes()
    // the routes themselves, not a list of them kept here: a new route is covered the day it is added
    expect(routes.map(([m, u]) => `${String(m)} ${u}`)).toEqual(expect.arrayContaining([
      'POST /api/downloads', 'GET /api/downloads/1', 'POST /api/downloads/1/cancel', 'DELETE /api/downloads/1', 'GET /api/events', 'GET /metrics'
    ]))
    for (const [method, url] of routes) {
      if (OPEN_ROUTES.has(url)) {
        expect((await call({ method, url, auth: false })).status, `${String(method)} ${url}`).toBe(200)
        continue
      }
      for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${TOKEN}` }, { authorization: `Bearer ${TOKEN}x` }]) {
        const r = await call({ method, url, headers, auth: false })
        expect(r.status, `${String(method)} ${url} ${JSON.stringify(headers)}`).toBe(401)
        if (method !== 'HEAD') expect(errorOf(r.body).code).toBe('CIDGET_ERR_UNAUTHORIZED')
        expect(r.headers['www-authenticate']).toBe('Bearer realm="cidget"')
      }
    }
  })

  it('?token= is taken on the events endpoint only', async () => {
    const r = await call({ url: `/api/downloads?token=${TOKEN}`, auth: false })
    expect(r.status).toBe(401)
  })

  it('without a token (--no-auth) only loopback Host names are served', async () => {
    const open = await buildServer({ downloader: dl, dir, token: null })
    try {
      expect((await open.inject({ url: '/api/downloads', headers: { host: '127.0.0.1:7690' } })).statusCode).toBe(200)
      expect((await open.inject({ url: '/api/downloads', headers: { host: 'localhost' } })).statusCode).toBe(200)
      expect((await open.inject({ url: '/api/downloads', headers: { host: '[::1]:7690' } })).statusCode).toBe(200)
      const rebound = await open.inject({ url: '/api/downloads', headers: { host: 'evil.example:7690' } })
      expect(rebound.statusCode).toBe(401)
      expect(errorOf(rebound.json()).code).toBe('CIDGET_ERR_UNAUTHORIZED')
    } finally {
      await open.close()
    }
  })

  it('sends no CORS headers', async () => {
    const r = await call({ url: '/api/downloads', method: 'OPTIONS', headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'POST' } })
    expect(r.status).toBe(403)
    expect(Object.keys(r.headers).filter(h => h.startsWith('access-control-'))).toEqual([])
  })
})

describe('logs (issue 14, item 7)', () => {
  it('a logged request URL carries no token', async () => {
    const lines: string[] = []
    const logged = await buildServer({ downloader: dl, dir, token: TOKEN, logger: { level: 'info', stream: { write: (l: string) => { lines.push(l) } } } })
    try {
      await logged.inject({ url: `/api/events?a=1&token=${TOKEN}&b=2` })
      await logged.inject({ url: '/api/downloads?token=wrong-secret' })
    } finally {
      await logged.close()
    }
    const text = lines.join('')
    expect(text).toContain('/api/events?a=1&token=[redacted]&b=2')
    expect(text).toContain('/api/downloads?token=[redacted]')
    expect(text).not.toContain(TOKEN)
    expect(text).not.toContain('wrong-secret')
  })
})

describe('browsers (issue 14, item 4)', () => {
  const FOREIGN = ['https://evil.example', 'http://127.0.0.1:7691', 'null', 'http://localhost:7690.evil.example']

  it('every route the app registers refuses a foreign Origin (403), with the token or without one, open routes too', async () => {
    for (const [method, url] of appRoutes()) {
      for (const origin of FOREIGN) {
        const r = await call({ method, url, headers: { host: '127.0.0.1:7690', origin } })
        expect(r.status, `${String(method)} ${url} from ${origin}`).toBe(403)
        if (method !== 'HEAD') expect(errorOf(r.body).code).toBe('CIDGET_ERR_FOREIGN_ORIGIN')
      }
    }
  })

  it('a page of the service itself (same Origin as Host) is served', async () => {
    for (const [host, origin] of [['127.0.0.1:7690', 'http://127.0.0.1:7690'], ['cidget.example', 'https://cidget.example'], ['[::1]:80', 'http://[::1]']]) {
      const r = await call({ url: '/api/downloads', headers: { host, origin } })
      expect(r.status, origin).toBe(200)
    }
  })

  it('a cross-site POST (text/plain, or no body) with a foreign Origin cancels nothing, and neither does one without the JSON content type', async () => {
    const open = await buildServer({ downloader: dl, dir, token: null })
    try {
      w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 64 * KiB }, times: 1, match: { format: 'path' } })
      const rec = await add({ target: w.cid, output: 'csrf.bin', mode: 'path' })
      await progressReaches(dl, rec.id, 64 * KiB)
      const host = '127.0.0.1:7690'
      const attacks: InjectOptions[] = [
        { headers: { host, origin: 'https://evil.example', 'content-type': 'text/plain' }, payload: 'x' },
        { headers: { host, origin: 'https://evil.example' } },
        { headers: { host, origin: 'https://evil.example', 'content-type': 'application/json' }, payload: '{}' },
        // no Origin at all (an old browser, a form): the content type still stops it
        { headers: { host, 'content-type': 'text/plain' }, payload: '{}' },
        { headers: { host, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'a=b' },
        { headers: { host, 'content-type': 'multipart/form-data; boundary=x' }, payload: '--x--' },
        { headers: { host } }
      ]
      for (const attack of attacks) {
        const r = await open.inject({ method: 'POST', url: `/api/downloads/${rec.id}/cancel`, ...attack })
        expect([403, 415], JSON.stringify(attack.headers)).toContain(r.statusCode)
        expect(errorOf(r.json()).code).toMatch(/^CIDGET_ERR_(FOREIGN_ORIGIN|UNSUPPORTED_MEDIA_TYPE)$/)
        const del = await open.inject({ method: 'DELETE', url: `/api/downloads/${rec.id}?deleteFile=true`, ...attack })
        expect([403, 415]).toContain(del.statusCode)
      }
      expect((await dl.get(rec.id))?.status).toMatch(/^(in_progress|resuming)$/)
      const noType = await open.inject({ method: 'POST', url: '/api/downloads/999/cancel', headers: { host, 'content-type': 'text/plain' }, payload: '' })
      expect(noType.statusCode).toBe(415)
      expect(errorOf(noType.json()).message).toBe('POST requests need "Content-Type: application/json", not "text/plain"')
      // the same request as JSON goes through
      const ok = await open.inject({ method: 'POST', url: `/api/downloads/${rec.id}/cancel`, headers: { host, 'content-type': 'application/json; charset=utf-8' } })
      expect(ok.statusCode).toBe(200)
      expect(ok.json()).toMatchObject({ status: 'cancelled' })
      await dl.remove(rec.id)
    } finally {
      await open.close()
    }
  })
})

describe('downloads', () => {
  it('POST /api/downloads queues a verified and a path download; both land inside --dir with the right bytes', async () => {
    const verified = await add({ target: w.cid, output: 'v/file.bin' })
    expect(verified).toMatchObject({ cid: w.cid, mode: 'verified', output: join(dir, 'v', 'file.bin') })
    expect(['pending', 'in_progress']).toContain(verified.status)
    const path = await add({ target: `/ipfs/${w.cid}`, output: 'p.bin', mode: 'path', sha256: w.sha.toUpperCase(), priority: 5 })
    expect(path).toMatchObject({ mode: 'path', output: join(dir, 'p.bin'), expectedSha256: w.sha, priority: 5 })
    for (const rec of [verified, path]) {
      const done = await until(rec.id, ['success', 'failed'])
      expect(done).toMatchObject({ status: 'success', hash: w.sha, size: 512 * KiB })
      expect(await fileSha256(done.output)).toBe(w.sha)
    }
  })

  it('without an output the target\'s default name goes inside --dir; car mode gets .car', async () => {
    const rec = await add({ target: w.cid })
    expect(rec.output).toBe(join(dir, w.cid))
    const car = await add({ target: w.cid, mode: 'car' })
    expect(car.output).toBe(join(dir, `${w.cid}.car`))
    expect((await until(rec.id, ['success', 'failed'])).status).toBe('success')
    expect((await until(car.id, ['success', 'failed'])).status).toBe('success')
    const sub = await add({ target: w.cid, output: 'deep/er/' })
    expect(sub.output).toBe(join(dir, 'deep', 'er', w.cid))
    expect((await until(sub.id, ['success', 'failed'])).status).toBe('success')
  })

  it('refuses outputs outside --dir: "..", absolute paths, and a symlink leading out', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'cidget-elsewhere-'))
    await mkdir(dir, { recursive: true })
    await symlink(elsewhere, join(dir, 'link'))
    try {
      for (const output of ['../x', '/etc/x', 'a/../../x', '..', 'link/x', 'link']) {
        const r = await call({ method: 'POST', url: '/api/downloads', payload: { target: w.cid, output } })
        expect(r.status, output).toBe(400)
        expect(errorOf(r.body).code, output).toBe('CIDGET_ERR_OUTSIDE_DIR')
      }
      // a ".." that stays inside is only a longer name for a path inside
      const inside = await add({ target: w.cid, output: 'x/../inside.bin' })
      expect(inside.output).toBe(join(dir, 'inside.bin'))
      await until(inside.id, ['success', 'failed'])
    } finally {
      await rm(join(dir, 'link'))
      await rm(elsewhere, { recursive: true, force: true })
    }
  })

  it('an existing file is not overwritten (409 OUTPUT_EXISTS)', async () => {
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'taken.bin'), 'mine')
    const r = await call({ method: 'POST', url: '/api/downloads', payload: { target: w.cid, output: 'taken.bin' } })
    expect(r.status).toBe(409)
    expect(errorOf(r.body).code).toBe('CIDGET_ERR_OUTPUT_EXISTS')
  })

  it('validates requests: unknown fields, bad mode, bad sha256, bad target, bad JSON, limit out of range, bad ids', async () => {
    const cases: Array<[InjectOptions, string, RegExp]> = [
      [{ method: 'POST', url: '/api/downloads', payload: { target: w.cid, force: true } }, 'CIDGET_ERR_BAD_OPTION', /unknown field "force"/],
      [{ method: 'POST', url: '/api/downloads', payload: { output: 'x' } }, 'CIDGET_ERR_BAD_OPTION', /needs the field "target"/],
      [{ method: 'POST', url: '/api/downloads', payload: { target: w.cid, mode: 'fast' } }, 'CIDGET_ERR_BAD_OPTION', /body\.mode must be one of/],
      [{ method: 'POST', url: '/api/downloads', payload: { target: w.cid, sha256: 'abc' } }, 'CIDGET_ERR_BAD_OPTION', /sha256 must be 64 hex digits/],
      [{ method: 'POST', url: '/api/downloads', payload: { target: w.cid, priority: 1.5 } }, 'CIDGET_ERR_BAD_OPTION', /priority/],
      [{ method: 'POST', url: '/api/downloads', payload: { target: w.cid, gateways: ['ftp://x'] } }, 'CIDGET_ERR_BAD_OPTION', /ftp:\/\/x/],
      [{ method: 'POST', url: '/api/downloads', payload: { target: 'not a cid' } }, 'CIDGET_ERR_BAD_TARGET', /not a cid/],
      [{ method: 'POST', url: '/api/downloads', payload: { target: `${w.cid}/a\u001b[2J\nb` } }, 'CIDGET_ERR_BAD_TARGET', /control character/],
      [{ method: 'POST', url: '/api/downloads', payload: '{"target":', headers: { 'content-type': 'application/json' } }, 'CIDGET_ERR_BAD_OPTION', /not valid JSON/],
      [{ method: 'POST', url: '/api/downloads' }, 'CIDGET_ERR_BAD_OPTION', /body/],
      [{ method: 'GET', url: '/api/downloads?limit=0' }, 'CIDGET_ERR_BAD_OPTION', /query\.limit must be >= 1/],
      [{ method: 'GET', url: '/api/downloads?limit=1001' }, 'CIDGET_ERR_BAD_OPTION', /query\.limit must be <= 1000/],
      [{ method: 'GET', url: '/api/downloads?limit=ten' }, 'CIDGET_ERR_BAD_OPTION', /limit/],
      [{ method: 'GET', url: '/api/downloads?status=done' }, 'CIDGET_ERR_BAD_OPTION', /status must be one of/],
      [{ method: 'GET', url: '/api/downloads?cursor=-1' }, 'CIDGET_ERR_BAD_OPTION', /cursor/],
      [{ method: 'GET', url: '/api/downloads?page=2' }, 'CIDGET_ERR_BAD_OPTION', /unknown field "page"/],
      [{ method: 'GET', url: '/api/downloads/abc' }, 'CIDGET_ERR_BAD_OPTION', /path\.id must be integer/],
      [{ method: 'GET', url: '/api/downloads/0' }, 'CIDGET_ERR_BAD_OPTION', /path\.id/],
      [{ method: 'DELETE', url: '/api/downloads/1?deleteFile=maybe' }, 'CIDGET_ERR_BAD_OPTION', /deleteFile/]
    ]
    for (const [opts, code, message] of cases) {
      const r = await call(opts)
      expect(r.status, `${String(opts.method)} ${String(opts.url)}`).toBe(400)
      expect(errorOf(r.body).code, `${String(opts.method)} ${String(opts.url)}`).toBe(code)
      expect(errorOf(r.body).message, `${String(opts.method)} ${String(opts.url)}`).toMatch(message)
    }
  })

  it('answers 404 for unknown ids and unknown routes, in the same error shape', async () => {
    for (const [method, url] of [['GET', '/api/downloads/9999'], ['POST', '/api/downloads/9999/pause'], ['POST', '/api/downloads/9999/resume'],
      ['POST', '/api/downloads/9999/cancel'], ['DELETE', '/api/downloads/9999']] as const) {
      const r = await call({ method, url })
      expect(r.status, `${method} ${url}`).toBe(404)
      expect(errorOf(r.body)).toEqual({ code: 'CIDGET_ERR_UNKNOWN_DOWNLOAD', message: 'No download with id 9999' })
    }
    for (const [method, url] of [['GET', '/api/nothing'], ['PUT', '/api/downloads/1'], ['GET', '/nothing/at/all']] as const) {
      const r = await call({ method, url })
      expect(r.status, `${method} ${url}`).toBe(404)
      expect(errorOf(r.body).code).toBe('CIDGET_ERR_NOT_FOUND')
    }
  })

  it('pause, resume, cancel and delete move a download through its statuses; finished ones refuse with 409', async () => {
    // the gateway stalls once after 128 KiB: the download is caught running
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 128 * KiB }, times: 1, match: { format: 'path' } })
    const rec = await add({ target: w.cid, output: 'ctl.bin', mode: 'path' })
    await progressReaches(dl, rec.id, 128 * KiB)
    const paused = await call({ method: 'POST', url: `/api/downloads/${rec.id}/pause` })
    expect(paused.status).toBe(200)
    expect(paused.body).toMatchObject({ id: rec.id, status: 'paused', error: null })
    // pausing a paused download is a no-op
    expect((await call({ method: 'POST', url: `/api/downloads/${rec.id}/pause` })).body).toMatchObject({ status: 'paused' })

    const resumed = await call({ method: 'POST', url: `/api/downloads/${rec.id}/resume` })
    expect(resumed.status).toBe(200)
    expect(resumed.body).toMatchObject({ id: rec.id })
    const done = await until(rec.id, ['success', 'failed'])
    expect(done).toMatchObject({ status: 'success', hash: w.sha })
    expect(await fileSha256(join(dir, 'ctl.bin'))).toBe(w.sha)

    for (const what of ['pause', 'resume', 'cancel']) {
      const r = await call({ method: 'POST', url: `/api/downloads/${rec.id}/${what}` })
      expect(r.status, what).toBe(409)
      expect(errorOf(r.body).code).toBe('CIDGET_ERR_INVALID_TRANSITION')
    }

    // DELETE keeps the finished file unless asked; with deleteFile=true it goes too
    const kept = await add({ target: w.cid, output: 'kept.bin' })
    await until(kept.id, ['success'])
    expect((await call({ method: 'DELETE', url: `/api/downloads/${kept.id}` })).status).toBe(204)
    expect((await call({ url: `/api/downloads/${kept.id}` })).status).toBe(404)
    expect((await stat(join(dir, 'kept.bin'))).size).toBe(512 * KiB)
    const r = await call({ method: 'DELETE', url: `/api/downloads/${rec.id}?deleteFile=true` })
    expect(r.status).toBe(204)
    expect(r.body).toBe('')
    await expect(stat(join(dir, 'ctl.bin'))).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('cancel stops a running download and deletes its partial data; a cancelled one cannot be resumed', async () => {
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 64 * KiB }, times: 1, match: { format: 'path' } })
    const rec = await add({ target: w.cid, output: 'cancel.bin', mode: 'path' })
    await progressReaches(dl, rec.id, 64 * KiB)
    const r = await call({ method: 'POST', url: `/api/downloads/${rec.id}/cancel` })
    expect(r.status).toBe(200)
    expect(r.body).toMatchObject({ status: 'cancelled', currentSize: 0 })
    await expect(stat(join(dir, 'cancel.bin.cidget-partial'))).rejects.toMatchObject({ code: 'ENOENT' })
    const again = await call({ method: 'POST', url: `/api/downloads/${rec.id}/resume` })
    expect(again.status).toBe(409)
    expect(errorOf(again.body).code).toBe('CIDGET_ERR_INVALID_TRANSITION')
  })

  it('deleteFile refuses a record whose output is outside --dir (made by the local CLI)', async () => {
    const outside = join(w.dir, 'local.bin')
    const job = await dl.add(w.cid, { output: outside, gateways: [w.gateways[0]!.url] })
    expect((await job.done).status).toBe('success')
    const r = await call({ method: 'DELETE', url: `/api/downloads/${job.id}?deleteFile=true` })
    expect(r.status).toBe(400)
    expect(errorOf(r.body).code).toBe('CIDGET_ERR_OUTSIDE_DIR')
    expect((await stat(outside)).size).toBe(512 * KiB)
  })
})

describe('bugs of issue 14, item 10', () => {
  it('DELETE ?deleteFile=true removes a directory download\'s whole tree (not 500 EISDIR)', async () => {
    const root = await addDirectory(w.blocks, [
      { path: 'a.bin', content: seededBytes(3 * KiB, 7) },
      { path: 'sub/b.txt', content: new TextEncoder().encode('b') }
    ])
    const rec = await add({ target: root.toString(), output: 'tree' })
    expect(await until(rec.id, ['success', 'failed'])).toMatchObject({ status: 'success' })
    expect((await stat(join(dir, 'tree', 'sub', 'b.txt'))).size).toBe(1)
    const r = await call({ method: 'DELETE', url: `/api/downloads/${rec.id}?deleteFile=true` })
    expect(r.status, JSON.stringify(r.body)).toBe(204)
    await expect(stat(join(dir, 'tree'))).rejects.toMatchObject({ code: 'ENOENT' })
    expect((await call({ url: `/api/downloads/${rec.id}` })).status).toBe(404)
  })

  it('an output name too long for the file system is a 400, not a 500', async () => {
    for (const output of ['x'.repeat(300), `d/${'y'.repeat(256)}/f.bin`, `${'z'.repeat(300)}/`]) {
      const r = await call({ method: 'POST', url: '/api/downloads', payload: { target: w.cid, output, gateways: [w.gateways[0]!.url] } })
      expect(r.status, output.slice(0, 20) + JSON.stringify(r.body)).toBe(400)
      expect(errorOf(r.body).code).toBe('CIDGET_ERR_OUTPUT_NOT_WRITABLE')
      expect(errorOf(r.body).message).toMatch(/too long/)
    }
  })
})

describe('/metrics stays bounded (issue 14, item 9)', () => {
  it('clients naming ever new gateways get at most MAX_TRACKED_GATEWAYS series each, the rest summed as gateway="other"', async () => {
    const own = await w.open({ concurrency: 4 })
    const svc = await buildServer({ downloader: own, dir, token: null })
    try {
      // 4 downloads naming 64 gateways each (a closed port: every request fails at once)
      const jobs = []
      for (let d = 0; d < 4; d++) {
        const gateways = Array.from({ length: 64 }, (_, i) => `http://127.0.0.1:1/d${d}g${i}`)
        jobs.push(await own.add(w.cid, { output: join(dir, `bounded-${d}.bin`), gateways }))
      }
      for (const job of jobs) expect((await job.done).status).toBe('failed')
      const stats = own.gatewayStats()
      expect(stats.length).toBeLessThanOrEqual(1 + MAX_TRACKED_GATEWAYS + 1)
      const other = stats.find(g => g.url === OTHER_GATEWAYS)
      expect(other?.requests).toBeGreaterThan(0)
      // the most recently used are the ones kept by name
      expect(stats.some(g => g.url.includes('/d3g'))).toBe(true)
      const text = (await svc.inject({ url: '/metrics', headers: { host: '127.0.0.1' } })).body
      const series = text.split('\n').filter(l => l.startsWith('cidget_gateway_requests_total{'))
      expect(series.length).toBeLessThanOrEqual(1 + MAX_TRACKED_GATEWAYS + 1)
      expect(series).toContain(`cidget_gateway_requests_total{gateway="other"} ${other!.requests}`)
    } finally {
      await svc.close()
      await own.close()
    }
  })
})

describe('listing', () => {
  it('pages over 25 downloads 10 at a time with an opaque cursor, and filters by status', async () => {
    const before = (await call({ url: '/api/downloads?limit=1000' })).body as { items: DownloadRecord[] }
    const ids: number[] = []
    for (let i = 0; i < 25; i++) ids.push((await add({ target: w.cid, output: `page/${i}.bin` })).id)
    for (const id of ids) await until(id, ['success', 'failed'])

    const seen: number[] = []
    let cursor: string | null = null
    const sizes: number[] = []
    do {
      const r = await call({ url: `/api/downloads?limit=10${cursor === null ? '' : `&cursor=${cursor}`}` })
      expect(r.status).toBe(200)
      const page = r.body as { items: DownloadRecord[], nextCursor: string | null }
      sizes.push(page.items.length)
      seen.push(...page.items.map(i => i.id))
      cursor = page.nextCursor
    } while (cursor !== null)
    expect(seen).toEqual([...before.items.map(i => i.id), ...ids])
    expect(seen).toEqual([...seen].sort((a, b) => a - b))
    expect(sizes.slice(0, -1).every(n => n === 10)).toBe(true)
    expect(sizes[sizes.length - 1]).toBe(seen.length % 10 === 0 ? 10 : seen.length % 10)

    const success = (await call({ url: '/api/downloads?status=success&limit=1000' })).body as { items: DownloadRecord[], nextCursor: null }
    expect(success.nextCursor).toBeNull()
    expect(success.items.every(i => i.status === 'success')).toBe(true)
    expect(success.items.map(i => i.id)).toEqual(expect.arrayContaining(ids))
    const none = (await call({ url: '/api/downloads?status=resuming' })).body
    expect(none).toEqual({ items: [], nextCursor: null })
    // the default page is 100
    const all = (await call({ url: '/api/downloads' })).body as { items: DownloadRecord[] }
    expect(all.items.length).toBe(Math.min(100, seen.length))
  })
})

describe('gateways and metrics', () => {
  it('GET /api/gateways gives each gateway\'s totals', async () => {
    const r = await call({ url: '/api/gateways' })
    expect(r.status).toBe(200)
    const { gateways } = r.body as { gateways: GatewayTotals[] }
    const g = gateways.find(x => x.url === w.gateways[0]!.url)
    expect(g).toBeDefined()
    expect(g!.requests).toBeGreaterThan(0)
    expect(g!.successes).toBeGreaterThan(0)
    expect(g!.bytes).toBeGreaterThan(0)
  })

  it('GET /metrics is Prometheus text with every series, HELP and TYPE', async () => {
    const r = await call({ url: '/metrics' })
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
    const text = r.body as string
    const counts = await dl.store.countByStatus()
    for (const [name, type] of [['cidget_bytes_downloaded_total', 'counter'], ['cidget_downloads', 'gauge'], ['cidget_gateway_requests_total', 'counter'],
      ['cidget_gateway_errors_total', 'counter'], ['cidget_gateway_latency_ms', 'gauge'], ['cidget_verification_failures_total', 'counter']]) {
      expect(text).toContain(`# HELP ${name} `)
      expect(text).toContain(`# TYPE ${name} ${type}\n`)
    }
    expect(text).toContain(`cidget_downloads{status="success"} ${counts.success}\n`)
    expect(text).toContain('cidget_downloads{status="cancelled"} 1\n')
    expect(text).toMatch(new RegExp(`cidget_gateway_requests_total\\{gateway="${w.gateways[0]!.url}"\\} [1-9]\\d*\\n`))
    expect(text).toContain('cidget_verification_failures_total 0\n')
    // every download here was 512 KiB; a resumed one counts only what it fetched after the pause
    const bytes = Number(/cidget_bytes_downloaded_total (\d+)/.exec(text)?.[1])
    expect(bytes).toBeGreaterThanOrEqual(counts.success * 512 * KiB)
    // every sample line is `name{labels} number`
    for (const line of text.trim().split('\n').filter(l => !l.startsWith('#'))) {
      expect(line).toMatch(/^[a-z_]+(\{[a-z]+="[^"]*"\})? [0-9.e+-]+$/)
    }
  })

  it('counts a block that failed verification', async () => {
    const liar = await startTestGateway({ blocks: w.blocks })
    try {
      liar.addFault({ fault: { type: 'wrong-block' } })
      const rec = await add({ target: w.cid, output: 'liar.bin', gateways: [liar.url] })
      expect((await until(rec.id, ['success', 'failed'])).status).toBe('failed')
      const text = (await call({ url: '/metrics' })).body as string
      expect(text).toMatch(/cidget_verification_failures_total [1-9]/)
    } finally {
      await liar.close()
    }
  })
})
