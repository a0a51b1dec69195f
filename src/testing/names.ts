/**
 * Test servers for names: a delegated router (Delegated Routing V1 HTTP API,
 * `GET /routing/v1/ipns/NAME`) serving IPNS records, and a DNS-over-HTTPS
 * resolver (the JSON API) answering TXT questions. Real `node:http` servers on
 * loopback, like the test gateway, with the misbehaviours tests need.
 *
 * @example
 * ```ts
 * import { startTestDnsResolver, startTestRouter } from 'cidget/testing'
 *
 * const dns = await startTestDnsResolver({ txt: { '_dnslink.example.org': ['dnslink=/ipfs/bafy…'] } })
 * // GET `${dns.url}/dns-query?name=_dnslink.example.org&type=TXT` → {"Status":0,"Answer":[…]}
 * const router = await startTestRouter({ ipnsRecords: new Map([[name, recordBytes]]) })
 * // GET `${router.url}/routing/v1/ipns/${name}` → the record
 * ```
 *
 * @module
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { DEFAULT_TEST_GATEWAY_HOST } from './gateway/types.js'

/** One request as a test server saw it. */
export interface NameRequestRecord {
  method: string
  /** The request target as sent (`/routing/v1/ipns/k51…`, `/dns-query?name=…`). */
  url: string
  accept: string | null
  status: number
}

/** How a test server misbehaves for the requests that follow, until changed. */
export type NameServerFault =
  | { type: 'status', status: number, retryAfter?: number }
  /** Waits this long before answering. */
  | { type: 'latency', ms: number }
  /** Sends `body` with status 200 and `contentType` instead of the answer. */
  | { type: 'body', body: string | Uint8Array, contentType: string }

interface TestServer {
  /** `http://HOST:PORT`, without a trailing slash. */
  readonly url: string
  /** Every request so far, in arrival order. */
  readonly requests: NameRequestRecord[]
  /** Sets (or with `undefined` clears) the fault applied to every later request. */
  setFault (fault: NameServerFault | undefined): void
  /** Stops listening and destroys open connections. */
  close (): Promise<void>
}

export interface TestRouter extends TestServer {
  /** Serves `record` as the IPNS record of `name` (as the request spells it); `undefined`: none, a 404. */
  setIpnsRecord (name: string, record: Uint8Array | undefined): void
  /**
   * Serves `records` (sent as they are: any JSON, unknown fields and protocols
   * included) as the providers of `cid` (as the request spells it) at
   * `GET /routing/v1/providers/CID`; `undefined`: none, a 404. Answered as
   * NDJSON when the request accepts it (unless `format` says `json`), else as
   * `{"Providers": [...]}`; `cacheControl` is sent as the Cache-Control header.
   */
  setProviders (cid: string, records: readonly unknown[] | undefined, opts?: { format?: 'json' | 'ndjson', cacheControl?: string }): void
}

export interface TestDnsResolver extends TestServer {
  /**
   * Sets the TXT records of a DNS name (`_dnslink.example.org`): strings, each
   * sent as one quoted string; `undefined` makes the name not exist (NXDOMAIN).
   */
  setTxt (name: string, txt: readonly string[] | undefined): void
}

type Handler = (req: IncomingMessage, url: URL, res: ServerResponse, record: NameRequestRecord) => void

async function startServer (host: string, handler: Handler): Promise<TestServer> {
  const requests: NameRequestRecord[] = []
  const sockets = new Set<Socket>()
  const timers = new Set<ReturnType<typeof setTimeout>>()
  let fault: NameServerFault | undefined
  const server: Server = createServer((req, res) => {
    const record: NameRequestRecord = { method: req.method ?? 'GET', url: req.url ?? '/', accept: req.headers.accept ?? null, status: 0 }
    requests.push(record)
    const url = new URL(`http://server.invalid${req.url ?? '/'}`)
    const answer = (): void => {
      const f = fault
      if (f?.type === 'status') {
        record.status = f.status
        res.writeHead(f.status, { 'Content-Type': 'text/plain', ...(f.retryAfter === undefined ? {} : { 'Retry-After': String(f.retryAfter) }) })
        res.end(`injected fault: status ${f.status}\n`)
      } else if (f?.type === 'body') {
        record.status = 200
        res.writeHead(200, { 'Content-Type': f.contentType })
        res.end(f.body)
      } else {
        handler(req, url, res, record)
      }
    }
    if (fault?.type === 'latency') {
      const t = setTimeout(() => { timers.delete(t); answer() }, fault.ms)
      timers.add(t)
    } else {
      answer()
    }
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => { server.off('error', reject); resolve() })
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('test server: no TCP address')
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
  let closing: Promise<void> | undefined
  return {
    url,
    requests,
    setFault: (f) => { fault = f },
    close: async () => {
      closing ??= new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t)
        server.close(() => resolve())
        server.closeAllConnections()
        for (const s of sockets) s.destroy()
      })
      return await closing
    }
  }
}

function send (res: ServerResponse, record: NameRequestRecord, status: number, type: string, body: string | Uint8Array): void {
  record.status = status
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength) })
  res.end(body)
}

/**
 * Starts a delegated router: `GET /routing/v1/ipns/NAME` answers the record
 * set for NAME (`application/vnd.ipfs.ipns-record`), or 404.
 */
export async function startTestRouter (opts: { ipnsRecords?: ReadonlyMap<string, Uint8Array>, host?: string } = {}): Promise<TestRouter> {
  const records = new Map(opts.ipnsRecords ?? [])
  const providers = new Map<string, { records: readonly unknown[], format?: 'json' | 'ndjson', cacheControl?: string }>()
  const server = await startServer(opts.host ?? DEFAULT_TEST_GATEWAY_HOST, (req, url, res, record) => {
    const p = /^\/routing\/v1\/providers\/([^/]+)$/.exec(url.pathname)
    if (req.method === 'GET' && p !== null) {
      const found = providers.get(decodeURIComponent(p[1] ?? ''))
      if (found === undefined) {
        send(res, record, 404, 'text/plain', 'no providers\n')
        return
      }
      const ndjson = found.format === 'ndjson' || (found.format === undefined && (req.headers.accept ?? '').includes('application/x-ndjson'))
      if (found.cacheControl !== undefined) res.setHeader('Cache-Control', found.cacheControl)
      if (ndjson) send(res, record, 200, 'application/x-ndjson', found.records.map((r) => JSON.stringify(r) + '\n').join(''))
      else send(res, record, 200, 'application/json', JSON.stringify({ Providers: found.records }))
      return
    }
    const m = /^\/routing\/v1\/ipns\/([^/]+)$/.exec(url.pathname)
    if (req.method !== 'GET' || m === null) {
      send(res, record, 404, 'text/plain', 'not found\n')
      return
    }
    const bytes = records.get(decodeURIComponent(m[1] ?? ''))
    if (bytes === undefined) send(res, record, 404, 'text/plain', 'no record\n')
    else send(res, record, 200, 'application/vnd.ipfs.ipns-record', bytes)
  })
  return Object.assign(server, {
    setIpnsRecord: (name: string, record: Uint8Array | undefined): void => {
      if (record === undefined) records.delete(name)
      else records.set(name, record)
    },
    setProviders: (cid: string, list: readonly unknown[] | undefined, o: { format?: 'json' | 'ndjson', cacheControl?: string } = {}): void => {
      if (list === undefined) providers.delete(cid)
      else providers.set(cid, { records: list, ...o })
    }
  })
}

/**
 * Starts a DNS-over-HTTPS resolver (JSON API): `GET /dns-query?name=N&type=TXT`
 * answers `{"Status":0,"Answer":[{"name":N,"type":16,"TTL":60,"data":"\"…\""}]}`,
 * or `{"Status":3}` (NXDOMAIN) for a name without TXT records.
 */
export async function startTestDnsResolver (opts: { txt?: Record<string, readonly string[]>, host?: string } = {}): Promise<TestDnsResolver> {
  const txt = new Map<string, readonly string[]>(Object.entries(opts.txt ?? {}))
  const server = await startServer(opts.host ?? DEFAULT_TEST_GATEWAY_HOST, (req, url, res, record) => {
    const name = (url.searchParams.get('name') ?? '').replace(/\.$/, '').toLowerCase()
    if (req.method !== 'GET' || url.pathname !== '/dns-query' || name === '') {
      send(res, record, 400, 'text/plain', 'expected GET /dns-query?name=…&type=TXT\n')
      return
    }
    const type = (url.searchParams.get('type') ?? 'A').toUpperCase()
    const values = txt.get(name)
    const answer = values === undefined
      ? { Status: 3, Question: [{ name, type: 16 }] }
      : {
          Status: 0,
          Question: [{ name, type: 16 }],
          Answer: type === 'TXT' || type === '16' ? values.map((v) => ({ name, type: 16, TTL: 60, data: JSON.stringify(v) })) : []
        }
    send(res, record, 200, 'application/dns-json', JSON.stringify(answer))
  })
  return Object.assign(server, {
    setTxt: (name: string, values: readonly string[] | undefined): void => {
      if (values === undefined) txt.delete(name.toLowerCase())
      else txt.set(name.toLowerCase(), values)
    }
  })
}
