/**
 * probeGateways against real loopback gateways that misbehave on purpose.
 */
import { once } from 'node:events'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { HttpClient } from '../../src/gateways/http.js'
import { probeGateways, probeGateway, EMPTY_CID } from '../../src/gateways/probe.js'
import { CidgetError } from '../../src/core/errors.js'
import { MemoryBlocks, addFile, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { closedUrl, within } from '../helpers.js'

const MiB = 1024 * 1024

let blocks: MemoryBlocks
let sample: string
let http: HttpClient
const started: TestGateway[] = []

async function gateway (): Promise<TestGateway> {
  const gw = await startTestGateway({ blocks })
  started.push(gw)
  return gw
}

beforeAll(async () => {
  blocks = new MemoryBlocks()
  sample = (await addFile(blocks, seededBytes(2 * MiB, 3))).toString()
  http = new HttpClient({ timeoutMs: 2_000 })
})

afterAll(async () => {
  await http.close()
  for (const gw of started) await gw.close()
})

describe('probeGateways', () => {
  it('a working gateway: reachable, trustless raw and CAR, Range, latency and throughput', async () => {
    const gw = await gateway()
    const [probe] = await probeGateways([gw.url + '/ipfs/'], { http, sample })
    expect(probe).toMatchObject({
      gateway: gw.url,
      reachable: true,
      error: null,
      trustlessRaw: true,
      trustlessCar: true,
      range: true
    })
    expect(probe!.latencyMs).toBeGreaterThan(0)
    expect(probe!.throughputBps).toBeGreaterThan(0)
    // what crossed the wire: the checks ask for what the README says they ask for
    const byFormat = (f: string): string[] => gw.requests.filter(r => r.format === f).map(r => `${r.method} ${r.url}`)
    expect(byFormat('raw')).toEqual([
      `GET /ipfs/${EMPTY_CID}?format=raw`,
      ...Array(3).fill(`HEAD /ipfs/${EMPTY_CID}?format=raw`)
    ])
    expect(byFormat('car')).toEqual([`GET /ipfs/${EMPTY_CID}?format=car`])
    const onSample = gw.requests.filter(r => r.path === `/ipfs/${sample}`)
    expect(onSample.map(r => [r.range, r.status])).toEqual([['bytes=0-0', 206], [null, 200]])
    expect(onSample[1]!.bytesSent).toBe(2 * MiB)
  })

  it('without a sample, Range and throughput are unknown and the sample is never asked for', async () => {
    const gw = await gateway()
    const [probe] = await probeGateways([gw.url], { http })
    expect(probe).toMatchObject({ reachable: true, trustlessRaw: true, trustlessCar: true, range: null, throughputBps: null })
    expect(probe!.latencyMs).toBeGreaterThan(0)
    expect(gw.requests.every(r => r.path === `/ipfs/${EMPTY_CID}`)).toBe(true)
  })

  it('a gateway that ignores Range: range no, still trustless and measured', async () => {
    const gw = await gateway()
    gw.addFault({ fault: { type: 'ignore-range' } })
    const probe = await probeGateway(gw.url, { http, sample })
    expect(probe).toMatchObject({ reachable: true, trustlessRaw: true, trustlessCar: true, range: false })
    expect(probe.throughputBps).toBeGreaterThan(0)
  })

  it('a gateway answering 500 to everything: reachable, but no trustless answers and no verdict on Range', async () => {
    const gw = await gateway()
    gw.addFault({ fault: { type: 'status', status: 500 } })
    const probe = await probeGateway(gw.url, { http, sample })
    expect(probe).toMatchObject({
      reachable: true,
      error: null,
      trustlessRaw: false,
      trustlessCar: false,
      range: null,
      throughputBps: null
    })
    expect(probe.latencyMs).toBeGreaterThan(0)
  })

  it('a closed port: unreachable with CIDGET_ERR_NETWORK, nothing else claimed', async () => {
    const url = await closedUrl()
    const [probe] = await probeGateways([url], { http, sample })
    expect(probe).toEqual({
      gateway: url,
      reachable: false,
      error: 'CIDGET_ERR_NETWORK',
      trustlessRaw: null,
      trustlessCar: null,
      range: null,
      latencyMs: null,
      throughputBps: null
    })
  })

  it('probes concurrently and keeps the order of the list (duplicates once)', async () => {
    const slow = await gateway()
    const alsoSlow = await gateway()
    const fast = await gateway()
    for (const gw of [slow, alsoSlow]) gw.addFault({ fault: { type: 'latency', ms: 150 } })
    const down = await closedUrl()
    const probes = await probeGateways([slow.url, down, fast.url, alsoSlow.url, slow.url + '/'], { http })
    expect(probes.map(p => [p.gateway, p.reachable])).toEqual([[slow.url, true], [down, false], [fast.url, true], [alsoSlow.url, true]])
    // the second slow gateway was asked before the first one had answered its first request
    expect(alsoSlow.requests[0]!.startedAt).toBeLessThan(slow.requests[0]!.endedAt!)
    expect(slow.requests).toHaveLength(5) // once, not twice
    expect(probes[0]!.latencyMs).toBeGreaterThanOrEqual(150)
    // measured at the same time, under the same load: the gateway without the delay is the quicker
    // (a fixed ceiling would fail on a machine loaded enough to delay loopback answers by 150 ms)
    expect(probes[2]!.latencyMs).toBeLessThan(probes[0]!.latencyMs!)
  })

  it('a request that times out makes the gateway unreachable with CIDGET_ERR_TIMEOUT', async () => {
    const gw = await gateway()
    gw.addFault({ fault: { type: 'latency', ms: 2_000 } })
    const quick = new HttpClient({ timeoutMs: 100 })
    try {
      const probe = await probeGateway(gw.url, { http: quick })
      expect(probe).toMatchObject({ reachable: false, error: 'CIDGET_ERR_TIMEOUT' })
    } finally {
      await quick.close()
    }
  })

  it('bad input is refused before any request', async () => {
    const gw = await gateway()
    await expect(probeGateways(['ftp://x'], { http })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION' })
    await expect(probeGateways([gw.url], { http, sample: 'not a cid' })).rejects.toBeInstanceOf(CidgetError)
    await expect(probeGateways([gw.url], { http, sample: 'not a cid' })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_TARGET' })
    await expect(probeGateways([], { http })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION' })
    await expect(probeGateways([gw.url], { http, latencySamples: 0 })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION' })
    expect(gw.requests).toHaveLength(0)
  })

  it('an abort rejects promptly with the reason', async () => {
    const gw = await gateway()
    // the answer would take a minute and no timeout ends the request before it: a 10 s bound tells
    // "prompt" from "waited", with room for a loaded machine
    gw.addFault({ fault: { type: 'latency', ms: 60_000 } })
    const patient = new HttpClient({ timeoutMs: 120_000 })
    try {
      const controller = new AbortController()
      const reason = new Error('stop')
      const probing = probeGateways([gw.url], { http: patient, signal: controller.signal })
      if (gw.requests.length === 0) await once(gw, 'request')
      controller.abort(reason)
      await within(10_000, expect(probing).rejects.toBe(reason), 'the probe is not aborted')
    } finally {
      await patient.close()
    }
  })
})
