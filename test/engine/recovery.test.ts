/** Engine behaviour beyond the seed's scenarios: Retry-After, bad answers, take-over, control requests. */
import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { readFile, rm } from 'node:fs/promises'
import { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import { world, progressReaches, fileSha256, sha256, MiB, KiB, type World, pathRequests } from '../helpers.js'
import { Downloader, type DownloadJob } from '../../src/engine/downloader.js'
import { addDirectory, seededBytes } from '../../src/testing/index.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import { Database } from '../../src/store/driver.js'
import type { RetryEvent } from '../../src/core/events.js'
import { isCidgetError } from '../../src/core/errors.js'

let w: World
afterEach(async () => { await w?.close() })

function retries (dl: Downloader): RetryEvent[] {
  const out: RetryEvent[] = []
  dl.on('cidget:download:retry', e => out.push(e))
  return out
}

describe('recovery', () => {
  it('honours Retry-After on the only gateway (seconds), then succeeds', async () => {
    w = await world({ size: MiB })
    w.gateways[0]!.addFault({ fault: { type: 'status', status: 429, retryAfter: 7 }, times: 1 })
    const dl = await w.open()
    const done = await (await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })).done
    expect(done.status).toBe('success')
    expect(w.time.sleeps).toEqual([7000])
  })

  it('honours Retry-After given as an HTTP-date, capped at maxRetryAfterMs', async () => {
    w = await world({ size: MiB })
    const when = new Date(w.time.now() + 3_600_000).toUTCString()
    w.gateways[0]!.addFault({ fault: { type: 'status', status: 503, retryAfter: when }, times: 1 })
    const dl = await w.open({ maxRetryAfterMs: 5_000 })
    const done = await (await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })).done
    expect(done.status).toBe('success')
    expect(w.time.sleeps).toEqual([5000])
  })

  it('a Content-Range that does not match the request is discarded and another gateway asked', async () => {
    w = await world({ size: 2 * MiB, gateways: 2 })
    w.gateways[0]!.setFaults([
      { fault: { type: 'reset', afterBytes: 1536 * KiB }, times: 1 },
      { fault: { type: 'bad-content-range' }, times: 1 }
    ])
    w.gateways[1]!.addFault({ fault: { type: 'reset', afterBytes: 0 }, times: 1 })
    const dl = await w.open()
    const events = retries(dl)
    const done = await (await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })).done
    expect(done.status).toBe('success')
    expect(events.map(e => e.code)).toContain('CIDGET_ERR_RANGE_MISMATCH')
    expect(await fileSha256(done.output)).toBe(w.sha)
  })

  it('content no gateway has fails with CIDGET_ERR_NOT_FOUND after asking each once', async () => {
    w = await world({ size: 1000, gateways: 2 })
    const dl = await w.open()
    const missing = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
    const done = await (await dl.add(missing, { mode: 'path', output: join(w.dir, 'o') })).done
    expect(done.status).toBe('failed')
    expect(done.errorCode).toBe('CIDGET_ERR_NOT_FOUND')
    expect(done.error).toMatch(/No gateway has/)
    expect(w.gateways.map(g => pathRequests(g).length)).toEqual([1, 1])
  })

  it('the timeout is an idle timeout: a slow, steady download longer than it succeeds', async () => {
    // 256 KiB at 128 KiB/s in 16 KiB writes: a write every 125 ms for 2 s. The timeout (1 s) is
    // shorter than the download and eight times the gap between writes, so only a stall of the
    // machine longer than 875 ms could end a read early; the gateway cannot be faster than its rate.
    w = await world({ size: 256 * KiB, maxBytesPerSecond: 128 * KiB, chunkSize: 16 * KiB })
    // (no check against the CID afterwards: the file is one raw block, fetched again at the same rate)
    const dl = await w.open({ timeoutMs: 1_000, checkPath: false })
    const events = retries(dl)
    const started = performance.now()
    const done = await (await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })).done
    expect(performance.now() - started).toBeGreaterThan(1_000)
    expect(done.status).toBe('success')
    expect(events).toEqual([])
  })

  it('a gateway that sends no Content-Length still completes, and its size is learned', async () => {
    w = await world({ size: MiB })
    w.gateways[0]!.addFault({ fault: { type: 'no-length' } })
    const dl = await w.open()
    const done = await (await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'o'), sha256: w.sha })).done
    expect(done).toMatchObject({ status: 'success', size: MiB, hash: w.sha })
  })
})

describe('records and outputs', () => {
  it('adding a finished download whose file was deleted fetches it again under the same id', async () => {
    w = await world({ size: MiB })
    const dl = await w.open()
    const first = await (await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })).done
    await rm(first.output)
    const again = await (await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })).done
    expect(again.id).toBe(first.id)
    expect(again.status).toBe('success')
    expect(await fileSha256(again.output)).toBe(w.sha)
  })

  it('an output used by an unfinished download of another target is refused', async () => {
    w = await world({ size: MiB })
    const dl = await w.open()
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 1000 }, times: 1 })
    const job = await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })
    await progressReaches(dl, job.id, 1000)
    await dl.pause(job.id)
    await expect(dl.add('bafkqaaa', { mode: 'path', output: join(w.dir, 'o') })).rejects.toMatchObject({ code: 'CIDGET_ERR_OUTPUT_IN_USE' })
  })

  it('refuses unknown and invalid Downloader options at construction', async () => {
    w = await world({ size: 1 })
    await expect(w.open({ timeoutMS: 5 } as never)).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION', message: /timeoutMS/ })
    await expect(w.open({ concurrency: 0 })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION' })
    await expect(w.open({ resumeThreshold: 2 })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION' })
    await expect(w.open({ limits: { maxEntries: 0 } })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION', message: /limits\.maxEntries must be a positive integer/ })
    await expect(w.open({ limits: { maxDepth: 2.5 } })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION', message: /limits\.maxDepth/ })
    await expect(w.open({ limits: { maxEntry: 5 } as never })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION', message: /Unknown limit "maxEntry"/ })
  })
})

describe('leases across owners', () => {
  /**
   * Process A works on a 2 MiB download block by block and never renews its lease here; its 5th
   * leaf stalls until A's `timeoutMs`. Once four leaves are durable, process B comes two minutes
   * later by its clock: A's lease has run out, so B recovers the download and finishes it.
   */
  async function takenOver (timeoutMs: number): Promise<{ a: Downloader, b: Downloader, job: DownloadJob }> {
    w = await world({ size: 2 * MiB })
    const leaves = dagPb.decode(w.blocks.get(CID.parse(w.cid))).Links.map(l => l.Hash.toString())
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leaves[4]!}` } })
    const a = await w.open({ owner: 'host-a:1:aaaa', runBlocks: 0, blockConcurrency: 1, syncIntervalBytes: 1, timeoutMs, leaseMs: 60_000, heartbeatMs: 3_600_000 })
    const job = await a.add(w.cid, { output: join(w.dir, 'o') })
    await progressReaches(a, job.id, 4 * 256 * KiB)
    const b = await w.open({ owner: 'host-b:2:bbbb', now: () => w.time.now() + 120_000 })
    const done = await (await b.resume(job.id)).done
    expect(done.status, done.error ?? '').toBe('success')
    return { a, b, job }
  }

  it('a run that lost its lease records no more progress: the process that took over keeps the download', async () => {
    const { job } = await takenOver(1_000)
    // A gets its stalled leaf only now, writes it and tries to record it: refused, it stops there
    await job.done
    const store = SqliteStore.open(w.state)
    try {
      expect(await store.getDownload(job.id)).toMatchObject({ status: 'success', currentSize: 2 * MiB, hash: w.sha, leaseOwner: null })
      expect(await store.getProgress(job.id)).toBeUndefined()
    } finally {
      await store.close()
    }
    expect(await fileSha256(join(w.dir, 'o'))).toBe(w.sha)
  })

  it('a cancel of a run that lost its lease writes nothing: the download the other process finished stays finished', async () => {
    const { a, b, job } = await takenOver(60_000)
    // A, still waiting for its stalled leaf, is cancelled: before, that marked B's download cancelled
    await a.cancel(job.id)
    expect(await b.get(job.id)).toMatchObject({ status: 'success', currentSize: 2 * MiB, hash: w.sha, leaseOwner: null })
    expect(await fileSha256(join(w.dir, 'o'))).toBe(w.sha)
  })

  it('crash recovery on open: an in_progress download of a dead owner becomes paused (INTERRUPTED) and resumes', async () => {
    w = await world({ size: MiB })
    const store = SqliteStore.open(w.state)
    const rec = await store.createDownload({ cid: w.cid, path: '', target: w.cid, output: join(w.dir, 'o'), mode: 'path', gateways: [w.gateways[0]!.url] })
    // an owner on this host whose process is gone
    expect(await store.claimLease(rec.id, 'other-host:1:dead', 60_000)).toBe(true)
    await store.updateDownload(rec.id, { status: 'in_progress' })
    await store.close()
    // a live remote owner's lease is respected until it expires
    const dl = await w.open({ now: () => Date.now() })
    expect((await dl.get(rec.id))!.status).toBe('in_progress')
    await expect(dl.resume(rec.id)).rejects.toMatchObject({ code: 'CIDGET_ERR_LEASE_HELD' })
    await dl.close()
    // …and taken over once it has
    const later = await w.open({ now: () => Date.now() + 120_000 })
    const recovered = await later.get(rec.id)
    expect(recovered).toMatchObject({ status: 'paused', errorCode: 'CIDGET_ERR_INTERRUPTED', leaseOwner: null })
    const done = await (await later.resume(rec.id)).done
    expect(done.status).toBe('success')
  })

  it('verified progress whose partial data is gone (another machine, or deleted) restarts from the beginning and says so', async () => {
    w = await world({ size: 2 * MiB })
    // block by block; the 5th leaf stalls, so four are durable when the download is paused
    const leaves = dagPb.decode(w.blocks.get(CID.parse(w.cid))).Links.map(l => l.Hash.toString())
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leaves[4]!}` } })
    const dl = await w.open({ runBlocks: 0, blockConcurrency: 1, timeoutMs: 200 })
    const job = await dl.add(w.cid, { output: join(w.dir, 'o') })
    await progressReaches(dl, job.id, 4 * 256 * KiB)
    await dl.pause(job.id)
    expect((await job.done).status).toBe('paused')
    await rm(join(w.dir, 'o.cidget-partial'))
    // the 6th leaf stalls once after the restart, to look at the record meanwhile
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leaves[5]!}` } })
    const resumed = await dl.resume(job.id)
    await progressReaches(dl, job.id, 5 * 256 * KiB)
    expect((await dl.get(job.id))!.error).toMatch(/^Restarted from the beginning: the partial data .*o\.cidget-partial recorded by an earlier run is not on this machine$/)
    const done = await resumed.done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(w.sha)
    // every leaf crossed the wire again after the resume
    const fetched = w.gateways[0]!.requests.filter(r => r.status === 200 && !r.aborted).map(r => r.path.slice(6))
    for (const leaf of leaves.slice(0, 4)) expect(fetched.filter(p => p === leaf)).toHaveLength(2)
  })

  it('a directory renamed into place by a run that stopped before recording success is taken as it is, not fetched again', async () => {
    w = await world({ size: 1 })
    const root = await addDirectory(w.blocks, [
      { path: 'a.bin', content: seededBytes(600 * KiB, 41) },
      { path: 'sub/b.txt', content: new TextEncoder().encode('b') }
    ])
    // the run stops right after the rename: the success record (which forgets the progress) fails
    const real = await SqliteStore.open(w.state)
    let armed = true
    const store = new Proxy(real, {
      get (target, key) {
        if (key === 'markDownloadSuccess' && armed) {
          armed = false
          return async () => { throw new Error('the process stopped here') }
        }
        const v = Reflect.get(target, key, target) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      }
    })
    const dl = await w.open({ store })
    const out = join(w.dir, 'tree')
    const first = await (await dl.add(root.toString(), { output: out })).done
    expect(first.status).toBe('failed')
    const before = w.gateways[0]!.requests.length
    const done = await (await dl.resume(first.id)).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(w.gateways[0]!.requests.length).toBe(before)
    expect(sha256(await readFile(join(out, 'a.bin')))).toBe(sha256(seededBytes(600 * KiB, 41)))
    expect(await readFile(join(out, 'sub/b.txt'), 'utf8')).toBe('b')
  })

  it('path mode: progress whose partial file is gone restarts from the beginning and says so', async () => {
    w = await world({ size: 2 * MiB })
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 600 * KiB }, times: 1, match: { format: 'path' } })
    const dl = await w.open({ timeoutMs: 200 })
    const job = await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'p') })
    await progressReaches(dl, job.id, 512 * KiB)
    await dl.pause(job.id)
    expect((await dl.get(job.id))!.currentSize).toBeGreaterThan(0)
    await rm(join(w.dir, 'p.cidget-partial'))
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 300 * KiB }, times: 1, match: { format: 'path' } })
    const resumed = await dl.resume(job.id)
    await progressReaches(dl, job.id, 256 * KiB)
    expect((await dl.get(job.id))!.error).toMatch(/^Restarted from the beginning: the partial data .*p\.cidget-partial holds none of the \d+ bytes an earlier run recorded/)
    const done = await resumed.done
    expect(done.status, done.error ?? '').toBe('success')
    expect(sha256(await readFile(done.output))).toBe(w.sha)
  })

  it('pause and cancel from another Downloader act through the store at the next heartbeat', async () => {
    w = await world({ size: 2 * MiB })
    const a = await w.open({ heartbeatMs: 20, now: () => Date.now() })
    const b = await w.open({ heartbeatMs: 20, now: () => Date.now() })
    expect(a.owner).not.toBe(b.owner)
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 512 * KiB }, times: 2 })
    const job = await a.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })
    await progressReaches(a, job.id, 512 * KiB)
    const paused = await b.pause(job.id)
    expect(paused.status).toBe('paused')
    expect(paused.control).toBeNull()
    expect((await job.done).status).toBe('paused')

    const again = await a.resume(job.id)
    await progressReaches(a, job.id, 1024 * KiB)
    const cancelled = await b.cancel(job.id)
    expect(cancelled.status).toBe('cancelled')
    expect((await again.done).status).toBe('cancelled')
  })

  it('a stolen lease stops the run without writing its status', async () => {
    w = await world({ size: 2 * MiB })
    const a = await w.open({ heartbeatMs: 20, now: () => Date.now() })
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 256 * KiB }, times: 1 })
    const job = await a.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })
    await progressReaches(a, job.id, 256 * KiB)
    const thief = SqliteStore.open(w.state)
    await thief.releaseLease(job.id, a.owner)
    expect(await thief.claimLease(job.id, 'thief:1:x', 60_000)).toBe(true)
    const rec = await job.done
    expect(rec.leaseOwner).toBe('thief:1:x')
    expect(['in_progress', 'resuming']).toContain(rec.status)
    await thief.close()
  })

  it('a lease that cannot be renewed stops the run one heartbeat before it runs out, so that a take-over never overlaps it', async () => {
    w = await world({ size: 2 * MiB })
    // the lease check reads this clock; the heartbeat fires every 20 ms of real time
    const T0 = Date.parse('2026-01-01T00:00:00Z')
    let t = T0
    const LEASE = 10_000
    const BEAT = 20
    // a store that answers SQLITE_BUSY at once while another connection holds the write lock
    const store = SqliteStore.open(w.state, { busyTimeoutMs: 0 })
    const a = await w.open({ store, owner: 'host-a:1:aaaa', now: () => t, leaseMs: LEASE, heartbeatMs: BEAT, timeoutMs: 600_000 })
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 256 * KiB }, times: 1 })
    const job = await a.add(w.cid, { mode: 'path', output: join(w.dir, 'o') })
    await progressReaches(a, job.id, 256 * KiB)
    // the lease as last renewed (at T0: the clock has not moved)
    expect(await store.getDownload(job.id)).toMatchObject({ leaseOwner: a.owner, leaseExpires: T0 + LEASE })

    const locker = new Database(w.state)
    locker.exec('BEGIN IMMEDIATE')
    let ended: number | undefined
    void job.done.then(() => { ended = t })
    try {
      // renewals fail from now on. At the last moment more than one beat before the lease's end the
      // run goes on (there is no event for a beat that did not stop it: a few beats' time is given)
      t = T0 + LEASE - BEAT - 1
      await new Promise(resolve => setTimeout(resolve, 10 * BEAT))
      expect(ended, 'stopped while more than one heartbeat of the lease was left').toBeUndefined()
      // one beat before the end: the next beat stops the run
      t = T0 + LEASE - BEAT
      const stopped = await Promise.race([
        job.done,
        new Promise<never>((_resolve, reject) => setTimeout(() => { reject(new Error('the run went on with a lease it could not renew')) }, 20_000))
      ])
      expect(ended).toBeLessThan(T0 + LEASE)
      // the state could not be written: the record stays as it was, the lease runs out on its own
      expect(stopped).toMatchObject({ status: 'in_progress', leaseOwner: a.owner, leaseExpires: T0 + LEASE })
    } finally {
      locker.exec('ROLLBACK')
      locker.close()
    }
    // once the lease has run out another process takes the download over and finishes it
    const b = await w.open({ owner: 'host-b:2:bbbb', now: () => T0 + LEASE + 1 })
    const done = await (await b.resume(job.id)).done
    expect(done.status, done.error ?? '').toBe('success')
    expect(await fileSha256(join(w.dir, 'o'))).toBe(w.sha)
  })

  it('close() pauses what runs as interrupted; resumeAll({ interruptedOnly }) resumes that and leaves a user pause alone', async () => {
    w = await world({ size: 2 * MiB })
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 256 * KiB }, times: 2 })
    const a = await w.open({ concurrency: 2 })
    const shut = await a.add(w.cid, { mode: 'path', output: join(w.dir, 'shut') })
    const mine = await a.add(w.cid, { mode: 'path', output: join(w.dir, 'mine') })
    await progressReaches(a, shut.id, 256 * KiB)
    await progressReaches(a, mine.id, 256 * KiB)
    await a.pause(mine.id)
    await a.close()
    expect(await shut.done).toMatchObject({ status: 'paused', errorCode: 'CIDGET_ERR_INTERRUPTED' })
    expect(await mine.done).toMatchObject({ status: 'paused', errorCode: null })
    const b = await w.open()
    const jobs = await b.resumeAll({ interruptedOnly: true })
    expect(jobs.map(j => j.id)).toEqual([shut.id])
    expect((await jobs[0]!.done).status).toBe('success')
    expect((await b.get(mine.id))!.status).toBe('paused')
  })

  it('gatewayStats() adds up the pools of finished and running downloads', async () => {
    w = await world({ size: MiB, gateways: 2 })
    w.gateways[1]!.addFault({ fault: { type: 'wrong-block' }, times: 1 })
    // block by block, so that both gateways are asked (one CAR run would go to one of them)
    const dl = await w.open({ hedgeAfterMs: 0, runBlocks: 0 })
    const events: string[] = []
    dl.on('cidget:gateway', e => events.push(`${e.state}`))
    expect(dl.gatewayStats().map(g => g.requests)).toEqual([0, 0])
    const done = await (await dl.add(w.cid, { output: join(w.dir, 'o') })).done
    expect(done.status).toBe('success')
    const stats = dl.gatewayStats()
    expect(stats.map(g => g.url)).toEqual(w.gateways.map(g => g.url))
    expect(stats.reduce((n, g) => n + g.bytes, 0)).toBeGreaterThanOrEqual(MiB)
    expect(stats[1]!.invalidBlocks).toBe(1)
    expect(events).toContain('dropped')
  })

  it('an unknown id is a coded error', async () => {
    w = await world({ size: 1 })
    const dl = await w.open()
    let err: unknown
    try { await dl.resume(99) } catch (e) { err = e }
    expect(isCidgetError(err, 'CIDGET_ERR_UNKNOWN_DOWNLOAD')).toBe(true)
  })
})
