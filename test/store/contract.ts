import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isCidgetError } from '../../src/core/errors.js'
import type { ErrorCode } from '../../src/core/errors.js'
import type { NewDownload } from '../../src/core/types.js'
import type { OwnerLiveness, Store } from '../../src/store/store.js'
import { fencingContract } from './fencing.js'

/** What the contract passes to `open`: every Store must honour these. */
export interface ContractOpenOptions {
  /** The lease-owner liveness check the store must use. */
  isOwnerDead: OwnerLiveness
}

/** Owners whose id starts with this are dead for every store the contract opens. */
const DEAD = 'dead-host:'
const contractIsOwnerDead: OwnerLiveness = owner => owner.startsWith(DEAD)

const TTL = 30_000
const T0 = 1_000_000

function newDownload (over: Partial<NewDownload> = {}): NewDownload {
  return {
    cid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
    path: '',
    target: 'ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
    output: '/tmp/out/file.bin',
    mode: 'verified',
    gateways: ['https://ipfs.io', 'https://dweb.link'],
    ...over
  }
}

async function expectCode (p: Promise<unknown>, code: ErrorCode): Promise<void> {
  let caught: unknown
  try {
    await p
  } catch (err) {
    caught = err
  }
  expect(caught, `expected a rejection with ${code}`).toBeDefined()
  expect(isCidgetError(caught, code), `expected ${code}, got ${String(caught)}`).toBe(true)
}

/**
 * The behaviour every `Store` must have. `open` returns a new, empty store each
 * time, using `opts.isOwnerDead` as its liveness check; the contract closes it.
 */
export function storeContract (name: string, open: (opts: ContractOpenOptions) => Promise<Store>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store

    beforeEach(async () => {
      store = await open({ isOwnerDead: contractIsOwnerDead })
    })

    afterEach(async () => {
      await store.close()
    })

    describe('records', () => {
      it('creates a pending download with defaults and reads every field back', async () => {
        const created = await store.createDownload(newDownload(), T0)
        expect(created).toEqual({
          id: created.id,
          cid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
          path: '',
          target: 'ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
          output: '/tmp/out/file.bin',
          mode: 'verified',
          gateways: ['https://ipfs.io', 'https://dweb.link'],
          gateway: null,
          size: null,
          expectedSha256: null,
          status: 'pending',
          attempts: 0,
          lastAttempt: null,
          currentSize: 0,
          hash: null,
          etag: null,
          error: null,
          errorCode: null,
          priority: 0,
          createdAt: T0,
          updatedAt: T0,
          completedAt: null,
          leaseOwner: null,
          leaseExpires: null,
          control: null,
          name: null,
          nameSequence: null,
          nameValidity: null,
          nameResolvedAt: null,
          updateOf: null,
          updateReport: null,
          limitRate: null
        })
        expect(Number.isInteger(created.id) && created.id > 0).toBe(true)
        expect(await store.getDownload(created.id)).toEqual(created)
      })

      it('round-trips every field, including large sizes and times', async () => {
        const big = 2 ** 40 + 7 // beyond 32 bits
        const created = await store.createDownload(newDownload({
          path: '/a/b.bin',
          mode: 'path',
          gateways: [],
          size: big,
          expectedSha256: 'ab'.repeat(32),
          priority: -3
        }), T0)
        await store.updateDownload(created.id, {
          status: 'in_progress',
          attempts: 2,
          lastAttempt: T0 + 1,
          currentSize: big - 1,
          hash: 'cd'.repeat(32),
          etag: '"bafy-etag"',
          error: 'boom',
          errorCode: 'CIDGET_ERR_NETWORK',
          gateway: 'https://dweb.link',
          gateways: ['https://a.example', 'https://b.example'],
          completedAt: T0 + 2,
          priority: 9
        }, T0 + 3)
        await store.claimLease(created.id, 'host:1:tok', TTL, T0 + 4)
        const got = await store.getDownload(created.id)
        expect(got).toEqual({
          ...created,
          path: '/a/b.bin',
          mode: 'path',
          size: big,
          expectedSha256: 'ab'.repeat(32),
          status: 'in_progress',
          attempts: 2,
          lastAttempt: T0 + 1,
          currentSize: big - 1,
          hash: 'cd'.repeat(32),
          etag: '"bafy-etag"',
          error: 'boom',
          errorCode: 'CIDGET_ERR_NETWORK',
          gateway: 'https://dweb.link',
          gateways: ['https://a.example', 'https://b.example'],
          completedAt: T0 + 2,
          priority: 9,
          updatedAt: T0 + 4,
          leaseOwner: 'host:1:tok',
          leaseExpires: T0 + 4 + TTL
        })
      })

      it('updateDownload writes only the fields given, and null clears a field', async () => {
        const { id } = await store.createDownload(newDownload({ size: 10 }), T0)
        await store.updateDownload(id, { error: 'x', errorCode: 'CIDGET_ERR_TIMEOUT' }, T0 + 1)
        await store.updateDownload(id, { error: null, attempts: 1 }, T0 + 2)
        const got = await store.getDownload(id)
        expect(got).toMatchObject({ error: null, errorCode: 'CIDGET_ERR_TIMEOUT', attempts: 1, size: 10, updatedAt: T0 + 2 })
      })

      it('a download\'s own bandwidth limit: none when created, set and cleared by updateDownload', async () => {
        const { id, limitRate } = await store.createDownload(newDownload(), T0)
        expect(limitRate).toBeNull()
        await store.updateDownload(id, { limitRate: 3 * 1024 ** 3 }, T0 + 1)
        expect((await store.getDownload(id))?.limitRate).toBe(3 * 1024 ** 3)
        await store.updateDownload(id, { limitRate: null }, T0 + 2)
        expect((await store.getDownload(id))?.limitRate).toBeNull()
      })

      it('getDownload of an unknown id is undefined', async () => {
        expect(await store.getDownload(987654)).toBeUndefined()
      })

      it('getDownloadsByStatus returns only that status, by id', async () => {
        const a = await store.createDownload(newDownload({ output: '/o/a' }), T0)
        const b = await store.createDownload(newDownload({ output: '/o/b' }), T0)
        const c = await store.createDownload(newDownload({ output: '/o/c' }), T0)
        await store.markDownloadResuming(b.id)
        expect((await store.getDownloadsByStatus('pending')).map(r => r.id)).toEqual([a.id, c.id])
        expect((await store.getDownloadsByStatus('resuming')).map(r => r.id)).toEqual([b.id])
        expect(await store.getDownloadsByStatus('success')).toEqual([])
      })

      it('listDownloads pages by id with afterId and limit, optionally by status', async () => {
        const ids: number[] = []
        for (let i = 0; i < 7; i++) ids.push((await store.createDownload(newDownload({ output: `/o/${i}` }), T0)).id)
        await store.markDownloadFailed(ids[2]!, 'x', 'CIDGET_ERR_NETWORK')
        await store.markDownloadFailed(ids[5]!, 'x', 'CIDGET_ERR_NETWORK')

        expect((await store.listDownloads()).map(r => r.id)).toEqual(ids)
        const page1 = await store.listDownloads({ limit: 3 })
        expect(page1.map(r => r.id)).toEqual(ids.slice(0, 3))
        const page2 = await store.listDownloads({ limit: 3, afterId: page1.at(-1)!.id })
        expect(page2.map(r => r.id)).toEqual(ids.slice(3, 6))
        const page3 = await store.listDownloads({ limit: 3, afterId: page2.at(-1)!.id })
        expect(page3.map(r => r.id)).toEqual(ids.slice(6))
        expect(await store.listDownloads({ limit: 3, afterId: ids.at(-1)! })).toEqual([])

        expect((await store.listDownloads({ status: 'failed' })).map(r => r.id)).toEqual([ids[2], ids[5]])
        expect((await store.listDownloads({ status: 'failed', afterId: ids[2]! })).map(r => r.id)).toEqual([ids[5]])
        expect((await store.listDownloads({ status: 'pending', limit: 2 })).map(r => r.id)).toEqual([ids[0], ids[1]])
      })

      it('listDownloads returns at most 100 by default', async () => {
        for (let i = 0; i < 105; i++) await store.createDownload(newDownload({ output: `/o/${i}` }), T0)
        expect(await store.listDownloads()).toHaveLength(100)
      })

      it('findDownload returns the newest that is not cancelled, matching cid, path and output', async () => {
        const first = await store.createDownload(newDownload(), T0)
        const second = await store.createDownload(newDownload(), T0 + 1)
        const third = await store.createDownload(newDownload(), T0 + 2)
        await store.createDownload(newDownload({ path: '/other' }), T0 + 3)
        await store.createDownload(newDownload({ output: '/tmp/out/other.bin' }), T0 + 3)
        await store.createDownload(newDownload({ cid: 'bafyother' }), T0 + 3)
        await store.updateDownload(third.id, { status: 'cancelled' })

        const c = newDownload()
        expect((await store.findDownload(c.cid, c.path, c.output))?.id).toBe(second.id)
        await store.updateDownload(second.id, { status: 'cancelled' })
        expect((await store.findDownload(c.cid, c.path, c.output))?.id).toBe(first.id)
        await store.markDownloadSuccess(first.id, 'ab'.repeat(32), 5)
        expect((await store.findDownload(c.cid, c.path, c.output))?.id).toBe(first.id)
        await store.updateDownload(first.id, { status: 'cancelled' })
        expect(await store.findDownload(c.cid, c.path, c.output)).toBeUndefined()
        expect(await store.findDownload('nope', '', '/x')).toBeUndefined()
      })

      it('a download of a name: created unresolved, found by name and output, its resolution written fenced (one or many inserted)', async () => {
        const name = '/ipns/example.org/data'
        const [a] = await store.createDownloads([newDownload({ cid: '', name, output: '/o/a' })], T0)
        const b = await store.createDownload(newDownload({ cid: '', name, output: '/o/b' }), T0)
        expect(a).toMatchObject({ cid: '', path: '', name, nameSequence: null, nameValidity: null, nameResolvedAt: null })
        expect((await store.findNamedDownload(name, '/o/b'))?.id).toBe(b.id)
        expect(await store.findNamedDownload('/ipns/example.org', '/o/b')).toBeUndefined()
        expect(await store.findNamedDownload(name, '/o/c')).toBeUndefined()
        const resolved = { cid: 'bafyresolved', path: '/v2/data', nameSequence: '18446744073709551615', nameValidity: '2030-01-01T00:00:00.000000000Z', nameResolvedAt: T0 + 5 }
        expect(await store.claimLease(b.id, 'w1', 60_000, T0)).toBe(true)
        await expect(store.updateDownload(b.id, resolved, T0 + 5, 'w2')).rejects.toMatchObject({ code: 'CIDGET_ERR_LEASE_HELD' })
        expect(await store.getDownload(b.id)).toMatchObject({ cid: '', nameSequence: null })
        await store.updateDownload(b.id, resolved, T0 + 5, 'w1')
        expect(await store.getDownload(b.id)).toMatchObject({ ...resolved, name })
        expect((await store.findNamedDownload(name, '/o/b'))?.cid).toBe('bafyresolved')
        await store.updateDownload(b.id, { status: 'cancelled' })
        expect(await store.findNamedDownload(name, '/o/b')).toBeUndefined()
      })

      it('an update: created resolved, naming the download it updates (one or many inserted), its report written as JSON', async () => {
        const name = '/ipns/k51example'
        const resolved = { cid: 'bafynew', path: '/x', name, nameSequence: '9', nameValidity: '2030-01-01T00:00:00Z', nameResolvedAt: T0 }
        const old = await store.createDownload(newDownload({ ...resolved, output: '/o/u' }), T0)
        await store.markDownloadSuccess(old.id, 'ab'.repeat(32), 1)
        const [u] = await store.createDownloads([newDownload({ ...resolved, output: '/o/u', updateOf: old.id })], T0 + 1)
        const one = await store.createDownload(newDownload({ ...resolved, output: '/o/v', updateOf: old.id }), T0 + 1)
        for (const rec of [u, one]) expect(rec).toMatchObject({ ...resolved, updateOf: old.id, updateReport: null })
        const report = { keptFiles: 3, keptBytes: 30, reusedBytes: 5, fetchedBytes: 7, removed: ['a/b'], removedCount: 1, carried: [], carriedCount: 0, previousUnknown: false, complete: true }
        await store.updateDownload(one.id, { updateReport: report })
        expect((await store.getDownload(one.id))?.updateReport).toEqual(report)
        expect((await store.findNamedDownload(name, '/o/u'))?.id).toBe(u!.id)
      })

      it('findDoneByOutput returns the latest download that finished at that output', async () => {
        const a = await store.createDownload(newDownload({ output: '/o/done' }), T0)
        expect(await store.findDoneByOutput('/o/done')).toBeUndefined()
        await store.markDownloadSuccess(a.id, null, 1)
        const b = await store.createDownload(newDownload({ cid: 'bafyb', output: '/o/done' }), T0 + 1)
        expect((await store.findDoneByOutput('/o/done'))?.id).toBe(a.id)
        await store.markDownloadSuccess(b.id, null, 1)
        expect((await store.findDoneByOutput('/o/done'))?.id).toBe(b.id)
        expect(await store.findDoneByOutput('/o/other')).toBeUndefined()
      })

      it('findUnfinishedByOutput lists downloads to that output that are not success, failed or cancelled', async () => {
        const out = '/tmp/out/shared.bin'
        const ids: Record<string, number> = {}
        for (const status of ['pending', 'in_progress', 'resuming', 'paused', 'success', 'failed', 'cancelled'] as const) {
          const { id } = await store.createDownload(newDownload({ output: out }), T0)
          await store.updateDownload(id, { status })
          ids[status] = id
        }
        await store.createDownload(newDownload({ output: '/tmp/out/elsewhere.bin' }), T0)
        expect((await store.findUnfinishedByOutput(out)).map(r => r.id))
          .toEqual([ids.pending, ids.in_progress, ids.resuming, ids.paused])
        expect(await store.findUnfinishedByOutput('/nowhere')).toEqual([])
      })

      it('deleteDownload removes the row and says whether there was one', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        expect(await store.deleteDownload(id)).toBe(true)
        expect(await store.getDownload(id)).toBeUndefined()
        expect(await store.deleteDownload(id)).toBe(false)
      })

      it('ids are never reused after a delete', async () => {
        const a = await store.createDownload(newDownload(), T0)
        await store.deleteDownload(a.id)
        const b = await store.createDownload(newDownload(), T0)
        expect(b.id).toBeGreaterThan(a.id)
      })
    })

    describe('the seed query functions', () => {
      it('updateDownloadResume sets size, attempts, last attempt and status together', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.updateDownloadResume(id, 4096, 2, T0 + 50, 'resuming')
        const got = await store.getDownload(id)
        expect(got).toMatchObject({ currentSize: 4096, attempts: 2, lastAttempt: T0 + 50, status: 'resuming' })
        expect(got!.updatedAt).toBeGreaterThan(T0)
      })

      it('updateDownloadHash stores the hash only', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.updateDownloadHash(id, 'ef'.repeat(32))
        expect(await store.getDownload(id)).toMatchObject({ hash: 'ef'.repeat(32), status: 'pending' })
      })

      it('markDownloadResuming sets status resuming', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.markDownloadResuming(id)
        expect((await store.getDownload(id))?.status).toBe('resuming')
      })

      it('markDownloadPaused sets status paused with the error and its code', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.markDownloadPaused(id, 'No space left on device', 'CIDGET_ERR_DISK_FULL')
        expect(await store.getDownload(id)).toMatchObject({
          status: 'paused', error: 'No space left on device', errorCode: 'CIDGET_ERR_DISK_FULL'
        })
        await store.markDownloadPaused(id, 'paused by user')
        expect(await store.getDownload(id)).toMatchObject({ status: 'paused', error: 'paused by user', errorCode: null })
        await store.markDownloadPaused(id, null)
        expect(await store.getDownload(id)).toMatchObject({ status: 'paused', error: null, errorCode: null })
      })

      it('markDownloadFailed sets status failed with the error and its code', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.markDownloadFailed(id, 'gave up', 'CIDGET_ERR_ATTEMPTS_EXHAUSTED')
        expect(await store.getDownload(id)).toMatchObject({
          status: 'failed', error: 'gave up', errorCode: 'CIDGET_ERR_ATTEMPTS_EXHAUSTED'
        })
      })

      it('markDownloadSuccess sets hash, size, currentSize = size, completedAt, and clears the error', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.updateDownloadResume(id, 10, 1, T0 + 1, 'in_progress')
        await store.markDownloadPaused(id, 'reset', 'CIDGET_ERR_STREAM_RESET')
        await store.markDownloadSuccess(id, 'ab'.repeat(32), 12345, T0 + 9)
        expect(await store.getDownload(id)).toMatchObject({
          status: 'success',
          hash: 'ab'.repeat(32),
          size: 12345,
          currentSize: 12345,
          completedAt: T0 + 9,
          updatedAt: T0 + 9,
          error: null,
          errorCode: null,
          attempts: 1
        })
      })
    })

    describe('status lifecycle', () => {
      it('pending → in_progress → resuming → paused → resuming → success', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        const statusOf = async (): Promise<string | undefined> => (await store.getDownload(id))?.status
        expect(await statusOf()).toBe('pending')
        await store.updateDownloadResume(id, 0, 1, T0 + 1, 'in_progress')
        expect(await statusOf()).toBe('in_progress')
        await store.markDownloadResuming(id)
        expect(await statusOf()).toBe('resuming')
        await store.markDownloadPaused(id, 'connection reset', 'CIDGET_ERR_STREAM_RESET')
        expect(await statusOf()).toBe('paused')
        await store.markDownloadResuming(id)
        expect(await statusOf()).toBe('resuming')
        await store.markDownloadSuccess(id, 'ab'.repeat(32), 100)
        expect(await store.getDownload(id)).toMatchObject({ status: 'success', error: null, currentSize: 100 })
      })

      it('cancelled is a status of its own', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.updateDownload(id, { status: 'cancelled', error: 'cancelled by user', errorCode: 'CIDGET_ERR_CANCELLED' })
        expect(await store.getDownload(id)).toMatchObject({ status: 'cancelled', errorCode: 'CIDGET_ERR_CANCELLED' })
        expect(await store.getDownloadsByStatus('cancelled')).toHaveLength(1)
      })

      it('refuses a status that does not exist', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        // @ts-expect-error an invalid status, as an untyped caller could pass
        await expect(store.updateDownload(id, { status: 'done' })).rejects.toThrow()
        // @ts-expect-error an invalid status
        await expect(store.updateDownloadResume(id, 1, 1, T0, 'done')).rejects.toThrow()
        expect((await store.getDownload(id))?.status).toBe('pending')
      })

      it('updatedAt moves on every write', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        const updatedAt = async (): Promise<number> => (await store.getDownload(id))!.updatedAt
        expect(await updatedAt()).toBe(T0)
        await store.updateDownload(id, { priority: 1 }, T0 + 10)
        expect(await updatedAt()).toBe(T0 + 10)
        await store.markDownloadSuccess(id, 'ab'.repeat(32), 1, T0 + 20)
        expect(await updatedAt()).toBe(T0 + 20)
        // Calls without `now` use the store's clock, which is far past T0.
        const calls: Array<() => Promise<unknown>> = [
          async () => await store.updateDownloadResume(id, 1, 1, T0, 'in_progress'),
          async () => await store.updateDownloadHash(id, 'cd'.repeat(32)),
          async () => await store.markDownloadResuming(id),
          async () => await store.markDownloadPaused(id, 'x'),
          async () => await store.markDownloadFailed(id, 'x', 'CIDGET_ERR_NETWORK')
        ]
        for (const call of calls) {
          await store.updateDownload(id, {}, T0)
          expect(await updatedAt()).toBe(T0)
          await call()
          expect(await updatedAt()).toBeGreaterThan(T0)
        }
        await store.claimLease(id, 'me:1:a', TTL, T0 + 30)
        expect(await updatedAt()).toBe(T0 + 30)
        await store.renewLease(id, 'me:1:a', TTL, T0 + 40)
        expect(await updatedAt()).toBe(T0 + 40)
      })
    })

    describe('leases', () => {
      const A = 'host-a:100:aaaa'
      const B = 'host-b:200:bbbb'

      it('a free lease is claimed, and a second owner is refused while it is valid', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        expect(await store.claimLease(id, A, TTL, T0)).toBe(true)
        expect(await store.getDownload(id)).toMatchObject({ leaseOwner: A, leaseExpires: T0 + TTL })
        expect(await store.claimLease(id, B, TTL, T0 + 1)).toBe(false)
        expect(await store.claimLease(id, B, TTL, T0 + TTL)).toBe(false) // expires at T0 + TTL, not before
        expect(await store.getDownload(id)).toMatchObject({ leaseOwner: A, leaseExpires: T0 + TTL })
      })

      it('an expired lease is taken over', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        expect(await store.claimLease(id, A, TTL, T0)).toBe(true)
        expect(await store.claimLease(id, B, TTL, T0 + TTL + 1)).toBe(true)
        expect(await store.getDownload(id)).toMatchObject({ leaseOwner: B, leaseExpires: T0 + 2 * TTL + 1 })
        expect(await store.claimLease(id, A, TTL, T0 + TTL + 2)).toBe(false)
      })

      it('the owner may claim again, which extends the lease', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        expect(await store.claimLease(id, A, TTL, T0)).toBe(true)
        expect(await store.claimLease(id, A, TTL, T0 + 5)).toBe(true)
        expect((await store.getDownload(id))?.leaseExpires).toBe(T0 + 5 + TTL)
      })

      it('renewLease extends only our own lease', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        expect(await store.renewLease(id, A, TTL, T0)).toBe(false) // nobody holds it
        await store.claimLease(id, A, TTL, T0)
        expect(await store.renewLease(id, B, TTL, T0 + 1)).toBe(false)
        expect((await store.getDownload(id))?.leaseExpires).toBe(T0 + TTL)
        expect(await store.renewLease(id, A, TTL, T0 + 10)).toBe(true)
        expect(await store.getDownload(id)).toMatchObject({ leaseOwner: A, leaseExpires: T0 + 10 + TTL })
        // Taken over after expiry: the old owner can no longer renew.
        await store.claimLease(id, B, TTL, T0 + 10 + TTL + 1)
        expect(await store.renewLease(id, A, TTL, T0 + 10 + TTL + 2)).toBe(false)
        expect((await store.getDownload(id))?.leaseOwner).toBe(B)
      })

      it('renewLease of a deleted download is false', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.claimLease(id, A, TTL, T0)
        await store.deleteDownload(id)
        expect(await store.renewLease(id, A, TTL, T0 + 1)).toBe(false)
      })

      it('releaseLease clears only our own lease', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.claimLease(id, A, TTL, T0)
        await store.releaseLease(id, B)
        expect(await store.getDownload(id)).toMatchObject({ leaseOwner: A, leaseExpires: T0 + TTL })
        await store.releaseLease(id, A)
        expect(await store.getDownload(id)).toMatchObject({ leaseOwner: null, leaseExpires: null })
        expect(await store.claimLease(id, B, TTL, T0 + 1)).toBe(true)
        await store.releaseLease(id + 1000, A) // unknown id: nothing to release
      })

      it('a lease held by a dead owner is taken over before it expires', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        const dead = `${DEAD}4242:dddd`
        expect(await store.claimLease(id, dead, TTL, T0)).toBe(true)
        expect(await store.claimLease(id, A, TTL, T0 + 1)).toBe(true)
        expect(await store.getDownload(id)).toMatchObject({ leaseOwner: A, leaseExpires: T0 + 1 + TTL })
      })

      it('listOrphaned lists active downloads whose lease is missing, expired or held by a dead owner', async () => {
        const make = async (status: 'pending' | 'in_progress' | 'resuming' | 'paused' | 'success', owner?: string,
          at = T0): Promise<number> => {
          const { id } = await store.createDownload(newDownload({ output: `/o/${Math.random()}` }), T0)
          await store.updateDownload(id, { status })
          if (owner !== undefined) await store.claimLease(id, owner, TTL, at)
          return id
        }
        const noLease = await make('in_progress')
        const live = await make('in_progress', A, T0 + 1000)
        const expired = await make('resuming', A, T0 - TTL - 1)
        const deadOwner = await make('resuming', `${DEAD}1:x`, T0 + 1000)
        await make('pending')
        await make('paused', A, T0 - TTL - 1)
        await make('success')
        const justValid = await make('in_progress', B, T0 - TTL) // expires exactly at T0: still valid

        const orphaned = (await store.listOrphaned(T0)).map(r => r.id)
        expect(orphaned).toEqual([noLease, expired, deadOwner])
        expect(orphaned).not.toContain(live)
        expect(orphaned).not.toContain(justValid)
        expect((await store.listOrphaned(T0 + 1)).map(r => r.id)).toEqual([noLease, expired, deadOwner, justValid])
      })

      it('claimLease of an unknown id is CIDGET_ERR_UNKNOWN_DOWNLOAD', async () => {
        await expectCode(store.claimLease(987654, A, TTL, T0), 'CIDGET_ERR_UNKNOWN_DOWNLOAD')
      })
    })

    describe('exclusive outputs and control requests', () => {
      it('createDownload with exclusiveOutput refuses a second unfinished download to the same output', async () => {
        const a = await store.createDownload(newDownload({ output: '/o/same' }), T0, { exclusiveOutput: true })
        await expect(store.createDownload(newDownload({ output: '/o/same' }), T0, { exclusiveOutput: true }))
          .rejects.toMatchObject({ code: 'CIDGET_ERR_OUTPUT_IN_USE' })
        // a finished one does not block the output
        await store.markDownloadFailed(a.id, 'gave up', 'CIDGET_ERR_NETWORK')
        const b = await store.createDownload(newDownload({ output: '/o/same' }), T0, { exclusiveOutput: true })
        expect(b.id).not.toBe(a.id)
        expect((await store.listDownloads()).filter(r => r.output === '/o/same')).toHaveLength(2)
      })

      it('stores and clears a control request', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        expect((await store.getDownload(id))?.control).toBeNull()
        await store.updateDownload(id, { control: 'pause' }, T0 + 1)
        expect((await store.getDownload(id))?.control).toBe('pause')
        await store.updateDownload(id, { control: null }, T0 + 2)
        expect((await store.getDownload(id))?.control).toBeNull()
      })
    })

    describe('counts', () => {
      it('counts downloads by status, every status present', async () => {
        const a = await store.createDownload(newDownload({ output: '/o/1' }), T0)
        await store.createDownload(newDownload({ output: '/o/2' }), T0)
        await store.markDownloadFailed(a.id, 'x', 'CIDGET_ERR_NETWORK')
        expect(await store.countByStatus()).toEqual({ pending: 1, in_progress: 0, resuming: 0, paused: 0, success: 0, failed: 1, cancelled: 0 })
      })
    })

    describe('verified progress', () => {
      it('saves the bitmap with currentSize, keeps blocks, and clears both', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        expect(await store.getProgress(id)).toBeUndefined()
        await store.saveProgress(id, new Uint8Array([0b101, 0xff]), 1234)
        expect(await store.getProgress(id)).toEqual(new Uint8Array([0b101, 0xff]))
        expect((await store.getDownload(id))?.currentSize).toBe(1234)
        await store.saveProgress(id, new Uint8Array([0xff, 0xff, 1]), 2000)
        expect(await store.getProgress(id)).toEqual(new Uint8Array([0xff, 0xff, 1]))
        await store.putBlock(id, 'bafyA', new Uint8Array([1, 2, 3]))
        await store.putBlock(id, 'bafyA', new Uint8Array([1, 2, 3]))
        await store.putBlock(id, 'bafyB', new Uint8Array([4]))
        const blocks = await store.getBlocks(id)
        expect([...blocks.keys()].sort()).toEqual(['bafyA', 'bafyB'])
        expect(blocks.get('bafyA')).toEqual(new Uint8Array([1, 2, 3]))
        // one by one: the CIDs alone, then a block's bytes when needed
        expect((await store.getBlockKeys(id)).sort()).toEqual(['bafyA', 'bafyB'])
        expect(await store.getBlock(id, 'bafyB')).toEqual(new Uint8Array([4]))
        expect(await store.getBlock(id, 'bafyC')).toBeUndefined()
        await store.clearProgress(id)
        expect(await store.getProgress(id)).toBeUndefined()
        expect((await store.getBlocks(id)).size).toBe(0)
        expect(await store.getBlockKeys(id)).toEqual([])
      })

      it('keeps several blocks in one write, once each', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.putBlock(id, 'bafyA', new Uint8Array([1, 2, 3]))
        await store.putBlocks(id, [])
        await store.putBlocks(id, [
          { cid: 'bafyA', bytes: new Uint8Array([1, 2, 3]) },
          { cid: 'bafyB', bytes: new Uint8Array([4]) },
          { cid: 'bafyB', bytes: new Uint8Array([4]) },
          { cid: 'bafyC', bytes: new Uint8Array(70_000).fill(7) }
        ])
        const blocks = await store.getBlocks(id)
        expect([...blocks.keys()].sort()).toEqual(['bafyA', 'bafyB', 'bafyC'])
        expect(blocks.get('bafyC')).toEqual(new Uint8Array(70_000).fill(7))
        const A = 'host-a:100:aaaa'
        expect(await store.claimLease(id, A, 60_000, T0)).toBe(true)
        await store.putBlocks(id, [{ cid: 'bafyD', bytes: new Uint8Array([5]) }], A)
        expect(await store.getBlock(id, 'bafyD')).toEqual(new Uint8Array([5]))
        await expect(store.putBlocks(999_999, [{ cid: 'bafyA', bytes: new Uint8Array([1]) }])).rejects.toMatchObject({ code: 'CIDGET_ERR_UNKNOWN_DOWNLOAD' })
      })

      it('the success record forgets the progress in the same write', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.saveProgress(id, new Uint8Array([0xff]), 8)
        await store.putBlock(id, 'bafyA', new Uint8Array([1]))
        await store.markDownloadSuccess(id, 'ab'.repeat(32), 8, T0 + 1)
        expect(await store.getProgress(id)).toBeUndefined()
        expect((await store.getBlocks(id)).size).toBe(0)
        expect(await store.getDownload(id)).toMatchObject({ status: 'success', currentSize: 8, size: 8 })
      })

      it('deleting a download deletes its progress', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        await store.saveProgress(id, new Uint8Array([1]), 1)
        await store.putBlock(id, 'bafyA', new Uint8Array([1]))
        await store.deleteDownload(id)
        expect(await store.getProgress(id)).toBeUndefined()
        expect((await store.getBlocks(id)).size).toBe(0)
      })

      it('saving progress for an unknown id is a coded error', async () => {
        await expect(store.saveProgress(999_999, new Uint8Array([1]), 1)).rejects.toMatchObject({ code: 'CIDGET_ERR_UNKNOWN_DOWNLOAD' })
        await expect(store.saveProgress(999_999, new Uint8Array([1]), 1, 'host-a:100:aaaa')).rejects.toMatchObject({ code: 'CIDGET_ERR_UNKNOWN_DOWNLOAD' })
      })

      it('progress saved for an owner is written only while that owner holds the lease', async () => {
        const A = 'host-a:100:aaaa'
        const B = 'host-b:200:bbbb'
        const { id } = await store.createDownload(newDownload(), T0)
        // nobody holds it
        await expect(store.saveProgress(id, new Uint8Array([1]), 10, A)).rejects.toMatchObject({ code: 'CIDGET_ERR_LEASE_HELD' })
        expect(await store.getProgress(id)).toBeUndefined()
        expect(await store.claimLease(id, A, TTL, T0)).toBe(true)
        await store.saveProgress(id, new Uint8Array([0b11]), 20, A)
        // A's lease ran out and B took the download over: A, still running, cannot overwrite B's progress
        expect(await store.claimLease(id, B, TTL, T0 + TTL + 1)).toBe(true)
        await store.saveProgress(id, new Uint8Array([0b1]), 10, B)
        await expect(store.saveProgress(id, new Uint8Array([0xff]), 2000, A)).rejects.toMatchObject({ code: 'CIDGET_ERR_LEASE_HELD' })
        expect(await store.getProgress(id)).toEqual(new Uint8Array([0b1]))
        expect((await store.getDownload(id))?.currentSize).toBe(10)
      })
    })

    describe('the queue: claimNext', () => {
      const A = 'host-a:100:aaaa'
      const B = 'host-b:200:bbbb'

      it('returns undefined when no download is claimable', async () => {
        expect(await store.claimNext(A, TTL, T0)).toBeUndefined()
        for (const status of ['paused', 'success', 'failed', 'cancelled'] as const) {
          const { id } = await store.createDownload(newDownload({ output: `/o/${status}` }), T0)
          await store.updateDownload(id, { status }, T0)
        }
        expect(await store.claimNext(A, TTL, T0)).toBeUndefined()
      })

      it('takes the highest priority first, then the oldest, and returns the record with its new lease', async () => {
        const made: Record<string, number> = {}
        for (const [name, priority] of [['a', 0], ['b', 5], ['c', 0], ['d', 5], ['e', -1]] as const) {
          made[name] = (await store.createDownload(newDownload({ output: `/o/${name}`, priority }), T0)).id
        }
        const order: number[] = []
        for (let i = 0; i < 5; i++) {
          const at = T0 + 10 + i
          const got = await store.claimNext(A, TTL, at)
          expect(got).toBeDefined()
          expect(got).toMatchObject({ status: 'pending', leaseOwner: A, leaseExpires: at + TTL, updatedAt: at })
          expect(await store.getDownload(got!.id)).toEqual(got)
          order.push(got!.id)
        }
        expect(order).toEqual([made.b, made.d, made.a, made.c, made.e])
        expect(await store.claimNext(A, TTL, T0 + 20)).toBeUndefined()
        expect(await store.claimNext(B, TTL, T0 + 20)).toBeUndefined()
      })

      it('takes lapsed leases (none, expired, dead owner) and never a valid one, even the caller\'s own', async () => {
        const make = async (status: 'pending' | 'in_progress' | 'resuming' | 'paused', owner?: string, at = T0): Promise<number> => {
          const { id } = await store.createDownload(newDownload({ output: `/o/${Math.random()}` }), T0)
          await store.updateDownload(id, { status }, T0)
          if (owner !== undefined) expect(await store.claimLease(id, owner, TTL, at)).toBe(true)
          return id
        }
        await make('pending', B, T0 + 1000) // held by a live owner
        await make('pending', A, T0 + 1000) // held by the caller: already its own
        const noLease = await make('in_progress')
        const expired = await make('resuming', B, T0 - TTL - 1)
        const deadOwner = await make('in_progress', `${DEAD}7:x`, T0 + 1000)
        await make('in_progress', B, T0 + 1000) // live
        const justValid = await make('resuming', B, T0 - TTL) // expires exactly at T0: still valid
        await make('paused')
        const expiredPending = await make('pending', B, T0 - TTL - 5)

        const claimed: number[] = []
        for (let r = await store.claimNext(A, TTL, T0); r !== undefined; r = await store.claimNext(A, TTL, T0)) {
          claimed.push(r.id)
          expect(r.leaseOwner).toBe(A)
        }
        // in claim order; the dead owner's row may come last (a store may look for dead owners only when nothing else is left)
        const inOrder = [noLease, expired, deadOwner, expiredPending]
        const deadLast = [noLease, expired, expiredPending, deadOwner]
        expect([inOrder, deadLast]).toContainEqual(claimed)
        // One millisecond later the lease that expired exactly at T0 has lapsed too.
        expect((await store.claimNext(A, TTL, T0 + 1))?.id).toBe(justValid)
        expect(await store.claimNext(A, TTL, T0 + 1)).toBeUndefined()
      })

      it('a claimed download is refused to other owners until its lease expires', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        expect((await store.claimNext(A, TTL, T0))?.id).toBe(id)
        expect(await store.claimLease(id, B, TTL, T0 + 1)).toBe(false)
        expect(await store.claimNext(B, TTL, T0 + 1)).toBeUndefined()
        expect((await store.claimNext(B, TTL, T0 + TTL + 1))?.id).toBe(id)
        expect(await store.renewLease(id, A, TTL, T0 + TTL + 2)).toBe(false)
      })

      it('markDownloadSuccess releases the lease in the same write', async () => {
        const { id } = await store.createDownload(newDownload(), T0)
        expect(await store.claimLease(id, A, TTL, T0)).toBe(true)
        await store.markDownloadSuccess(id, null, 10, T0 + 1)
        expect(await store.getDownload(id)).toMatchObject({ status: 'success', leaseOwner: null, leaseExpires: null })
      })

      it('takes a download a shutdown or a crash paused, never one a person paused or a full disk stopped', async () => {
        const byPerson = await store.createDownload(newDownload({ output: '/o/person' }), T0)
        await store.markDownloadPaused(byPerson.id, null, null)
        const diskFull = await store.createDownload(newDownload({ output: '/o/disk' }), T0)
        await store.markDownloadPaused(diskFull.id, 'No space left', 'CIDGET_ERR_DISK_FULL')
        const interrupted = await store.createDownload(newDownload({ output: '/o/interrupted' }), T0)
        await store.markDownloadPaused(interrupted.id, 'Interrupted: the process working on it stopped', 'CIDGET_ERR_INTERRUPTED')
        expect((await store.claimNext(A, TTL, T0))?.id).toBe(interrupted.id)
        expect(await store.claimNext(A, TTL, T0)).toBeUndefined()
      })

      it('with `under`, only downloads whose output starts with it (a worker\'s own directory)', async () => {
        const mine = await store.createDownload(newDownload({ output: '/fleet/a/x.bin' }), T0)
        await store.createDownload(newDownload({ output: '/fleet/ab/y.bin' }), T0)
        await store.createDownload(newDownload({ output: '/elsewhere/z.bin' }), T0)
        expect((await store.claimNext(A, TTL, T0, { under: '/fleet/a/' }))?.id).toBe(mine.id)
        expect(await store.claimNext(A, TTL, T0, { under: '/fleet/a/' })).toBeUndefined()
        expect((await store.claimNext(A, TTL, T0, { under: '/fleet/' }))?.output).toBe('/fleet/ab/y.bin')
        await expect(store.claimNext(A, TTL, T0, { under: '' })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION' })
      })

      it('concurrent callers never get the same download', async () => {
        const ids = (await store.createDownloads(Array.from({ length: 12 }, (_, i) =>
          newDownload({ output: `/o/${i}`, priority: i % 3 })), T0)).map(r => r.id)
        const results = await Promise.all(Array.from({ length: 30 }, async (_, i) => await store.claimNext(`host:${i}:t`, TTL, T0)))
        const claimed = results.filter(r => r !== undefined).map(r => r.id)
        expect(claimed).toHaveLength(12)
        expect([...claimed].sort((x, y) => x - y)).toEqual(ids)
        for (const r of results) {
          if (r !== undefined) expect((await store.getDownload(r.id))?.leaseOwner).toBe(r.leaseOwner)
        }
      })

      it('refuses a ttl that is not a positive number of milliseconds', async () => {
        await store.createDownload(newDownload(), T0)
        await expectCode(store.claimNext(A, 0, T0), 'CIDGET_ERR_BAD_OPTION')
        await expectCode(store.claimNext(A, Number.NaN, T0), 'CIDGET_ERR_BAD_OPTION')
        expect((await store.listDownloads())[0]?.leaseOwner).toBeNull()
      })
    })

    describe('createDownloads', () => {
      it('inserts thousands in one call and returns them in input order', async () => {
        const inits = Array.from({ length: 2500 }, (_, i) => newDownload({
          output: `/o/many/${i}`,
          priority: (i * 7) % 5,
          size: i % 2 === 0 ? null : 2 ** 33 + i,
          expectedSha256: i % 3 === 0 ? 'ab'.repeat(32) : null,
          gateways: i % 4 === 0 ? [] : [`https://g${i % 4}.example`]
        }))
        const records = await store.createDownloads(inits, T0)
        expect(records.map(r => r.output)).toEqual(inits.map(i => i.output))
        for (let i = 1; i < records.length; i++) expect(records[i]!.id).toBeGreaterThan(records[i - 1]!.id)
        for (const k of [0, 1, 2, 3, 1234, 2499]) {
          const init = inits[k]!
          expect(records[k]).toMatchObject({
            output: init.output,
            priority: init.priority,
            size: init.size,
            expectedSha256: init.expectedSha256,
            gateways: init.gateways,
            status: 'pending',
            attempts: 0,
            currentSize: 0,
            createdAt: T0,
            updatedAt: T0,
            leaseOwner: null
          })
          expect(await store.getDownload(records[k]!.id)).toEqual(records[k])
        }
        expect((await store.countByStatus()).pending).toBe(2500)
      })

      it('an empty list inserts nothing', async () => {
        expect(await store.createDownloads([], T0)).toEqual([])
        expect((await store.countByStatus()).pending).toBe(0)
      })

      it('with exclusiveOutput, an output an unfinished download writes to refuses the whole list', async () => {
        const running = await store.createDownload(newDownload({ output: '/o/taken' }), T0)
        const inits = [newDownload({ output: '/o/free-1' }), newDownload({ output: '/o/taken' }), newDownload({ output: '/o/free-2' })]
        await expect(store.createDownloads(inits, T0, { exclusiveOutput: true }))
          .rejects.toMatchObject({ code: 'CIDGET_ERR_OUTPUT_IN_USE', output: '/o/taken', message: expect.stringContaining(`Download ${running.id} `) })
        expect((await store.listDownloads()).map(r => r.output)).toEqual(['/o/taken'])
        // two of the list on one output
        await expect(store.createDownloads([newDownload({ output: '/o/twice' }), newDownload({ output: '/o/twice' })], T0, { exclusiveOutput: true }))
          .rejects.toMatchObject({ code: 'CIDGET_ERR_OUTPUT_IN_USE', output: '/o/twice' })
        // once the download has finished its output is free; without the option nothing is checked
        await store.markDownloadFailed(running.id, 'gave up', 'CIDGET_ERR_NETWORK')
        expect(await store.createDownloads(inits, T0, { exclusiveOutput: true })).toHaveLength(3)
        expect(await store.createDownloads([newDownload({ output: '/o/free-1' })], T0)).toHaveLength(1)
      })

      it('with exclusiveOutput, lists and single creations racing for one output: exactly one wins', async () => {
        const results = await Promise.allSettled([
          store.createDownloads([newDownload({ output: '/o/a' }), newDownload({ output: '/o/race' })], T0, { exclusiveOutput: true }),
          store.createDownload(newDownload({ output: '/o/race' }), T0, { exclusiveOutput: true }),
          store.createDownloads([newDownload({ output: '/o/race' }), newDownload({ output: '/o/b' })], T0, { exclusiveOutput: true })
        ])
        expect(results.filter(r => r.status === 'fulfilled')).toHaveLength(1)
        for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'CIDGET_ERR_OUTPUT_IN_USE' })
        expect((await store.listDownloads()).filter(r => r.output === '/o/race')).toHaveLength(1)
      })

      it('an invalid download refuses the whole list', async () => {
        const inits = [newDownload({ output: '/o/1' }), newDownload({ output: '/o/2', mode: 'bogus' as 'path' }), newDownload({ output: '/o/3' })]
        await expectCode(store.createDownloads(inits, T0), 'CIDGET_ERR_BAD_OPTION')
        expect(await store.listDownloads()).toEqual([])
      })
    })

    describe('unknown ids', () => {
      const unknown = 987654
      it('every single-download mutation rejects with CIDGET_ERR_UNKNOWN_DOWNLOAD', async () => {
        await expectCode(store.updateDownloadResume(unknown, 1, 1, T0, 'in_progress'), 'CIDGET_ERR_UNKNOWN_DOWNLOAD')
        await expectCode(store.updateDownloadHash(unknown, 'ab'), 'CIDGET_ERR_UNKNOWN_DOWNLOAD')
        await expectCode(store.markDownloadResuming(unknown), 'CIDGET_ERR_UNKNOWN_DOWNLOAD')
        await expectCode(store.markDownloadPaused(unknown, 'x'), 'CIDGET_ERR_UNKNOWN_DOWNLOAD')
        await expectCode(store.markDownloadFailed(unknown, 'x', 'CIDGET_ERR_NETWORK'), 'CIDGET_ERR_UNKNOWN_DOWNLOAD')
        await expectCode(store.markDownloadSuccess(unknown, 'ab', 1), 'CIDGET_ERR_UNKNOWN_DOWNLOAD')
        await expectCode(store.updateDownload(unknown, { priority: 1 }), 'CIDGET_ERR_UNKNOWN_DOWNLOAD')
        await expectCode(store.claimLease(unknown, 'h:1:t', TTL), 'CIDGET_ERR_UNKNOWN_DOWNLOAD')
      })
    })

    fencingContract(() => store)
  })
}
