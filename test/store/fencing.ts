import { describe, expect, it } from 'vitest'
import type { DownloadRecord, NewDownload } from '../../src/core/types.js'
import type { Store } from '../../src/store/store.js'

const TTL = 30_000
const T0 = 1_000_000
const A = 'host-a:100:aaaa'
const B = 'host-b:200:bbbb'

function newDownload (): NewDownload {
  return {
    cid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
    path: '',
    target: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
    output: '/tmp/out/fenced.bin',
    mode: 'verified',
    gateways: ['https://ipfs.io']
  }
}

/** Every write a running download makes, fenced on `owner`. */
const WRITES: Array<[string, (s: Store, id: number, owner: string) => Promise<void>]> = [
  ['saveProgress', async (s, id, o) => { await s.saveProgress(id, new Uint8Array([0xff]), 4096, o) }],
  ['updateDownloadResume', async (s, id, o) => { await s.updateDownloadResume(id, 4096, 7, T0 + 5, 'resuming', o) }],
  ['updateDownloadHash', async (s, id, o) => { await s.updateDownloadHash(id, 'cd'.repeat(32), o) }],
  ['markDownloadResuming', async (s, id, o) => { await s.markDownloadResuming(id, o) }],
  ['markDownloadPaused', async (s, id, o) => { await s.markDownloadPaused(id, 'disk full', 'CIDGET_ERR_DISK_FULL', o) }],
  ['markDownloadFailed', async (s, id, o) => { await s.markDownloadFailed(id, 'gone', 'CIDGET_ERR_NOT_FOUND', o) }],
  ['markDownloadSuccess', async (s, id, o) => { await s.markDownloadSuccess(id, 'cd'.repeat(32), 4096, T0 + 5, o) }],
  ['updateDownload', async (s, id, o) => { await s.updateDownload(id, { size: 4096, etag: '"x"', error: 'note', currentSize: 0, hash: null }, T0 + 5, o) }],
  ['putBlock', async (s, id, o) => { await s.putBlock(id, 'bafyNew', new Uint8Array([9]), o) }],
  ['putBlocks', async (s, id, o) => { await s.putBlocks(id, [{ cid: 'bafyNew', bytes: new Uint8Array([9]) }, { cid: 'bafyNew2', bytes: new Uint8Array([8]) }], o) }],
  ['clearProgress', async (s, id, o) => { await s.clearProgress(id, o) }]
]

interface Snapshot {
  record: Omit<DownloadRecord, 'updatedAt'> | undefined
  progress: Uint8Array | undefined
  blocks: string[]
}

async function snapshot (store: Store, id: number): Promise<Snapshot> {
  const rec = await store.getDownload(id)
  let record: Snapshot['record']
  if (rec !== undefined) {
    const { updatedAt: _updatedAt, ...rest } = rec
    record = rest
  }
  return { record, progress: await store.getProgress(id), blocks: [...(await store.getBlocks(id)).keys()].sort() }
}

/**
 * Fenced writes: made only while the owner holds the lease, checked in the same
 * statement or transaction; otherwise nothing is written and CIDGET_ERR_LEASE_HELD.
 */
export function fencingContract (getStore: () => Store): void {
  describe('lease fencing', () => {
    /** A download with progress and a kept block, whose lease A held and B then took over. */
    async function takenOver (): Promise<number> {
      const store = getStore()
      const { id } = await store.createDownload(newDownload(), T0)
      expect(await store.claimLease(id, A, TTL, T0)).toBe(true)
      await store.saveProgress(id, new Uint8Array([0b11]), 2048, A)
      await store.putBlock(id, 'bafyA', new Uint8Array([1]), A)
      await store.updateDownloadResume(id, 2048, 1, T0, 'in_progress', A)
      // A's lease ran out, and B took the download over
      expect(await store.claimLease(id, B, TTL, T0 + TTL + 1)).toBe(true)
      return id
    }

    for (const [name, write] of WRITES) {
      it(`${name} by an owner that lost the lease writes nothing and is CIDGET_ERR_LEASE_HELD`, async () => {
        const store = getStore()
        const id = await takenOver()
        const before = await snapshot(store, id)
        await expect(write(store, id, A)).rejects.toMatchObject({ code: 'CIDGET_ERR_LEASE_HELD' })
        expect(await snapshot(store, id)).toEqual(before)
      })

      it(`${name} by the lease holder is written`, async () => {
        const store = getStore()
        const id = await takenOver()
        const before = await snapshot(store, id)
        await write(store, id, B)
        expect(await snapshot(store, id)).not.toEqual(before)
      })

      it(`${name} fenced on a download nobody leases is CIDGET_ERR_LEASE_HELD; on an unknown id CIDGET_ERR_UNKNOWN_DOWNLOAD`, async () => {
        const store = getStore()
        const { id } = await store.createDownload(newDownload(), T0)
        const before = await snapshot(store, id)
        await expect(write(store, id, A)).rejects.toMatchObject({ code: 'CIDGET_ERR_LEASE_HELD' })
        expect(await snapshot(store, id)).toEqual(before)
        await expect(write(store, 987_654, A)).rejects.toMatchObject({ code: 'CIDGET_ERR_UNKNOWN_DOWNLOAD' })
      })
    }

    it('unfenced writes are made whoever holds the lease', async () => {
      const store = getStore()
      const id = await takenOver()
      await store.updateDownload(id, { priority: 3 }, T0 + 2)
      await store.markDownloadPaused(id, null, null)
      await store.clearProgress(id)
      expect(await store.getDownload(id)).toMatchObject({ priority: 3, status: 'paused', leaseOwner: B })
      expect(await snapshot(store, id)).toMatchObject({ progress: undefined, blocks: [] })
      await store.clearProgress(987_654) // nothing to forget: no error
    })

    it('the success record by the lease holder releases the lease and forgets the progress', async () => {
      const store = getStore()
      const id = await takenOver()
      await store.markDownloadSuccess(id, 'cd'.repeat(32), 4096, T0 + TTL + 2, B)
      expect(await store.getDownload(id)).toMatchObject({ status: 'success', hash: 'cd'.repeat(32), size: 4096, leaseOwner: null })
      expect(await snapshot(store, id)).toMatchObject({ progress: undefined, blocks: [] })
    })
  })
}
