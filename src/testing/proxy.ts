/**
 * A forward HTTP proxy on 127.0.0.1 for tests: absolute-URI requests
 * (`GET http://host/path`) are forwarded, `CONNECT host:port` opens a tunnel;
 * with `credentials` set, requests without the matching
 * `Proxy-Authorization: Basic …` get 407. Every request it receives is
 * recorded, so a test can tell which requests went through it.
 *
 * @module
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'

/** One request the proxy received. */
export interface ProxyRequestRecord {
  /** 'forward' (an absolute-URI request) or 'connect' (a tunnel). */
  kind: 'forward' | 'connect'
  /** The absolute URL (forward) or host:port (connect). */
  target: string
  /** The status the proxy answered with (200 for an opened tunnel); 0 until it answered. */
  status: number
}

export interface TestProxyOptions {
  /** "user:password": requests without them get 407. @default none asked */
  credentials?: string
  /** @default '127.0.0.1' */
  host?: string
  /** Host names the proxy connects to at these addresses instead of resolving them (no DNS query leaves a test). */
  hosts?: Record<string, string>
}

export interface TestProxy {
  /** http://127.0.0.1:PORT */
  readonly url: string
  readonly requests: ProxyRequestRecord[]
  close: () => Promise<void>
}

/** Starts a test proxy (see the module). */
export async function startTestProxy (opts: TestProxyOptions = {}): Promise<TestProxy> {
  const requests: ProxyRequestRecord[] = []
  const sockets = new Set<Socket>()
  const expected = opts.credentials === undefined ? undefined : `Basic ${Buffer.from(opts.credentials).toString('base64')}`
  const authorized = (req: IncomingMessage): boolean => expected === undefined || req.headers['proxy-authorization'] === expected

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const target = req.url ?? ''
    // recorded as it arrives (its status when answered): a request of a client that went away counts too
    const record: ProxyRequestRecord = { kind: 'forward', target, status: 0 }
    requests.push(record)
    if (!authorized(req)) {
      record.status = 407
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"', 'content-length': '0' }).end()
      return
    }
    let url: URL
    try {
      url = new URL(target)
      if (url.protocol !== 'http:') throw new Error('not http')
    } catch {
      record.status = 400
      res.writeHead(400, { 'content-length': '0' }).end()
      return
    }
    const headers = { ...req.headers }
    delete headers['proxy-authorization']
    delete headers['proxy-connection']
    const upstream = httpRequest({ host: opts.hosts?.[url.hostname] ?? url.hostname, port: url.port, path: url.pathname + url.search, method: req.method, headers }, (up) => {
      record.status = up.statusCode ?? 502
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
      up.on('error', () => { res.destroy() })
    })
    upstream.on('error', () => {
      record.status = 502
      if (!res.headersSent) res.writeHead(502, { 'content-length': '0' }).end()
      else res.destroy()
    })
    req.pipe(upstream)
  })

  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const target = req.url ?? ''
    const record: ProxyRequestRecord = { kind: 'connect', target, status: 0 }
    requests.push(record)
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    if (!authorized(req)) {
      record.status = 407
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n')
      return
    }
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))]
    const upstream = connect(port, opts.hosts?.[host] ?? host.replace(/^\[|\]$/g, ''), () => {
      record.status = 200
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    sockets.add(upstream)
    upstream.on('close', () => { sockets.delete(upstream); client.destroy() })
    upstream.on('error', () => {
      if (record.status === 0) record.status = 502
      client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n')
    })
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })

  await new Promise<void>((resolve) => server.listen(0, opts.host ?? '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
    }
  }
}
