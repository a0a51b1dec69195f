/** The queue in the library: enqueue, claimNext and runWorker on one SQLite file shared by two Downloaders. */
import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MemoryBlocks, addFile, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { Downloader } from '../../src/engine/downloader.js'
import { runWorker, type WorkerEvent } from '../../src/engine/worker.js'
import { sha256, KiB } from '../helpers.js'

let dir: string
let gateway: TestGateway | undefined
const opened: Downloader[] = []
afterEach(async () => {
  for (const d of opened.splice(0)) await d.close()
  await gateway?.close()
  await rm(dir, { recursive: true, force: true })
})

async function open (): Promise<Downloader> {
  const dl = await Downloader.open({ routers: [], state: join(dir, 'state.db'), gateways: [gateway!.url], recover: false, concurrency: 3, initialBackoffMs: 1 })
  opened.push(dl)
  return dl
}

describe('the queue', () => {
  it('enqueue writes all or nothing: a second item with the same output refuses the whole list', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cidget-queue-'))
    gateway = await startTestGateway({ blocks: new MemoryBlocks() })
    const dl = await open()
    const cid = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
    await expect(dl.enqueue([{ target: cid, output: 'a' }, { target: cid, output: 'b' }, { target: cid, output: 'a' }], { dir }))
      .rejects.toMatchObject({ code: 'CIDGET_ERR_OUTPUT_IN_USE', message: expect.stringMatching(/^Item 3 .*item 1 writes to/) as unknown })
    await expect(dl.enqueue([{ target: cid, output: '../x' }], { dir })).rejects.toMatchObject({ code: 'CIDGET_ERR_OUTSIDE_DIR' })
    await expect(dl.enqueue([{ target: 'not a cid' }], { dir })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_TARGET' })
    await writeFile(join(dir, 'taken'), 'mine')
    await expect(dl.enqueue([{ target: cid, output: 'taken' }], { dir })).rejects.toMatchObject({ code: 'CIDGET_ERR_OUTPUT_EXISTS' })
    expect(await readFile(join(dir, 'taken'), 'utf8')).toBe('mine')
    expect(await dl.list()).toEqual([])
    const queued = await dl.enqueue([{ target: cid, output: 'a' }, { target: cid, output: 'sub/', priority: 2 }], { dir })
    expect(queued.map(r => [r.status, r.output, r.priority])).toEqual([['pending', join(dir, 'a'), 0], ['pending', join(dir, 'sub', cid), 2]])
    // a download of the state that has not finished writes to `a`: a second list naming it is refused whole
    await expect(dl.enqueue([{ target: cid, output: 'c' }, { target: cid, output: 'a' }], { dir }))
      .rejects.toMatchObject({ code: 'CIDGET_ERR_OUTPUT_IN_USE', message: expect.stringMatching(new RegExp(`^Item 2 .*Download ${queued[0]!.id} .*also writes to`)) as unknown })
    expect((await dl.list()).map(r => r.output)).toEqual([join(dir, 'a'), join(dir, 'sub', cid)])
    // once it is cancelled, the output is free again
    await dl.cancel(queued[0]!.id)
    expect((await dl.enqueue([{ target: cid, output: 'a' }], { dir })).map(r => r.status)).toEqual(['pending'])
  })

  it('two workers on one state drain 30 downloads, each once, and stop when told', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cidget-queue-'))
    const blocks = new MemoryBlocks()
    const files = []
    for (let i = 0; i < 30; i++) {
      const data = seededBytes(1 + i * 3 * KiB, 50 + i)
      files.push({ cid: (await addFile(blocks, data)).toString(), sha: sha256(data) })
    }
    gateway = await startTestGateway({ blocks })
    const producer = await open()
    await producer.enqueue(files.map((f, i) => ({ target: f.cid, output: `f${i}` })), { dir })
    const [a, b] = [await open(), await open()]
    const stop = new AbortController()
    const events: Array<WorkerEvent & { by: string }> = []
    let finished = 0
    let allFinished!: () => void
    const allDone = new Promise<void>((resolve) => { allFinished = resolve })
    const on = (by: string) => (e: WorkerEvent): void => {
      events.push({ ...e, by })
      if (e.type === 'finished' && ++finished === files.length) allFinished()
    }
    const running = Promise.all([
      runWorker(a, { signal: stop.signal, dir, pollMs: 20, onEvent: on('a') }),
      runWorker(b, { signal: stop.signal, dir, pollMs: 20, onEvent: on('b') })
    ])
    await allDone
    stop.abort()
    const summaries = await running
    expect(summaries.reduce((n, s) => n + s.claimed, 0)).toBe(files.length)
    expect(summaries.reduce((n, s) => n + (s.finished.success ?? 0), 0)).toBe(files.length)
    const claimed = events.filter(e => e.type === 'claimed').map(e => (e as { id: number }).id)
    expect(new Set(claimed).size).toBe(files.length)
    for (const [i, f] of files.entries()) expect(sha256(await readFile(join(dir, `f${i}`)))).toBe(f.sha)
    for (const r of await producer.list()) expect(r).toMatchObject({ status: 'success', leaseOwner: null })
  })
})
