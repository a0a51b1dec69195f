import { describe, it, expect, afterEach } from 'vitest'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { createHash } from 'node:crypto'
import { HttpClient } from '../../src/gateways/http.js'
import { isCidgetError } from '../../src/core/errors.js'
import { seededBytes } from '../../src/testing/index.js'

let server: Server | undefined
let client: HttpClient | undefined

afterEach(async () => {
  await client?.close()
  client = undefined
  if (server !== undefined) await new Promise(resolve => server?.close(resolve))
  server = undefined
})

/** A server that sends `body` in writes of `write` bytes, then ends it (or, with `hang`, never ends it). */
async function serve (body: Uint8Array, write: number, hang = false): Promise<string> {
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(body.length) })
    let at = 0
    const more = (): void => {
      while (at < body.length - (hang ? write : 0)) {
        const ok = res.write(body.subarray(at, at + write))
        at += write
        if (!ok) { res.once('drain', more); return }
      }
      if (!hang) res.end()
    }
    more()
  })
  await new Promise<void>(resolve => server?.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('HttpClient body', () => {
  it('a body that failed before the first read (a reset right after the headers) fails the reading instead of leaving it waiting', async () => {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(1024 * 1024) })
      res.write(seededBytes(64 * 1024, 7), () => res.destroy())
    })
    await new Promise<void>(resolve => server?.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    // the client's socket, to know when the reset has reached it
    const sockets: Socket[] = []
    const onSocket = (m: unknown): void => { sockets.push((m as { socket: Socket }).socket) }
    subscribe('net.client.socket', onSocket)
    client = new HttpClient({ timeoutMs: 5_000 })
    try {
      const res = await client.request(url, { gateway: url })
      const socket = sockets[0] as Socket
      if (!socket.destroyed) await new Promise(resolve => socket.once('close', resolve)) // (undici destroys it with an error)
      for (let i = 0; i < 3; i++) await new Promise(resolve => setImmediate(resolve)) // undici errors the body
      const err = await (async () => { for await (const _chunk of res.body) { /* what arrived before the reset */ } })().then(() => undefined, (e: unknown) => e)
      expect(isCidgetError(err, 'CIDGET_ERR_STREAM_RESET'), String(err)).toBe(true)
    } finally {
      unsubscribe('net.client.socket', onSocket)
    }
  }, 10_000)

  it('hands over every byte in order to a reader slower than the socket', async () => {
    const body = seededBytes(8 * 1024 * 1024, 5)
    const url = await serve(body, 100_000)
    client = new HttpClient({ timeoutMs: 5_000 })
    const res = await client.request(url, { gateway: url })
    const hash = createHash('sha256')
    let chunks = 0
    let largest = 0
    for await (const chunk of res.body) {
      hash.update(chunk)
      chunks++
      largest = Math.max(largest, chunk.length)
      if (chunks % 16 === 0) await new Promise(resolve => setTimeout(resolve, 2)) // a busy reader: chunks pile up meanwhile
    }
    expect(hash.digest('hex')).toBe(sha(body))
    // chunks as the socket delivered them, not what piled up joined into one buffer
    expect(largest).toBeLessThanOrEqual(256 * 1024)
  })

  it('a body discarded while it is read ends the reading with STREAM_RESET (undici errors a body destroyed before its end)', async () => {
    const url = await serve(seededBytes(1024 * 1024, 6), 64 * 1024, true)
    client = new HttpClient({ timeoutMs: 5_000 })
    const res = await client.request(url, { gateway: url })
    const warnings: string[] = []
    const onWarning = (w: Error): void => { warnings.push(w.name) }
    process.on('warning', onWarning)
    const read = (async () => {
      let bytes = 0
      let scheduled = false
      for await (const chunk of res.body) {
        bytes += chunk.length
        if (bytes >= 256 * 1024 && !scheduled) {
          scheduled = true
          // twelve times: the second and later calls do nothing
          setImmediate(() => { for (let i = 0; i < 12; i++) res.discard() })
        }
      }
      return bytes
    })()
    const err = await read.then(() => undefined, (e: unknown) => e)
    await new Promise(resolve => setImmediate(resolve))
    process.off('warning', onWarning)
    expect(isCidgetError(err, 'CIDGET_ERR_STREAM_RESET'), String(err)).toBe(true)
    expect(warnings).toEqual([]) // a listener per discard() would pass the limit of 10 (MaxListenersExceededWarning)
  })
})
