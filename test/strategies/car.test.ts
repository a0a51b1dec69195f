/** CAR output: a verified CARv1 of the DAG, resumable. */
import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, readFile, rm, stat, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarReader } from '@ipld/car'
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { exporter } from 'ipfs-unixfs-exporter'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { MemoryBlocks, addFile, addDirectory, seededBytes, startTestGateway, loadCar, type TestGateway } from '../../src/testing/index.js'
import { Downloader } from '../../src/engine/downloader.js'
import { partialPath } from '../../src/sink/partial.js'
import { verifyBlock } from '../../src/gateways/block.js'
import { progressReaches, sha256, KiB, MiB } from '../helpers.js'

let cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

async function setup (blocks: MemoryBlocks): Promise<{ gw: TestGateway, dir: string, dl: Downloader }> {
  const gw = await startTestGateway({ blocks })
  const dir = await mkdtemp(join(tmpdir(), 'cidget-car-'))
  const dl = await Downloader.open({ routers: [], state: join(dir, 'state.db'), gateways: [gw.url], hedgeAfterMs: 0, syncIntervalBytes: 1 })
  cleanups.push(async () => { await dl.close(); await gw.close(); await rm(dir, { recursive: true, force: true }) })
  return { gw, dir, dl }
}

/** Every block reachable from root, depth-first, each once. */
function dfs (blocks: MemoryBlocks, root: CID, seen = new Set<string>(), out: string[] = []): string[] {
  if (seen.has(root.toString())) return out
  seen.add(root.toString())
  out.push(root.toString())
  if (root.code === dagPb.code) for (const l of dagPb.decode(blocks.get(root)).Links) dfs(blocks, l.Hash, seen, out)
  return out
}

async function readCar (path: string): Promise<{ roots: string[], cids: string[], reader: CarReader }> {
  const reader = await CarReader.fromBytes(await readFile(path))
  const cids: string[] = []
  for await (const { cid, bytes } of reader.blocks()) {
    await verifyBlock(cid, bytes)
    cids.push(cid.toString())
  }
  return { roots: (await reader.getRoots()).map(r => r.toString()), cids, reader }
}

describe('CAR output', () => {
  it('writes every block of a file, verified, depth-first, once', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(3 * MiB + 5, 21)
    const root = await addFile(blocks, data, { rawLeaves: false })
    const s = await setup(blocks)
    const done = await (await s.dl.add(root.toString(), { mode: 'car', output: join(s.dir, 'out.car') })).done
    expect(done.status, done.error ?? '').toBe('success')
    const car = await readCar(done.output)
    expect(car.roots).toEqual([root.toString()])
    expect(car.cids).toEqual(dfs(blocks, root))
    expect(done.hash).toBe(sha256(await readFile(done.output)))
    // the CAR holds the file: load it and read the file back
    const copy = new MemoryBlocks()
    await loadCar(copy, done.output)
    const entry = await exporter(root, copy.asBlockstore())
    if (entry.type !== 'file') throw new Error('not a file')
    const parts: Uint8Array[] = []
    for await (const chunk of entry.content()) parts.push(chunk)
    expect(sha256(Buffer.concat(parts))).toBe(sha256(data))
  })

  it('writes a directory with repeated content once per block', async () => {
    const blocks = new MemoryBlocks()
    const same = seededBytes(10 * KiB, 1)
    const root = await addDirectory(blocks, [{ path: 'a', content: same }, { path: 'b', content: same }, { path: 'c/d', content: seededBytes(300 * KiB, 2) }])
    const s = await setup(blocks)
    const done = await (await s.dl.add(root.toString(), { mode: 'car', output: join(s.dir, 'out.car') })).done
    expect(done.status, done.error ?? '').toBe('success')
    const car = await readCar(done.output)
    expect(car.cids).toEqual(dfs(blocks, root))
    expect(new Set(car.cids).size).toBe(car.cids.length)
  })

  it('refuses a DAG of more blocks than maxEntries, and writes one of exactly that many', async () => {
    const blocks = new MemoryBlocks()
    // a root and 8 raw leaves of 1 KiB: 9 blocks
    const root = await addFile(blocks, seededBytes(8 * KiB, 5), { chunker: fixedSize({ chunkSize: KiB }) })
    expect(dfs(blocks, root)).toHaveLength(9)
    const gw = await startTestGateway({ blocks })
    const dir = await mkdtemp(join(tmpdir(), 'cidget-car-'))
    const opened: Downloader[] = []
    cleanups.push(async () => { for (const d of opened) await d.close(); await gw.close(); await rm(dir, { recursive: true, force: true }) })
    const open = async (maxEntries: number): Promise<Downloader> => {
      const dl = await Downloader.open({ routers: [], state: join(dir, 'state.db'), gateways: [gw.url], hedgeAfterMs: 0, limits: { maxEntries } })
      opened.push(dl)
      return dl
    }
    const refused = await (await (await open(8)).add(root.toString(), { mode: 'car', output: join(dir, 'refused.car') })).done
    expect(refused).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_DAG_LIMIT', error: expect.stringMatching(/more than 8 blocks/) })
    await expect(stat(join(dir, 'refused.car'))).rejects.toMatchObject({ code: 'ENOENT' })
    const done = await (await (await open(9)).add(root.toString(), { mode: 'car', output: join(dir, 'ok.car') })).done
    expect(done.status, done.error ?? '').toBe('success')
    expect((await readCar(done.output)).cids).toEqual(dfs(blocks, root))
  })

  it('writes a tree from a few requests: its whole DAG comes as one stream', async () => {
    const blocks = new MemoryBlocks()
    const files = Array.from({ length: 600 }, (_, i) => ({ path: `d${i % 7}/f${i}`, content: seededBytes(1 + (i * 37) % 3000, 100 + i) }))
    const root = await addDirectory(blocks, files)
    const s = await setup(blocks)
    const done = await (await s.dl.add(root.toString(), { mode: 'car', output: join(s.dir, 'tree.car') })).done
    expect(done.status, done.error ?? '').toBe('success')
    const car = await readCar(done.output)
    expect(car.cids).toEqual(dfs(blocks, root))
    // the root, then one CAR of the whole DAG (and the first request a new download makes): not one per file
    expect(s.gw.requests.length).toBeLessThanOrEqual(4)
    expect(s.gw.requests.filter(r => r.url.includes('dag-scope=all'))).toHaveLength(1)
  })

  it('resumes after a pause without fetching a block twice', async () => {
    const blocks = new MemoryBlocks()
    const root = await addFile(blocks, seededBytes(2 * MiB, 4))
    const leaves = dagPb.decode(blocks.get(root)).Links.map(l => l.Hash)
    const s = await setup(blocks)
    s.gw.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leaves[4]!.toString()}` } })
    const dl = await Downloader.open({ routers: [], state: join(s.dir, 'state2.db'), gateways: [s.gw.url], hedgeAfterMs: 0, blockConcurrency: 1, syncIntervalBytes: 1 })
    cleanups.push(async () => { await dl.close() })
    const job = await dl.add(root.toString(), { mode: 'car', output: join(s.dir, 'r.car') })
    await progressReaches(dl, job.id, 4 * 256 * KiB)
    const paused = await dl.pause(job.id)
    expect(paused.status).toBe('paused')
    const done = await (await dl.resume(job.id)).done
    expect(done.status, done.error ?? '').toBe('success')
    const car = await readCar(done.output)
    expect(car.cids).toEqual(dfs(blocks, root))
    const completed = s.gw.requests.filter(q => q.status === 200 && !q.aborted).map(q => q.path)
    expect(new Set(completed).size).toBe(completed.length)
    expect(completed).toHaveLength(9)
  })

  for (const loss of ['deleted', 'cut short'] as const) {
    it(`starts the CAR again when its partial file is ${loss} after a pause: no hole in it`, async () => {
      const blocks = new MemoryBlocks()
      const root = await addFile(blocks, seededBytes(2 * MiB, 5))
      const leaves = dagPb.decode(blocks.get(root)).Links.map(l => l.Hash)
      const s = await setup(blocks)
      s.gw.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leaves[4]!.toString()}` } })
      // the stalls hold a second: long enough to read the record while the resumed run waits (its
      // success clears the note), and progress is told at once
      const dl = await Downloader.open({ routers: [], state: join(s.dir, 'state2.db'), gateways: [s.gw.url], hedgeAfterMs: 0, blockConcurrency: 1, syncIntervalBytes: 1, timeoutMs: 1_000, initialBackoffMs: 10, progressIntervalMs: 0 })
      cleanups.push(async () => { await dl.close() })
      const output = join(s.dir, 'r.car')
      const job = await dl.add(root.toString(), { mode: 'car', output })
      await progressReaches(dl, job.id, 4 * 256 * KiB)
      expect((await dl.pause(job.id)).status).toBe('paused')
      if (loss === 'deleted') await rm(partialPath(output))
      else await truncate(partialPath(output), 100)
      // the 6th leaf stalls once after the restart, to look at the record meanwhile
      s.gw.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leaves[5]!.toString()}` } })
      const resumed = await dl.resume(job.id)
      await progressReaches(dl, job.id, 5 * 256 * KiB)
      expect((await dl.get(job.id))!.error).toMatch(/^Restarted from the beginning: the partial CAR .*r\.car\.cidget-partial does not hold the \d+ bytes an earlier run recorded$/)
      const done = await resumed.done
      expect(done.status, done.error ?? '').toBe('success')
      // every block is there, verified, in order: before, the resume appended after a hole of zeros
      const car = await readCar(done.output)
      expect(car.cids).toEqual(dfs(blocks, root))
      expect(done.hash).toBe(sha256(await readFile(done.output)))
    })
  }
})
