import { once } from 'node:events'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { identity } from 'multiformats/hashes/identity'
import { sha1 } from 'multiformats/hashes/sha1'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { CidgetError } from '../../src/core/errors.js'
import { MAX_BLOCK_BYTES, blockLength, fetchRawBlock, identityBytes, joinBlock, verifyBlock, verifyBlockFrom } from '../../src/gateways/block.js'
import { HttpClient } from '../../src/gateways/http.js'
import { MemoryBlocks, seededBytes, startTestGateway } from '../../src/testing/index.js'
import type { TestGateway } from '../../src/testing/index.js'

/** The rejection of `promise`, which must reject. */
async function rejection (promise: Promise<unknown>): Promise<CidgetError> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(CidgetError)
  return err as CidgetError
}

const bytes = seededBytes(4096, 3)
let blocks: MemoryBlocks
let rawCid: CID
let sha512Cid: CID
let pbCid: CID
let pbBytes: Uint8Array
let bigCid: CID
let gw: TestGateway
let slow: TestGateway
let http: HttpClient

beforeAll(async () => {
  blocks = new MemoryBlocks()
  rawCid = blocks.put(CID.createV1(raw.code, await sha256.digest(bytes)), bytes)
  const other = seededBytes(3000, 4)
  sha512Cid = blocks.put(CID.createV1(raw.code, await sha512.digest(other)), other)
  // A dag-pb node by hand, addressed as CIDv0 (dag-pb + sha2-256 implied).
  pbBytes = dagPb.encode(dagPb.prepare({ Data: new Uint8Array([8, 1]), Links: [{ Hash: rawCid, Name: 'leaf', Tsize: bytes.length }] }))
  pbCid = blocks.put(CID.createV0(await sha256.digest(pbBytes)), pbBytes)
  const big = seededBytes(1024 * 1024, 5)
  bigCid = blocks.put(CID.createV1(raw.code, await sha256.digest(big)), big)
  gw = await startTestGateway({ blocks })
  // 2 MiB/s in 16 KiB writes: sending the 1 MiB block whole would take 500 ms.
  slow = await startTestGateway({ blocks, maxBytesPerSecond: 2 * 1024 * 1024, chunkSize: 16 * 1024 })
  http = new HttpClient({ timeoutMs: 300 })
})

afterAll(async () => {
  await http.close()
  await gw.close()
  await slow.close()
})

beforeEach(() => {
  gw.clearFaults()
  gw.requests.length = 0
  slow.clearFaults()
  slow.requests.length = 0
})

describe('verifyBlock', () => {
  it('accepts sha2-256 (raw CIDv1 and dag-pb CIDv0) and rejects other bytes', async () => {
    await verifyBlock(rawCid, bytes)
    await verifyBlock(pbCid, pbBytes)
    const err = await rejection(verifyBlock(rawCid, bytes.subarray(1)))
    expect(err.code).toBe('CIDGET_ERR_BLOCK_INVALID')
    expect(err.message).toContain(rawCid.toString())
    expect((await rejection(verifyBlock(pbCid, bytes))).code).toBe('CIDGET_ERR_BLOCK_INVALID')
  })

  it('accepts sha2-512 and rejects a flipped byte', async () => {
    const data = seededBytes(1000, 9)
    const cid = CID.createV1(raw.code, await sha512.digest(data))
    expect(cid.multihash.code).toBe(0x13)
    await verifyBlock(cid, data)
    const flipped = new Uint8Array(data)
    flipped[500] = (flipped[500] ?? 0) ^ 1
    expect((await rejection(verifyBlock(cid, flipped))).code).toBe('CIDGET_ERR_BLOCK_INVALID')
  })

  it('accepts sha1 and truncated sha2-256 digests', async () => {
    const data = seededBytes(500, 10)
    await verifyBlock(CID.createV1(raw.code, await sha1.digest(data)), data)
    const truncated = CID.createV1(raw.code, await sha256.digest(data, { truncate: 20 }))
    expect(truncated.multihash.size).toBe(20)
    await verifyBlock(truncated, data)
    expect((await rejection(verifyBlock(truncated, data.subarray(1)))).code).toBe('CIDGET_ERR_BLOCK_INVALID')
  })

  it('identity: the digest is the data', async () => {
    const data = new TextEncoder().encode('inline')
    const cid = CID.createV1(raw.code, identity.digest(data))
    await verifyBlock(cid, data)
    expect(identityBytes(cid)).toEqual(data)
    expect(identityBytes(rawCid)).toBeUndefined()
    expect((await rejection(verifyBlock(cid, new TextEncoder().encode('inlinE')))).code).toBe('CIDGET_ERR_BLOCK_INVALID')
  })

  it('an unsupported multihash is DAG_INVALID naming the code; so is a digest truncated too far', async () => {
    const blake3 = CID.createV1(raw.code, Digest.create(0x1e, new Uint8Array(32)))
    const err = await rejection(verifyBlock(blake3, bytes))
    expect(err.code).toBe('CIDGET_ERR_DAG_INVALID')
    expect(err.message).toContain('0x1e')
    const short = CID.createV1(raw.code, Digest.create(sha256.code, (await sha256.digest(bytes)).digest.subarray(0, 8)))
    expect((await rejection(verifyBlock(short, bytes))).code).toBe('CIDGET_ERR_DAG_INVALID')
  })
})

describe('a block in pieces (as it came off the network)', () => {
  /** `data` cut at `cuts`. */
  const cut = (data: Uint8Array, cuts: number[]): Uint8Array[] => {
    const out: Uint8Array[] = []
    let at = 0
    for (const c of [...cuts, data.length]) { out.push(data.subarray(at, c)); at = c }
    return out
  }

  it('is hashed piece by piece with every supported hash, truncated digests included, and a changed byte in any piece is caught', async () => {
    const data = seededBytes(300_000, 11)
    const cuts = [1, 65_536, 65_537, 200_000]
    const cids = [
      CID.createV1(raw.code, await sha256.digest(data)),
      CID.createV1(raw.code, await sha512.digest(data)),
      CID.createV1(raw.code, await sha1.digest(data)),
      CID.createV1(raw.code, await sha256.digest(data, { truncate: 20 })),
      CID.createV1(raw.code, await sha512.digest(data, { truncate: 32 }))
    ]
    for (const cid of cids) {
      await verifyBlockFrom(cid, cut(data, cuts), 'http://gw')
      await verifyBlockFrom(cid, [data], 'http://gw')
      await verifyBlockFrom(cid, [], 'http://gw').then(() => { throw new Error('an empty block passed') }, (err: unknown) => {
        expect((err as CidgetError).code).toBe('CIDGET_ERR_BLOCK_INVALID')
      })
      for (const at of [0, 65_536, 299_999]) {
        const changed = new Uint8Array(data)
        changed[at] = (changed[at] ?? 0) ^ 0x80
        const err = await rejection(verifyBlockFrom(cid, cut(changed, cuts), 'http://gw'))
        expect(err.code).toBe('CIDGET_ERR_BLOCK_INVALID')
        expect(err.message).toContain('300000 bytes received')
        expect(err.gateway).toBe('http://gw')
      }
    }
    // identity: joined, then compared
    const inline = new TextEncoder().encode('inline data')
    const id = CID.createV1(raw.code, identity.digest(inline))
    await verifyBlockFrom(id, cut(inline, [3, 3, 7]), undefined)
    expect((await rejection(verifyBlockFrom(id, cut(inline, [3]).slice(1), undefined))).code).toBe('CIDGET_ERR_BLOCK_INVALID')
    // the empty block
    await verifyBlockFrom(CID.createV1(raw.code, await sha256.digest(new Uint8Array(0))), [], undefined)
  })

  it('has the length of its pieces and joins into the same bytes (copied only when there is more than one piece)', () => {
    const data = seededBytes(1000, 12)
    const pieces = cut(data, [10, 10, 999])
    expect(blockLength(pieces)).toBe(1000)
    expect(blockLength(data)).toBe(1000)
    expect(blockLength([])).toBe(0)
    expect(Buffer.from(joinBlock(pieces)).equals(Buffer.from(data))).toBe(true)
    expect(joinBlock(data)).toBe(data)
    expect(joinBlock([data])).toBe(data)
    expect(joinBlock([]).length).toBe(0)
  })
})

describe('fetchRawBlock', () => {
  it('fetches and verifies a raw block with ?format=raw', async () => {
    const { bytes: got, ms } = await fetchRawBlock(http, gw.url, rawCid, {})
    expect(got).toEqual(bytes)
    expect(ms).toBeGreaterThanOrEqual(0)
    expect(gw.requests).toHaveLength(1)
    expect(gw.requests[0]?.url).toBe(`/ipfs/${rawCid.toString()}?format=raw`)
    expect(gw.requests[0]?.format).toBe('raw')
  })

  it('fetches sha2-512 and CIDv0 dag-pb blocks; a trailing slash on the gateway is fine', async () => {
    expect((await fetchRawBlock(http, `${gw.url}/`, sha512Cid, {})).bytes.length).toBe(3000)
    expect((await fetchRawBlock(http, gw.url, pbCid, {})).bytes).toEqual(pbBytes)
    expect(gw.requests[1]?.url).toBe(`/ipfs/${pbCid.toString()}?format=raw`)
  })

  it('identity CIDs and unverifiable hashes never reach the network', async () => {
    const inline = CID.createV1(raw.code, identity.digest(Uint8Array.of(1, 2, 3)))
    expect((await fetchRawBlock(http, gw.url, inline, {})).bytes).toEqual(Uint8Array.of(1, 2, 3))
    const blake3 = CID.createV1(raw.code, Digest.create(0x1e, new Uint8Array(32)))
    expect((await rejection(fetchRawBlock(http, gw.url, blake3, {}))).code).toBe('CIDGET_ERR_DAG_INVALID')
    expect(gw.requests).toHaveLength(0)
  })

  it('wrong-block → BLOCK_INVALID naming the gateway', async () => {
    gw.addFault({ fault: { type: 'wrong-block' } })
    const err = await rejection(fetchRawBlock(http, gw.url, rawCid, {}))
    expect(err.code).toBe('CIDGET_ERR_BLOCK_INVALID')
    expect(err.gateway).toBe(gw.url)
    expect(err.message).toContain(gw.url)
  })

  it('a Content-Length over maxBytes → BLOCK_TOO_LARGE', async () => {
    const err = await rejection(fetchRawBlock(http, gw.url, rawCid, { maxBytes: 1000 }))
    expect(err.code).toBe('CIDGET_ERR_BLOCK_TOO_LARGE')
    expect(err.message).toContain('4096')
    // exactly the limit is allowed
    expect((await fetchRawBlock(http, gw.url, rawCid, { maxBytes: 4096 })).bytes.length).toBe(4096)
  })

  it('without a Content-Length, the streamed count stops the body as soon as it passes maxBytes', async () => {
    slow.addFault({ fault: { type: 'no-length' } })
    const err = await rejection(fetchRawBlock(http, slow.url, bigCid, { maxBytes: 1000 }))
    expect(err.code).toBe('CIDGET_ERR_BLOCK_TOO_LARGE')
    const record = slow.requests[0]
    expect(record?.fault).toBe('no-length')
    if (record !== undefined && record.endedAt === null) await once(slow, 'response')
    expect(record?.aborted).toBe(true)
    expect(record?.bytesSent).toBeLessThan(512 * 1024)
  })

  it('the default limit is 2 MiB', () => {
    expect(MAX_BLOCK_BYTES).toBe(2 * 1024 * 1024)
  })

  it('404 → NOT_FOUND', async () => {
    const missing = CID.createV1(raw.code, await sha256.digest(Uint8Array.of(9, 9, 9)))
    const err = await rejection(fetchRawBlock(http, gw.url, missing, {}))
    expect(err.code).toBe('CIDGET_ERR_NOT_FOUND')
    expect(err.status).toBe(404)
    gw.addFault({ fault: { type: 'status', status: 410 } })
    expect((await rejection(fetchRawBlock(http, gw.url, rawCid, {}))).code).toBe('CIDGET_ERR_NOT_FOUND')
  })

  it('503 and 429 with Retry-After → HTTP_STATUS with retryAfterMs (capped); other statuses → HTTP_STATUS with status', async () => {
    gw.addFault({ fault: { type: 'status', status: 503, retryAfter: 2 }, times: 1 })
    const err = await rejection(fetchRawBlock(http, gw.url, rawCid, {}))
    expect(err.code).toBe('CIDGET_ERR_HTTP_STATUS')
    expect(err.status).toBe(503)
    expect(err.retryAfterMs).toBe(2000)

    gw.addFault({ fault: { type: 'status', status: 429, retryAfter: 3600 }, times: 1 })
    const capped = await rejection(fetchRawBlock(http, gw.url, rawCid, { maxRetryAfterMs: 5000 }))
    expect(capped.status).toBe(429)
    expect(capped.retryAfterMs).toBe(5000)

    gw.addFault({ fault: { type: 'status', status: 500, retryAfter: 1 }, times: 1 })
    const plain = await rejection(fetchRawBlock(http, gw.url, rawCid, {}))
    expect(plain.code).toBe('CIDGET_ERR_HTTP_STATUS')
    expect(plain.status).toBe(500)
    expect(plain.retryAfterMs).toBeUndefined()
  })

  it('a cut body is a stream reset and a stalled one a timeout, never an invalid block', async () => {
    gw.addFault({ fault: { type: 'reset', afterBytes: 100 }, times: 1 })
    expect((await rejection(fetchRawBlock(http, gw.url, rawCid, {}))).code).toBe('CIDGET_ERR_STREAM_RESET')
    gw.addFault({ fault: { type: 'stall', afterBytes: 100 }, times: 1 })
    const err = await rejection(fetchRawBlock(http, gw.url, rawCid, {}))
    expect(err.code).toBe('CIDGET_ERR_TIMEOUT')
  })

  it('abort rejects with the reason', async () => {
    gw.addFault({ fault: { type: 'latency', ms: 5000 }, times: 1 })
    const controller = new AbortController()
    const reason = new Error('stop')
    setTimeout(() => controller.abort(reason), 20)
    const started = performance.now()
    await expect(fetchRawBlock(http, gw.url, rawCid, { signal: controller.signal })).rejects.toBe(reason)
    expect(performance.now() - started).toBeLessThan(1_000) // the answer would take 5 s
  })
})
