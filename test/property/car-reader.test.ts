/**
 * The CAR stream reader (`carBlocks` over a `ChunkReader`, src/gateways/car.ts)
 * against the reader of `@ipld/car` itself: the same CAR bytes, cut into
 * chunks at random places (one-byte and empty chunks included) and possibly
 * cut off early, must give the same blocks, byte for byte, and fail where the
 * library's reader fails. The library's header and section decoding does the
 * parsing in both; what differs is how bytes are gathered from the chunks
 * (block bytes as pieces, views of the chunks).
 */
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { CarWriter } from '@ipld/car/writer'
import { CarBlockIterator } from '@ipld/car/iterator'
import { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { ChunkReader, carBlocks } from '../../src/gateways/car.js'
import { joinBlock } from '../../src/gateways/block.js'
import { params } from './fc.js'

interface Block { cid: CID, bytes: Uint8Array }

async function carOf (blocks: Uint8Array[]): Promise<{ car: Uint8Array, blocks: Block[] }> {
  const made: Block[] = []
  for (const bytes of blocks) made.push({ cid: CID.createV1(rawCodec.code, await sha256.digest(bytes)), bytes })
  const { writer, out } = CarWriter.create(made[0] === undefined ? [] : [made[0].cid])
  const parts: Uint8Array[] = []
  const collected = (async () => { for await (const part of out) parts.push(part) })()
  for (const block of made) await writer.put(block)
  await writer.close()
  await collected
  return { car: Buffer.concat(parts), blocks: made }
}

/** `bytes` cut at `cuts` (positions, any order, repeats make empty chunks), as a stream. */
async function * chunked (bytes: Uint8Array, cuts: number[]): AsyncGenerator<Uint8Array> {
  let at = 0
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    yield bytes.subarray(at, Math.max(at, cut))
    at = Math.max(at, cut)
  }
  yield bytes.subarray(at)
}

/** What a reader made of a stream: the blocks it yielded, then whether it threw. */
async function outcome (blocks: AsyncIterable<Block>): Promise<{ blocks: Array<{ cid: string, bytes: string }>, failed: boolean }> {
  const out: Array<{ cid: string, bytes: string }> = []
  try {
    for await (const b of blocks) out.push({ cid: b.cid.toString(), bytes: Buffer.from(b.bytes).toString('hex') })
    return { blocks: out, failed: false }
  } catch {
    return { blocks: out, failed: true }
  }
}

async function * ours (stream: AsyncIterable<Uint8Array>): AsyncGenerator<Block> {
  for await (const { cid, bytes } of carBlocks(new ChunkReader(stream))) yield { cid, bytes: joinBlock(bytes) }
}

async function * theirs (stream: AsyncIterable<Uint8Array>): AsyncGenerator<Block> {
  yield * await CarBlockIterator.fromIterable(stream)
}

const blockBytes = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 64 }),
  fc.uint8Array({ minLength: 1, maxLength: 3000 }),
  fc.integer({ min: 1, max: 70_000 }).map(n => Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff))
)

describe('CAR stream reader', () => {
  it('gives the blocks the library reader gives, wherever the chunks are cut and the stream ends', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(blockBytes, { minLength: 1, maxLength: 8 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }),
      fc.option(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true })),
      async (contents, cutsAt, endAt) => {
        const { car, blocks } = await carOf(contents)
        const bytes = endAt === null ? car : car.subarray(0, Math.floor(endAt * car.length))
        const cuts = cutsAt.map(c => Math.floor(c * bytes.length))
        const mine = await outcome(ours(chunked(bytes, cuts)))
        expect(mine).toEqual(await outcome(theirs(chunked(bytes, cuts))))
        if (endAt === null) {
          expect(mine.failed).toBe(false)
          expect(mine.blocks.map(b => b.cid)).toEqual(blocks.map(b => b.cid.toString()))
        }
        for (const b of mine.blocks) {
          const block = blocks.find(x => x.cid.toString() === b.cid)
          expect(b.bytes).toBe(Buffer.from(block?.bytes ?? []).toString('hex'))
        }
      }
    ), params(0.5))
  })

  it('seeks past what has arrived and goes on from there', async () => {
    const bytes = Uint8Array.from({ length: 100 }, (_, i) => i)
    const reader = new ChunkReader(chunked(bytes, [3, 10, 10, 40, 41]))
    expect([...await reader.upTo(2)]).toEqual([0, 1])
    reader.seek(50) // only 3 bytes have arrived
    expect(reader.pos).toBe(50)
    expect([...await reader.exactly(5, true)]).toEqual([50, 51, 52, 53, 54])
    expect([...await reader.upTo(100)]).toEqual(Array.from({ length: 45 }, (_, i) => 55 + i))
    await expect(reader.exactly(46)).rejects.toThrow(/Unexpected end of data/)
  })

  it('hands a block out as views of the chunks it arrived in, and copies one that is spread over very many', async () => {
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff)
    const chunks = [bytes.subarray(0, 300), bytes.subarray(300, 700), bytes.subarray(700)]
    async function * source (): AsyncGenerator<Uint8Array> { yield * chunks }
    const reader = new ChunkReader(source())
    await reader.exactly(100, true)
    const pieces = await reader.pieces(800)
    expect(pieces.map(p => p.length)).toEqual([200, 400, 200])
    expect(pieces.every(p => p.buffer === bytes.buffer)).toBe(true) // no copy
    expect(Buffer.concat(pieces)).toEqual(Buffer.from(bytes.subarray(100, 900)))
    expect(reader.pos).toBe(900)
    await expect(reader.pieces(101)).rejects.toThrow(/Unexpected end of data/)

    // 100 one-byte chunks: one array of its own
    const trickle = new ChunkReader((async function * () { for (let i = 0; i < 100; i++) yield Uint8Array.of(i) })())
    const one = await trickle.pieces(100)
    expect(one).toHaveLength(1)
    expect([...(one[0] as Uint8Array)]).toEqual(Array.from({ length: 100 }, (_, i) => i))
  })

  it('copies a block much smaller than its chunk, and a CID\'s bytes, so that neither keeps the chunk alive', async () => {
    const { car, blocks } = await carOf([new Uint8Array(300).fill(1), new Uint8Array(5000).fill(2)])
    // one chunk of 64 KiB, as a socket read brings it, holding the whole CAR
    const chunk = new Uint8Array(64 * 1024)
    chunk.set(car)
    const read = []
    for await (const b of carBlocks(new ChunkReader((async function * () { yield chunk.subarray(0, car.length) })()))) read.push(b)
    expect(read.map(b => b.cid.toString())).toEqual(blocks.map(b => b.cid.toString()))
    for (const { cid, bytes } of read) {
      const pieces = bytes as Uint8Array[]
      expect(pieces).toHaveLength(1)
      expect(pieces[0]!.buffer).not.toBe(chunk.buffer)
      expect(pieces[0]!.buffer.byteLength).toBe(pieces[0]!.length)
      expect(cid.multihash.bytes.buffer).not.toBe(chunk.buffer)
    }
    expect(Buffer.concat(read[0]!.bytes as Uint8Array[])).toEqual(Buffer.alloc(300, 1))
  })

  it('reads the data section of a CARv2 and stops where it ends (the index after it is not blocks)', async () => {
    const { car: v1, blocks } = await carOf([Uint8Array.of(1, 2, 3), new Uint8Array(5000).fill(7)])
    const pragma = Uint8Array.from([0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02])
    const header = new Uint8Array(40)
    const view = new DataView(header.buffer)
    const dataOffset = pragma.length + header.length
    view.setBigUint64(16, BigInt(dataOffset), true)
    view.setBigUint64(24, BigInt(v1.length), true)
    view.setBigUint64(32, BigInt(dataOffset + v1.length), true)
    const index = new Uint8Array(64).fill(0xff) // not a CAR section: reading it as one would fail
    const v2 = Buffer.concat([pragma, header, v1, index])
    const got = await outcome(ours(chunked(v2, [5, 60, 200])))
    expect(got.failed).toBe(false)
    expect(got.blocks.map(b => b.cid)).toEqual(blocks.map(b => b.cid.toString()))
    // and a v2 whose data section is cut short fails
    expect((await outcome(ours(chunked(v2.subarray(0, dataOffset + v1.length - 10), [])))).failed).toBe(true)
  })
})
