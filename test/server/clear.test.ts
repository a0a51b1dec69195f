/**
 * Clearing the records of downloads that ended, through `POST
 * /api/downloads/clear` (and `clearDownloads`, which `cidget rm --finished`
 * and `--failed` call): a real Downloader, a real SQLite state, test gateways
 * on loopback.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { access, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildServer } from '../../src/server/app.js'
import type { Downloader } from '../../src/engine/downloader.js'
import { partialPath } from '../../src/sink/partial.js'
import { startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { world, fileSha256, KiB, type World } from '../helpers.js'
import type { DownloadRecord } from '../../src/core/types.js'

const TOKEN = 'test-token-0123456789'
const HEADERS = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

let w: World
let dl: Downloader
let app: FastifyInstance
let slow: TestGateway

beforeAll(async () => {
  w = await world({ size: 256 * KiB })
  // a gateway so slow that its downloads are still running when they are paused or cancelled
  slow = await startTestGateway({ blocks: w.blocks, maxBytesPerSecond: 1024 })
  dl = await w.open({ now: () => Date.now(), concurrency: 8 })
  app = await buildServer({ downloader: dl, dir: w.dir, token: TOKEN })
})
afterAll(async () => {
  await app.close()
  await slow.close()
  await w.close()
})

const exists = async (p: string): Promise<boolean> => await access(p).then(() => true, () => false)

describe('POST /api/downloads/clear', () => {
  it('removes the records of finished downloads, keeping their files; then failed and cancelled ones with their partial data; never a paused one', async () => {
    const done = await (await dl.add(w.cid, { output: join(w.dir, 'done.bin') })).done
    expect(done.status).toBe('success')
    const failed = await (await dl.add(w.cid, { output: join(w.dir, 'failed.bin'), sha256: '0'.repeat(64) })).done
    expect(failed.status).toBe('failed')
    const cancelled = await dl.add(w.cid, { output: join(w.dir, 'cancelled.bin'), gateways: [slow.url] })
    expect((await dl.cancel(cancelled.id)).status).toBe('cancelled')
    const paused = await dl.add(w.cid, { output: join(w.dir, 'paused.bin'), gateways: [slow.url] })
    expect((await dl.pause(paused.id)).status).toBe('paused')
    // a partial beside the failed download's output, as a run that was cut leaves one
    await writeFile(partialPath(failed.output), 'partial')

    const finished = await app.inject({ method: 'POST', url: '/api/downloads/clear', headers: HEADERS, payload: { status: ['success'] } })
    expect(finished.statusCode, finished.body).toBe(200)
    expect(finished.json()).toEqual({ removed: [done.id], skipped: [] })
    expect(await dl.get(done.id)).toBeUndefined()
    expect(await fileSha256(done.output)).toBe(w.sha)

    const rest = await app.inject({ method: 'POST', url: '/api/downloads/clear', headers: HEADERS, payload: { status: ['failed', 'cancelled'] } })
    expect(rest.json()).toEqual({ removed: [failed.id, cancelled.id], skipped: [] })
    expect(await exists(partialPath(failed.output))).toBe(false)
    expect((await dl.list()).map(r => [r.id, r.status])).toEqual([[paused.id, 'paused']])
  })

  it('leaves a download resumed after it was listed, and reports one another process holds instead of hiding it', async () => {
    const again = await (await dl.add(w.cid, { output: join(w.dir, 'again.bin'), sha256: '0'.repeat(64) })).done
    const held = await (await dl.add(w.cid, { output: join(w.dir, 'held.bin'), sha256: '0'.repeat(64) })).done
    expect([again.status, held.status]).toEqual(['failed', 'failed'])
    // another process works on `held`: its lease is live
    expect(await dl.store.claimLease(held.id, 'elsewhere:1', 60_000, Date.now())).toBe(true)
    // `again` is resumed between the list and its removal, as a user's click on Retry could
    const list = dl.list.bind(dl)
    let resumed: Promise<DownloadRecord> | undefined
    dl.list = async (opts) => {
      const page = await list(opts)
      if (resumed === undefined && page.some(r => r.id === again.id)) resumed = (await dl.resume(again.id)).done
      return page
    }
    try {
      const r = await app.inject({ method: 'POST', url: '/api/downloads/clear', headers: HEADERS, payload: { status: ['failed'] } })
      const body = r.json() as { removed: number[], skipped: Array<{ id: number, code: string }> }
      expect(body.removed).toEqual([])
      expect(body.skipped).toEqual([expect.objectContaining({ id: held.id, code: 'CIDGET_ERR_LEASE_HELD' })])
    } finally {
      dl.list = list
    }
    // the resumed download ran to its end (a wrong SHA-256 again), not cancelled by the clear
    expect((await resumed)?.status).toBe('failed')
    expect(await dl.get(again.id)).toBeDefined()
    expect(await dl.get(held.id)).toBeDefined()
  })

  it('refuses a status that is not an end, an empty list and other fields (400), and asks for the token (401)', async () => {
    for (const payload of [{ status: ['paused'] }, { status: [] }, { status: ['success'], all: true }, {}]) {
      const r = await app.inject({ method: 'POST', url: '/api/downloads/clear', headers: HEADERS, payload })
      expect(r.statusCode, JSON.stringify(payload)).toBe(400)
    }
    const r = await app.inject({ method: 'POST', url: '/api/downloads/clear', headers: { 'content-type': 'application/json' }, payload: { status: ['success'] } })
    expect(r.statusCode).toBe(401)
  })
})
