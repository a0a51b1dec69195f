import { describe, expect, it } from 'vitest'
import { CarReader } from '@ipld/car'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { varint } from 'multiformats'
import { ChunkReader, carBlocks } from '../../src/gateways/car.js'
import { joinBlock } from '../../src/gateways/block.js'
import { carHeader } from '../../src/sink/car-writer.js'

/**
 * A CARv1 of `blocks` naming `root`: the project's own header (sink/car-writer.ts), each section
 * framed here from the CID's bytes, so that a test can give bytes no CID object would hold.
 */
function car (blocks: Array<{ cid: Uint8Array, bytes: Uint8Array }>, root: CID): Uint8Array {
  const parts: Uint8Array[] = [carHeader(root)]
  for (const b of blocks) {
    const length = b.cid.length + b.bytes.length
    parts.push(varint.encodeTo(length, new Uint8Array(varint.encodingLength(length))), b.cid, b.bytes)
  }
  return Buffer.concat(parts)
}

async function * chunked (bytes: Uint8Array, sizes: (i: number) => number): AsyncGenerator<Uint8Array> {
  let at = 0
  for (let i = 0; at < bytes.length; i++) {
    const n = Math.max(1, sizes(i))
    // each chunk a Buffer of its own, as a socket gives them
    yield Buffer.from(bytes.subarray(at, at + n))
    at += n
  }
}

async function read (bytes: Uint8Array, sizes: (i: number) => number): Promise<Array<{ cid: string, bytes: string }>> {
  const out: Array<{ cid: string, bytes: string }> = []
  for await (const { cid, bytes: b } of carBlocks(new ChunkReader(chunked(bytes, sizes)))) {
    // a CID has bytes of its own: not a view that would keep its chunk alive while the CID is kept
    expect(cid.bytes.buffer.byteLength).toBe(cid.bytes.byteLength)
    out.push({ cid: cid.toString(), bytes: Buffer.from(joinBlock(b)).toString('hex') })
  }
  return out
}

async function blocksOf (): Promise<{ bytes: Uint8Array, expected: Array<{ cid: string, bytes: string }> }> {
  const list: Array<{ cid: CID, bytes: Uint8Array }> = []
  for (const size of [0, 1, 31, 100, 1000, 5000]) {
    const bytes = Buffer.alloc(size, size % 251)
    list.push({ cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes })
  }
  const node = dagPb.encode({ Data: new Uint8Array([8, 1]), Links: [] })
  list.push({ cid: CID.createV0(await sha256.digest(node)), bytes: node })
  list.push({ cid: CID.createV1(dagPb.code, await sha256.digest(node)), bytes: node })
  const small = new Uint8Array([1, 2, 3])
  list.push({ cid: CID.createV1(raw.code, identity.digest(small)), bytes: small })
  const bytes = car(list.map((b) => ({ cid: b.cid.bytes, bytes: b.bytes })), list[0]!.cid)
  const reference = await CarReader.fromBytes(bytes)
  const expected: Array<{ cid: string, bytes: string }> = []
  for await (const b of reference.blocks()) expected.push({ cid: b.cid.toString(), bytes: Buffer.from(b.bytes).toString('hex') })
  return { bytes, expected }
}

describe('carBlocks over ChunkReader', () => {
  it('reads what @ipld/car reads, however the bytes are cut into chunks (CIDv0, CIDv1, identity, empty blocks)', async () => {
    const { bytes, expected } = await blocksOf()
    expect(expected).toHaveLength(9)
    for (const size of [1, 2, 3, 5, 7, 13, 36, 37, 38, 64, 1000, 4096, bytes.length]) {
      expect(await read(bytes, () => size), `chunks of ${size}`).toEqual(expected)
    }
    let seed = 7
    const random = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return 1 + (seed % 90) }
    for (let n = 0; n < 30; n++) expect(await read(bytes, random)).toEqual(expected)
  })

  it('refuses what @ipld/car refuses: a CID of version 2, a CIDv0 prefix with another digest length, a section cut short', async () => {
    const block = new Uint8Array([9, 9, 9])
    const good = CID.createV1(raw.code, await sha256.digest(block))
    const v2 = Uint8Array.from(good.bytes)
    v2[0] = 2
    const v0Long = Buffer.concat([Buffer.from([0x12, 0x40]), Buffer.alloc(64, 1)])
    for (const [cid, message] of [[v2, /CID version/], [v0Long, /CID version/]] as const) {
      const bytes = car([{ cid, bytes: block }], good)
      await expect(CarReader.fromBytes(bytes)).rejects.toThrow(message)
      for (const size of [1, 4, 1000]) await expect(read(bytes, () => size), `chunks of ${size}`).rejects.toThrow(message)
    }
    const whole = car([{ cid: good.bytes, bytes: block }], good)
    for (const size of [1, 4, 1000]) await expect(read(whole.subarray(0, whole.length - 2), () => size)).rejects.toThrow(/Unexpected end of data/)
  })
})
