/** The journal: every write a run makes is fenced on its lease, path mode included. */
import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { access, stat } from 'node:fs/promises'
import { world, progressReaches, KiB, MiB, type World } from '../helpers.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import { DEFAULTS } from '../../src/core/defaults.js'
import { Journal } from '../../src/engine/journal.js'
import type { DownloadJournal } from '../../src/core/journal.js'

let w: World
afterEach(async () => { await w?.close() })

async function present (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}

/**
 * A path download of 1 MiB at 512 KiB/s run by A, which never renews its lease (a process stopped
 * past the lease's end looks so); once 256 KiB arrived, B comes two minutes later by its clock and
 * takes the download. `fault` is set on the gateway first. Returns the record as B took it and as
 * it is once A's run ended, and the output path.
 */
async function leaseLostMidBody (fault?: Parameters<NonNullable<World['gateways'][0]>['addFault']>[0]): Promise<{ taken: unknown, after: unknown, output: string }> {
  w = await world({ size: MiB, maxBytesPerSecond: 512 * KiB, chunkSize: 16 * KiB })
  if (fault !== undefined) (w.gateways[0] as NonNullable<World['gateways'][0]>).addFault(fault)
  const a = await w.open({ owner: 'host-a:1:aaaa', leaseMs: 60_000, heartbeatMs: 3_600_000, syncIntervalBytes: 64 * KiB, checkPath: false })
  const output = join(w.dir, 'o')
  const job = await a.add(w.cid, { mode: 'path', output })
  await progressReaches(a, job.id, 256 * KiB)
  const b = SqliteStore.open(w.state)
  try {
    expect(await b.claimLease(job.id, 'host-b:2:bbbb', 60_000, w.time.now() + 120_000)).toBe(true)
    const taken = await b.getDownload(job.id)
    await job.done
    return { taken, after: await b.getDownload(job.id), output }
  } finally {
    await b.close()
  }
}

describe('journal', () => {
  it('path mode: a run that lost its lease records no more progress and does not rename its partial onto the output', async () => {
    const { taken, after, output } = await leaseLostMidBody()
    // A went on receiving, syncing and hashing, but nothing of it reached the record
    expect(after).toEqual(taken)
    expect(taken).toMatchObject({ leaseOwner: 'host-b:2:bbbb', hash: null })
    expect(await present(output)).toBe(false)
    expect(await present(output + DEFAULTS.PARTIAL_SUFFIX)).toBe(true)
  })

  it('path mode: a run that lost its lease does not cut the partial file when a failure would restart it from zero', async () => {
    // the body breaks at 400 KiB of 1 MiB: under half of it, a restart from zero
    const { taken, after, output } = await leaseLostMidBody({ fault: { type: 'reset', afterBytes: 400 * KiB }, times: 1 })
    expect(after).toEqual(taken)
    // the partial the new lease holder continues from is as A left it at the break, not cut to 0
    expect((await stat(output + DEFAULTS.PARTIAL_SUFFIX)).size).toBeGreaterThanOrEqual(256 * KiB)
    expect(await present(output)).toBe(false)
  })

  it('keeps inner blocks in batches: readable at once, written at the next checkpoint, pause or failure, or when 256 wait', async () => {
    const store = SqliteStore.open(':memory:')
    try {
      const { id } = await store.createDownload({ cid: 'bafkqaaa', path: '', target: 'bafkqaaa', output: '/tmp/o', mode: 'verified', gateways: ['http://gw'] }, 1_000)
      const owner = 'host-a:1:aaaa'
      expect(await store.claimLease(id, owner, 60_000, 1_000)).toBe(true)
      const j = new Journal({ store, id, owner, now: () => 2_000 })
      await j.keepBlock('bafyA', new Uint8Array([1]))
      await j.keepBlock('bafyA', new Uint8Array([1]))
      expect(await j.keptBlock('bafyA')).toEqual(new Uint8Array([1]))
      expect(await store.getBlockKeys(id)).toEqual([])
      await j.checkpoint(new Uint8Array([1]), 10)
      expect(await store.getBlockKeys(id)).toEqual(['bafyA'])
      for (let i = 0; i < 255; i++) await j.keepBlock(`bafy${i}`, new Uint8Array([i]))
      expect(await store.getBlockKeys(id)).toHaveLength(1)
      await j.keepBlock('bafy255', new Uint8Array([255]))
      expect(await store.getBlockKeys(id)).toHaveLength(257)
      expect(await j.keptBlock('bafy7')).toEqual(new Uint8Array([7]))
      // a restart from zero forgets those not written yet too
      await j.keepBlock('bafyLost', new Uint8Array([1]))
      await j.restart()
      expect(await j.keptBlock('bafyLost')).toBeUndefined()
      await j.keepBlock('bafyP', new Uint8Array([2]))
      await j.pause('stopped', 'CIDGET_ERR_INTERRUPTED')
      expect(await store.getBlockKeys(id)).toEqual(['bafyP'])
    } finally {
      await store.close()
    }
  })

  describe('every write is fenced on its owner', () => {
    const A = 'host-a:1:aaaa'
    const B = 'host-b:2:bbbb'
    const writes: Array<[string, (j: DownloadJournal) => Promise<void>]> = [
      ['checkpoint', async j => { await j.checkpoint(new Uint8Array([0xff]), 4096) }],
      ['keepBlock (written at the next checkpoint)', async j => { await j.keepBlock('bafyNew', new Uint8Array([9])); await j.checkpoint(new Uint8Array([0xff]), 4096) }],
      ['durable', async j => { await j.durable(4096) }],
      ['attempt', async j => { await j.attempt(4096, 5, 'resuming') }],
      ['describe', async j => { await j.describe(8192, '"etag"') }],
      ['note', async j => { await j.note('a note') }],
      ['restart', async j => { await j.restart({ note: 'from zero' }) }],
      ['restart keeping blocks', async j => { await j.restart({ keepBlocks: true }) }],
      ['forgetProgress', async j => { await j.forgetProgress() }],
      ['finished', async j => { await j.finished('cd'.repeat(32), 8192) }],
      ['succeed', async j => { await j.succeed('cd'.repeat(32), 8192, 'http://gw') }],
      ['pause', async j => { await j.pause('stopped', 'CIDGET_ERR_INTERRUPTED') }],
      ['fail', async j => { await j.fail('gone', 'CIDGET_ERR_NOT_FOUND') }],
      ['cancel', async j => { await j.cancel() }]
    ]
    for (const [name, write] of writes) {
      it(`${name}: written for the lease holder, refused with CIDGET_ERR_LEASE_HELD once another owner took the lease`, async () => {
        const store = SqliteStore.open(':memory:')
        try {
          const { id } = await store.createDownload({ cid: 'bafkqaaa', path: '', target: 'bafkqaaa', output: '/tmp/o', mode: 'verified', gateways: ['http://gw'] }, 1_000)
          expect(await store.claimLease(id, A, 60_000, 1_000)).toBe(true)
          const a = new Journal({ store, id, owner: A, now: () => 2_000 })
          await a.keepBlock('bafyA', new Uint8Array([1]))
          await a.checkpoint(new Uint8Array([1]), 10)
          const before = { record: await store.getDownload(id), progress: await store.getProgress(id), blocks: await store.getBlocks(id) }
          expect(await store.claimLease(id, B, 60_000, 100_000)).toBe(true)
          const taken = await store.getDownload(id)
          await expect(write(a)).rejects.toMatchObject({ code: 'CIDGET_ERR_LEASE_HELD' })
          expect(await store.getDownload(id)).toEqual(taken)
          expect({ progress: await store.getProgress(id), blocks: await store.getBlocks(id) }).toEqual({ progress: before.progress, blocks: before.blocks })
          // the holder's journal writes
          await write(new Journal({ store, id, owner: B, now: () => 200_000 }))
          const after = { record: await store.getDownload(id), progress: await store.getProgress(id), blocks: await store.getBlocks(id) }
          expect(after).not.toEqual({ ...before, record: taken })
        } finally {
          await store.close()
        }
      })
    }
  })
})
