/**
 * Issue 14, "A crash costs only what was in flight": a run killed after it
 * wrote blocks and before it recorded them leaves them in the partial file;
 * the next run checks them there instead of fetching them again. Here the
 * bytes such a run would have left are written into the partial by hand (a
 * real SIGKILL is in test/e2e/kill-anywhere.test.ts).
 */
import { describe, it, expect, afterEach } from 'vitest'
import { open, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import { CarIndexer } from '@ipld/car'
import { world, progressReaches, fileSha256, sha256, MiB, KiB, type World } from '../helpers.js'
import { partialPath } from '../../src/sink/partial.js'
import { addDirectory, seededBytes } from '../../src/testing/index.js'

let w: World | undefined
afterEach(async () => {
  await w?.close()
  w = undefined
})

const LEAF = 256 * KiB

/** Writes `data` at `at` of the file at `path`, as a killed run's page cache would have left it. */
async function writeAt (path: string, at: number, data: Uint8Array): Promise<void> {
  const fh = await open(path, 'r+')
  try {
    await fh.write(data, 0, data.byteLength, at)
  } finally {
    await fh.close()
  }
}

describe('verified mode: leaves on disk beyond the recorded ones', () => {
  it('are hashed against their CIDs on resume; those that match are kept, a torn one is fetched again', async () => {
    w = await world({ size: 4 * MiB })
    const leaves = dagPb.decode(w.blocks.get(CID.parse(w.cid))).Links.map(l => l.Hash.toString())
    expect(leaves).toHaveLength(16)
    // leaf 4 stalls: the first run records leaves 0-3 and is paused there
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leaves[4]!}` } })
    const dl = await w.open({ runBlocks: 0, blockConcurrency: 1, syncIntervalBytes: 1, timeoutMs: 60_000 })
    const job = await dl.add(w.cid, { output: join(w.dir, 'o') })
    await progressReaches(dl, job.id, 4 * LEAF)
    const paused = await dl.pause(job.id)
    expect(paused.currentSize).toBe(4 * LEAF)
    // what a killed run wrote after its last record: leaves 4-9, leaf 7 torn
    const partial = partialPath(join(w.dir, 'o'))
    await writeAt(partial, 4 * LEAF, w.data.subarray(4 * LEAF, 10 * LEAF))
    await writeAt(partial, 7 * LEAF + 100, Uint8Array.of(w.data[7 * LEAF + 100]! ^ 0xff))
    const mark = w.gateways[0]!.requests.length
    const done = await (await dl.resume(job.id)).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(await fileSha256(done.output)).toBe(w.sha)
    const fetched = w.gateways[0]!.requests.slice(mark).map(r => leaves.indexOf(r.path.slice('/ipfs/'.length))).filter(i => i >= 0)
    expect(fetched.sort((a, b) => a - b)).toEqual([7, 10, 11, 12, 13, 14, 15])
  })
})

describe('verified directories: files on disk beyond the recorded ones', () => {
  it('are hashed against their CIDs on resume; those that match are kept, a torn one is fetched again', async () => {
    w = await world({ size: 1 })
    const files = Array.from({ length: 8 }, (_, i) => seededBytes(200 * KiB, 20 + i))
    const root = await addDirectory(w.blocks, files.map((content, i) => ({ path: `f${i}.bin`, content })))
    const links = dagPb.decode(w.blocks.get(root)).Links
    expect(links.map(l => l.Hash.code)).toEqual(files.map(() => 0x55)) // one raw block each
    const cidOf = (i: number): string => links.find(l => l.Name === `f${i}.bin`)!.Hash.toString()
    // f2 stalls: the first run records f0 and f1 and is paused there
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${cidOf(2)}` } })
    const dl = await w.open({ runBlocks: 0, blockConcurrency: 1, syncIntervalBytes: 1, timeoutMs: 60_000 })
    const job = await dl.add(root.toString(), { output: join(w.dir, 'tree') })
    await progressReaches(dl, job.id, 2 * 200 * KiB)
    expect((await dl.pause(job.id)).currentSize).toBe(2 * 200 * KiB)
    // what a killed run wrote after its last record: f2, f3 and f4, f3 torn
    const staging = partialPath(join(w.dir, 'tree'))
    for (const i of [2, 3, 4]) await writeFile(join(staging, `f${i}.bin`), files[i]!)
    await writeAt(join(staging, 'f3.bin'), 100, Uint8Array.of(files[3]![100]! ^ 0xff))
    const mark = w.gateways[0]!.requests.length
    const done = await (await dl.resume(job.id)).done
    expect(done.status, done.error ?? '').toBe('success')
    for (let i = 0; i < files.length; i++) expect(await fileSha256(join(w.dir, 'tree', `f${i}.bin`))).toBe(sha256(files[i]!))
    const fetched = w.gateways[0]!.requests.slice(mark).map(r => r.path.slice('/ipfs/'.length))
    expect(files.map((_, i) => i).filter(i => fetched.includes(cidOf(i)))).toEqual([3, 5, 6, 7])
  })
})

describe('path mode: bytes on disk beyond the recorded ones', () => {
  it('are kept when the file is checked against the CID: the next request starts after them, and a bad range is repaired alone', async () => {
    w = await world({ size: 4 * MiB })
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: MiB }, times: 1, match: { format: 'path' } })
    const dl = await w.open({ timeoutMs: 60_000 })
    const repaired: number[] = []
    dl.on('cidget:download:repaired', e => repaired.push(e.bytes))
    const job = await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })
    await progressReaches(dl, job.id, MiB)
    const paused = await dl.pause(job.id)
    expect(paused.currentSize).toBe(MiB)
    // what a killed run wrote after its last record: 2 MiB more, one byte of it wrong
    const partial = partialPath(join(w.dir, 'o'))
    await writeAt(partial, MiB, w.data.subarray(MiB, 3 * MiB))
    await writeAt(partial, 2 * MiB + 5, Uint8Array.of(w.data[2 * MiB + 5]! ^ 0xff))
    const mark = w.gateways[0]!.requests.length
    const done = await (await dl.resume(job.id)).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(await fileSha256(done.output)).toBe(w.sha)
    const ranges = w.gateways[0]!.requests.slice(mark).filter(r => r.format === 'path').map(r => r.range)
    expect(ranges).toEqual([`bytes=${3 * MiB}-`])
    expect(repaired).toEqual([LEAF])
  })
})

describe('CAR output: a resumed CAR', () => {
  /**
   * A CAR of the 4 MiB file made by an uninterrupted run (the reference, with
   * where each of its sections ends), and a second download of it paused
   * after the root and leaves 0-3 (its leaf 4 stalls).
   */
  async function pausedCar (): Promise<{ reference: Uint8Array, ends: number[], leaves: string[], partial: string, resume: () => Promise<string> }> {
    w = await world({ size: 4 * MiB })
    const leaves = dagPb.decode(w.blocks.get(CID.parse(w.cid))).Links.map(l => l.Hash.toString())
    const dl = await w.open({ blockConcurrency: 1, syncIntervalBytes: 1, timeoutMs: 60_000 })
    const ref = await (await dl.add(w.cid, { mode: 'car', output: join(w.dir, 'ref.car') })).done
    expect(ref.status, ref.error ?? '').toBe('success')
    const reference = await readFile(ref.output)
    const ends: number[] = []
    for await (const b of (await CarIndexer.fromBytes(reference))) ends.push(b.blockOffset + b.blockLength)
    expect(ends).toHaveLength(17)
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leaves[4]!}` } })
    const job = await dl.add(w.cid, { mode: 'car', output: join(w.dir, 'o.car') })
    await progressReaches(dl, job.id, ends[4]!)
    const paused = await dl.pause(job.id)
    expect(paused.currentSize).toBe(ends[4])
    return {
      reference,
      ends,
      leaves,
      partial: partialPath(join(w.dir, 'o.car')),
      resume: async () => {
        const done = await (await dl.resume(job.id)).done
        expect(done.status, done.error ?? '').toBe('success')
        return done.output
      }
    }
  }
  /** The leaves the gateway was asked for since request `mark`, by number. */
  const fetchedSince = (mark: number, leaves: string[]): number[] =>
    w!.gateways[0]!.requests.slice(mark).map(r => leaves.indexOf(r.path.slice('/ipfs/'.length))).filter(i => i >= 0).sort((a, b) => a - b)

  it('is truncated to its last durable block: bytes after it that are not whole blocks go', async () => {
    const c = await pausedCar()
    // a killed run's torn tail: bytes that are not CAR sections, longer than the rest of the CAR
    await writeAt(c.partial, c.ends[4]!, seededBytes(8 * MiB, 9))
    const mark = w!.gateways[0]!.requests.length
    const output = await c.resume()
    expect(await fileSha256(output)).toBe(sha256(c.reference))
    expect(fetchedSince(mark, c.leaves)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
  })

  it('keeps the whole, valid blocks a killed run appended after its last record, and cuts a torn one', async () => {
    const c = await pausedCar()
    // what a killed run appended: the sections of leaves 4-7 whole, and half of leaf 8's
    const end = c.ends[8]! + Math.floor((c.ends[9]! - c.ends[8]!) / 2)
    await writeAt(c.partial, c.ends[4]!, c.reference.subarray(c.ends[4]!, end))
    const mark = w!.gateways[0]!.requests.length
    const output = await c.resume()
    expect(await fileSha256(output)).toBe(sha256(c.reference))
    expect(fetchedSince(mark, c.leaves)).toEqual([8, 9, 10, 11, 12, 13, 14, 15])
  })
})
