/** The journal: every write a run makes is fenced on its lease, path mode included. */
import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { access } from 'node:fs/promises'
import { world, progressReaches, KiB, MiB, type World } from '../helpers.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import { DEFAULTS } from '../../src/core/defaults.js'

let w: World
afterEach(async () => { await w?.close() })

async function present (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}

describe('journal', () => {
  it('path mode: a run that lost its lease records no more progress and does not rename its partial onto the output', async () => {
    // 1 MiB at 512 KiB/s: about two seconds of body after the lease is taken
    w = await world({ size: MiB, maxBytesPerSecond: 512 * KiB, chunkSize: 16 * KiB })
    // A never renews its lease here (a process stopped past the lease's end looks so)
    const a = await w.open({ owner: 'host-a:1:aaaa', leaseMs: 60_000, heartbeatMs: 3_600_000, syncIntervalBytes: 64 * KiB, checkPath: false })
    const output = join(w.dir, 'o')
    const job = await a.add(w.cid, { mode: 'path', output })
    await progressReaches(a, job.id, 256 * KiB)
    // B comes two minutes later by its clock: A's lease ran out, and B takes the download
    const b = SqliteStore.open(w.state)
    try {
      expect(await b.claimLease(job.id, 'host-b:2:bbbb', 60_000, w.time.now() + 120_000)).toBe(true)
      const taken = await b.getDownload(job.id)
      await job.done
      // A went on receiving, syncing and hashing, but nothing of it reached the record
      expect(await b.getDownload(job.id)).toEqual(taken)
      expect(taken).toMatchObject({ leaseOwner: 'host-b:2:bbbb', hash: null })
    } finally {
      await b.close()
    }
    expect(await present(output)).toBe(false)
    expect(await present(output + DEFAULTS.PARTIAL_SUFFIX)).toBe(true)
  })
})
