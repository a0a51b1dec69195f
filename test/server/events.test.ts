/**
 * `/api/events` over a real socket: a WebSocket client (ws) and a
 * Server-Sent Events client (undici) watch downloads run against the local
 * test gateway.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { join } from 'node:path'
import { request } from 'undici'
import { WebSocket } from 'ws'
import type { FastifyInstance } from 'fastify'
import { buildServer } from '../../src/server/app.js'
import type { ServiceEvent } from '../../src/server/events.js'
import type { Downloader } from '../../src/engine/downloader.js'
import type { DownloadRecord } from '../../src/core/types.js'
import type { ProgressEvent, StatusEvent } from '../../src/core/events.js'
import { world, fileSha256, KiB, MiB, type World } from '../helpers.js'

const TOKEN = 'events-token'

let w: World
let dl: Downloader
let app: FastifyInstance
let base: string

beforeAll(async () => {
  // 1 MiB at 2 MiB/s: each download runs about half a second, long enough for several progress events
  w = await world({ size: MiB, maxBytesPerSecond: 2 * MiB })
  dl = await w.open({ now: () => Date.now() })
  app = await buildServer({ downloader: dl, dir: join(w.dir, 'downloads'), token: TOKEN })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  if (addr === null || typeof addr === 'string') throw new Error('no port')
  base = `127.0.0.1:${addr.port}`
})
afterAll(async () => {
  await app.close()
  await w.close()
})

interface Client {
  events: ServiceEvent[]
  /** Resolves with the first event that `pred` accepts (also one already received). */
  waitFor: (pred: (e: ServiceEvent) => boolean) => Promise<ServiceEvent>
  close: () => void
  /** Settles when the stream ends: with the close code of a WebSocket, null for SSE. */
  closed: Promise<number | null>
}

function collector (): Omit<Client, 'close' | 'closed'> & { push: (e: ServiceEvent) => void } {
  const events: ServiceEvent[] = []
  const waiters: Array<{ pred: (e: ServiceEvent) => boolean, resolve: (e: ServiceEvent) => void }> = []
  return {
    events,
    push: (e) => {
      events.push(e)
      for (const x of [...waiters]) {
        if (x.pred(e)) {
          waiters.splice(waiters.indexOf(x), 1)
          x.resolve(e)
        }
      }
    },
    waitFor: async (pred) => {
      const seen = events.find(pred)
      if (seen !== undefined) return seen
      return await new Promise(resolve => { waiters.push({ pred, resolve }) })
    }
  }
}

async function wsClient (query: string, headers: Record<string, string> = {}): Promise<Client> {
  const c = collector()
  const ws = new WebSocket(`ws://${base}/api/events${query}`, { headers })
  ws.on('message', (data) => { c.push(JSON.parse(String(data)) as ServiceEvent) })
  const closed = new Promise<number>(resolve => { ws.on('close', (code) => { resolve(code) }) })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => { resolve() })
    ws.once('error', reject)
  })
  return { events: c.events, waitFor: c.waitFor, close: () => { ws.close() }, closed }
}

/** The HTTP status a WebSocket handshake is refused with. */
async function wsRefusal (query: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  const ws = new WebSocket(`ws://${base}/api/events${query}`, { headers })
  return await new Promise((resolve, reject) => {
    ws.once('open', () => { ws.close(); reject(new Error('the handshake was accepted')) })
    ws.once('error', () => {})
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
  })
}

async function sseClient (query: string, headers: Record<string, string>): Promise<Client & { type: string }> {
  const c = collector()
  const controller = new AbortController()
  const res = await request(`http://${base}/api/events${query}`, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal })
  expect(res.statusCode).toBe(200)
  const closed = (async (): Promise<null> => {
    let buf = ''
    try {
      for await (const chunk of res.body) {
        buf += (chunk as Buffer).toString('utf8')
        let end: number
        while ((end = buf.indexOf('\n\n')) !== -1) {
          const frame = buf.slice(0, end)
          buf = buf.slice(end + 2)
          const fields = new Map<string, string>()
          for (const line of frame.split('\n')) {
            if (line.startsWith(':')) continue
            const colon = line.indexOf(':')
            fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart())
          }
          const data = fields.get('data')
          if (data === undefined) continue
          const e = JSON.parse(data) as ServiceEvent
          expect(fields.get('event')).toBe(e.type)
          c.push(e)
        }
      }
    } catch {
      // aborted by close()
    }
    return null
  })()
  return { events: c.events, waitFor: c.waitFor, close: () => { controller.abort() }, closed, type: String(res.headers['content-type']) }
}

async function post (path: string, body?: unknown): Promise<{ status: number, json: unknown }> {
  const res = await request(`http://${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return { status: res.statusCode, json: await res.body.json() }
}

const isStatus = (id: number, status: string) => (e: ServiceEvent): boolean => e.type === 'status' && (e.data as StatusEvent).id === id && (e.data as StatusEvent).status === status

/** The status transitions of one download, in order, each starting where the previous one ended. */
function statusChain (events: ServiceEvent[], id: number): string[] {
  const mine = events.filter(e => e.type === 'status' && (e.data as StatusEvent).id === id).map(e => e.data as StatusEvent)
  const chain = [mine[0]?.previous ?? '?']
  for (const s of mine) {
    expect(s.previous).toBe(chain[chain.length - 1])
    chain.push(s.status)
  }
  return chain
}

function progressOf (events: ServiceEvent[], id: number): Array<ServiceEvent & { data: ProgressEvent }> {
  return events.filter((e): e is ServiceEvent & { data: ProgressEvent } => e.type === 'progress' && (e.data as ProgressEvent).id === id)
}

/** A download's progress events, split where its status changes. */
function runsOf (events: ServiceEvent[], id: number): ServiceEvent[][] {
  const runs: ServiceEvent[][] = [[]]
  for (const e of events) {
    if ((e.data as { id?: number }).id !== id) continue
    if (e.type === 'status') runs.push([])
    else if (e.type === 'progress') runs[runs.length - 1]!.push(e)
  }
  return runs.filter(r => r.length > 0)
}

describe('/api/events', () => {
  it('WebSocket and SSE clients see download:added, every status transition in order, and throttled progress', async () => {
    const byQuery = await wsClient(`?token=${TOKEN}`)
    const byHeader = await wsClient('', { authorization: `Bearer ${TOKEN}` })
    const sse = await sseClient('', { authorization: `Bearer ${TOKEN}` })
    const sseByQuery = await sseClient(`?token=${TOKEN}`, {})
    expect(sse.type).toBe('text/event-stream; charset=utf-8')
    const clients = [byQuery, byHeader, sse, sseByQuery]

    // a verified download straight through
    const added = await post('/api/downloads', { target: w.cid, output: 'a.bin', gateways: [w.gateways[0]!.url] })
    expect(added.status).toBe(201)
    const a = added.json as DownloadRecord
    for (const c of clients) await c.waitFor(isStatus(a.id, 'success'))
    expect(await fileSha256(join(w.dir, 'downloads', 'a.bin'))).toBe(w.sha)

    // a path download, paused while it runs and resumed
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 256 * KiB }, times: 1, match: { format: 'path' } })
    const b = (await post('/api/downloads', { target: w.cid, output: 'b.bin', mode: 'path', gateways: [w.gateways[0]!.url] })).json as DownloadRecord
    await byQuery.waitFor(e => e.type === 'progress' && (e.data as ProgressEvent).id === b.id && (e.data as ProgressEvent).bytes >= 256 * KiB)
    expect((await post(`/api/downloads/${b.id}/pause`)).json).toMatchObject({ status: 'paused' })
    expect((await post(`/api/downloads/${b.id}/resume`)).status).toBe(200)
    for (const c of clients) await c.waitFor(isStatus(b.id, 'success'))

    for (const c of clients) {
      const first = c.events.findIndex(e => e.type === 'download:added' && (e.data as DownloadRecord).id === a.id)
      expect(first).toBeGreaterThanOrEqual(0)
      expect(c.events[first]!.data).toMatchObject({ id: a.id, status: 'pending', output: join(w.dir, 'downloads', 'a.bin') })
      // nothing about a download comes before its download:added
      expect(c.events.slice(0, first).some(e => (e.data as { id?: number }).id === a.id)).toBe(false)
      expect(statusChain(c.events, a.id)).toEqual(['pending', 'in_progress', 'success'])
      expect(statusChain(c.events, b.id)).toEqual(['pending', 'in_progress', 'paused', 'resuming', 'success'])

      for (const id of [a.id, b.id]) {
        const progress = progressOf(c.events, id)
        expect(progress.length).toBeGreaterThanOrEqual(2)
        // the last progress says done, and comes before the success
        expect(progress[progress.length - 1]!.data).toMatchObject({ bytes: MiB, total: MiB })
        const success = c.events.findIndex(isStatus(id, 'success'))
        expect(c.events.indexOf(progress[progress.length - 1]!)).toBeLessThan(success)
        expect(c.events.slice(success).some(e => e.type === 'progress' && (e.data as ProgressEvent).id === id)).toBe(false)
        // at most ~4 a second: consecutive events of one run are a quarter second apart (timers may fire a little
        // early), except the last value, sent at once when the status changes
        for (const run of runsOf(c.events, id)) {
          for (let i = 1; i < run.length - 1; i++) expect(run[i]!.at - run[i - 1]!.at).toBeGreaterThanOrEqual(240)
        }
        expect(progress[0]!.data).toMatchObject({ gateway: w.gateways[0]!.url })
      }
      // server time stamps, in order
      const ats = c.events.map(e => e.at)
      expect(ats).toEqual([...ats].sort((x, y) => x - y))
    }
    // every client got the same events
    const ids = (c: Client): string[] => c.events.map(e => `${e.type}:${e.at}:${JSON.stringify(e.data)}`)
    expect(ids(byHeader)).toEqual(ids(byQuery))
    expect(ids(sse)).toEqual(ids(byQuery))
    expect(ids(sseByQuery)).toEqual(ids(byQuery))
    for (const c of clients) c.close()
  })

  it('refuses a WebSocket handshake and an SSE request without a valid token (401)', async () => {
    for (const [query, headers] of [['', {}], ['?token=wrong', {}], ['', { authorization: 'Bearer wrong' }]] as const) {
      const refused = await wsRefusal(query, headers)
      expect(refused.status).toBe(401)
      expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'CIDGET_ERR_UNAUTHORIZED' } })
      const sse = await request(`http://${base}/api/events${query}`, { headers: { accept: 'text/event-stream', ...headers } })
      expect(sse.statusCode).toBe(401)
      expect(await sse.body.json()).toMatchObject({ error: { code: 'CIDGET_ERR_UNAUTHORIZED' } })
    }
  })

  it('refuses a WebSocket handshake and an SSE request from a foreign Origin (403), with a valid token and under --no-auth (issue 14)', async () => {
    const open = await buildServer({ downloader: dl, dir: join(w.dir, 'downloads'), token: null })
    await open.listen({ host: '127.0.0.1', port: 0 })
    const addr = open.server.address()
    if (addr === null || typeof addr === 'string') throw new Error('no port')
    const openBase = `127.0.0.1:${addr.port}`
    try {
      for (const [server, query] of [[base, `?token=${TOKEN}`], [openBase, '']] as const) {
        for (const origin of ['https://evil.example', 'null', `http://${server}.evil.example`]) {
          const ws = new WebSocket(`ws://${server}/api/events${query}`, { headers: { origin } })
          const refused = await new Promise<{ status: number, body: string }>((resolve, reject) => {
            ws.once('open', () => { ws.close(); reject(new Error(`the handshake from ${origin} was accepted`)) })
            ws.once('error', () => {})
            ws.once('unexpected-response', (_req, res) => {
              let body = ''
              res.on('data', (d: Buffer) => { body += d.toString() })
              res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
            })
          })
          expect(refused.status, origin).toBe(403)
          expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'CIDGET_ERR_FOREIGN_ORIGIN' } })
          const sse = await request(`http://${server}/api/events${query}`, { headers: { accept: 'text/event-stream', origin } })
          expect(sse.statusCode).toBe(403)
          await sse.body.dump()
        }
        // the service's own page: its Origin is the Host it was served from
        await new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`ws://${server}/api/events${query}`, { headers: { origin: `http://${server}` } })
          ws.once('open', () => { ws.close(); resolve() })
          ws.once('error', reject)
        })
      }
    } finally {
      await open.close()
    }
  })

  it('a plain GET (no Upgrade, no Accept: text/event-stream) is a 400', async () => {
    const res = await request(`http://${base}/api/events`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(res.statusCode).toBe(400)
    expect(await res.body.json()).toMatchObject({ error: { code: 'CIDGET_ERR_BAD_OPTION' } })
  })

  it('closing the server ends WebSocket and SSE clients at once', async () => {
    const other = await buildServer({ downloader: dl, dir: join(w.dir, 'downloads'), token: TOKEN })
    await other.listen({ host: '127.0.0.1', port: 0 })
    const addr = other.server.address()
    if (addr === null || typeof addr === 'string') throw new Error('no port')
    const saved = base
    base = `127.0.0.1:${addr.port}`
    try {
      const ws = await wsClient(`?token=${TOKEN}`)
      const sse = await sseClient(`?token=${TOKEN}`, {})
      // neither stream ends on its own: close() ends both (else it waits on them, and the test times out)
      await other.close()
      // the WebSocket got the server's close frame (a client cut off after the grace time sees 1006)
      expect(await ws.closed).toBe(1001)
      expect(await sse.closed).toBeNull()
    } finally {
      base = saved
    }
  })
})

/** A server of its own over a Downloader of its own (events pushed at it reach no other test's client). */
async function ownServer (opts: { eventsKeepaliveMs?: number, maxEventBacklogBytes?: number }): Promise<{ app: FastifyInstance, dl: Downloader, base: string }> {
  const own = await w.open({ now: () => Date.now() })
  const server = await buildServer({ downloader: own, dir: join(w.dir, 'downloads'), token: TOKEN, ...opts })
  await server.listen({ host: '127.0.0.1', port: 0 })
  const addr = server.server.address()
  if (addr === null || typeof addr === 'string') throw new Error('no port')
  return { app: server, dl: own, base: `127.0.0.1:${addr.port}` }
}

describe('slow and idle clients', () => {
  it('a WebSocket client too far behind is closed with code 1013; it gets what was sent before, then the close', async () => {
    const own = await ownServer({ maxEventBacklogBytes: 256 * KiB })
    try {
      const ws = new WebSocket(`ws://${own.base}/api/events?token=${TOKEN}`)
      await new Promise<void>((resolve, reject) => { ws.once('open', () => { resolve() }); ws.once('error', reject) })
      let received = 0
      ws.on('message', () => { received++ })
      const closed = new Promise<{ code: number, reason: string }>(resolve => {
        ws.on('close', (code, reason) => { resolve({ code, reason: reason.toString() }) })
      })
      // the client stops reading: what the server sends piles up in the socket buffers, then in the server's
      ws.pause()
      const [serverSide] = own.app.websocketServer.clients
      if (serverSide === undefined) throw new Error('no server-side socket')
      // events of 64 KiB, one a turn of the event loop, until the server gives the client up (bounded:
      // 64 MiB is far more than the loopback socket buffers and the limit hold)
      const reason = 'x'.repeat(64 * KiB)
      let sent = 0
      while (serverSide.readyState === serverSide.OPEN && sent < 1024) {
        own.dl.emit('cidget:gateway', { id: 1, gateway: 'http://gw.example', state: 'blocked', reason })
        sent++
        await new Promise(resolve => setImmediate(resolve))
      }
      expect(serverSide.readyState, `still open after ${sent} events`).toBe(serverSide.CLOSING)
      // once it reads again it gets what was sent before the cut, then the close frame
      ws.resume()
      expect(await closed).toEqual({ code: 1013, reason: 'too far behind' })
      expect(received).toBeGreaterThan(0)
      expect(received).toBeLessThan(sent)
    } finally {
      await own.app.close()
    }
  })

  it('an SSE client too far behind is disconnected', async () => {
    const own = await ownServer({ maxEventBacklogBytes: 256 * KiB })
    try {
      const controller = new AbortController()
      const res = await request(`http://${own.base}/api/events?token=${TOKEN}`, { headers: { accept: 'text/event-stream' }, signal: controller.signal })
      expect(res.statusCode).toBe(200)
      const connections = async (): Promise<number> => await new Promise((resolve, reject) => {
        own.app.server.getConnections((err, n) => { if (err !== null) reject(err); else resolve(n) })
      })
      expect(await connections()).toBe(1)
      // the body is not read: events of 64 KiB, one a turn of the event loop, until the server cuts
      // the connection (bounded: 64 MiB is far more than the socket buffers and the limit hold)
      const reason = 'x'.repeat(64 * KiB)
      let sent = 0
      while (await connections() > 0 && sent < 1024) {
        own.dl.emit('cidget:gateway', { id: 1, gateway: 'http://gw.example', state: 'blocked', reason })
        sent++
        await new Promise(resolve => setImmediate(resolve))
      }
      expect(await connections(), `still connected after ${sent} events`).toBe(0)
      // the client gets what was sent before the cut, then an error, not an end
      let received = 0
      const read = (async () => { for await (const chunk of res.body) received += (chunk as Buffer).length })()
      await expect(read).rejects.toThrow()
      expect(received).toBeLessThan(sent * 64 * KiB)
      controller.abort()
    } finally {
      await own.app.close()
    }
  })

  it('an idle SSE stream gets a keep-alive comment every eventsKeepaliveMs', async () => {
    const own = await ownServer({ eventsKeepaliveMs: 50 })
    try {
      const controller = new AbortController()
      const res = await request(`http://${own.base}/api/events?token=${TOKEN}`, { headers: { accept: 'text/event-stream' }, signal: controller.signal })
      expect(res.statusCode).toBe(200)
      let text = ''
      try {
        for await (const chunk of res.body) {
          text += (chunk as Buffer).toString('utf8')
          if (text.split(': keepalive\n\n').length > 2) break
        }
      } finally {
        controller.abort()
      }
      // two comments and nothing else: no event happened
      expect(text).toBe('retry: 2000\n\n: keepalive\n\n: keepalive\n\n')
    } finally {
      await own.app.close()
    }
  })
})
