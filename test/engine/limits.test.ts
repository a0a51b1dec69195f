/**
 * Bandwidth limits in the engine and the service's API, on the real clock: a
 * download held to 16 KiB/s (1 MiB would take a minute) finishes once its
 * limit is lifted while it runs, whether the limit is the process's or its
 * own; the API sets both. What the limit lets through per second is measured
 * by the benchmark (bench/limits.ts), not asserted here.
 */
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { abortableSleep } from '../../src/core/async.js'
import type { DownloadRecord } from '../../src/core/types.js'
import type { Downloader } from '../../src/engine/downloader.js'
import { buildServer } from '../../src/server/app.js'
import { once } from 'node:events'
import { world, sha256, KiB, MiB, type World } from '../helpers.js'

const TOKEN = 'test-token-0123456789'
const HEADERS = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
/** 1 KiB/s: the requests in flight would sleep minutes for what they hold, unless the lift wakes them */
const SLOW = KiB

describe('bandwidth limits', () => {
  let w: World
  let dl: Downloader | undefined
  let n = 0
  beforeAll(async () => { w = await world({ size: MiB, seed: 31 }) })
  afterEach(async () => { await dl?.close(); dl = undefined })
  afterAll(async () => { await w.close() })
  const realTime = { now: Date.now, sleep: abortableSleep }
  /** Resolves when the gateway has sent body bytes (the download is under way, held back by its limit). */
  const sending = async (): Promise<void> => { await once(w.gateways[0]!, 'progress') }

  it('the process\'s limit holds a download back until it is lifted while it runs', async () => {
    dl = await w.open({ ...realTime, limitRate: SLOW, runBlocks: 0 })
    expect(dl.limitRate).toBe(SLOW)
    const started = sending()
    const job = await dl.add(w.cid, { output: join(w.dir, `p${++n}.bin`) })
    await started
    expect((await dl.get(job.id))?.status).not.toBe('success')
    dl.setLimitRate(undefined)
    const rec = await job.done
    expect(rec.status).toBe('success')
    expect(sha256(await readFile(rec.output))).toBe(w.sha)
  })

  it('a download\'s own limit is recorded with it, and lifted while it runs', async () => {
    dl = await w.open(realTime)
    const started = sending()
    const job = await dl.add(w.cid, { output: join(w.dir, `o${++n}.bin`), limitRate: SLOW })
    expect((await dl.get(job.id))?.limitRate).toBe(SLOW)
    await started
    expect((await dl.get(job.id))?.status).not.toBe('success')
    const changed = await dl.setDownloadLimit(job.id, null)
    expect(changed.limitRate).toBeNull()
    const rec = await job.done
    expect(rec.status).toBe('success')
    expect(sha256(await readFile(rec.output))).toBe(w.sha)
  })

  it('refuses a limit that is not a whole number of bytes per second', async () => {
    dl = await w.open(realTime)
    expect(() => dl?.setLimitRate(0.5)).toThrow(/limitRate/)
    await expect(w.open({ limitRate: -1 })).rejects.toThrow(/limitRate/)
  })

  describe('through the API', () => {
    let app: FastifyInstance
    let api: Downloader
    beforeAll(async () => {
      api = await w.open(realTime)
      app = await buildServer({ downloader: api, dir: w.dir, token: TOKEN })
    })
    afterAll(async () => { await app.close() })

    it('POST /api/downloads takes limitRate (curl\'s syntax); POST …/limit changes it while the download runs', async () => {
      const started = sending()
      const res = await app.inject({ method: 'POST', url: '/api/downloads', headers: HEADERS, payload: { target: w.cid, output: `a${++n}.bin`, limitRate: '1K' } })
      expect(res.statusCode, res.body).toBe(201)
      const added = res.json<DownloadRecord>()
      expect(added.limitRate).toBe(SLOW)
      await started
      expect((await api.get(added.id))?.status).not.toBe('success')
      const lifted = await app.inject({ method: 'POST', url: `/api/downloads/${added.id}/limit`, headers: HEADERS, payload: { limitRate: null } })
      expect(lifted.statusCode, lifted.body).toBe(200)
      expect(lifted.json<DownloadRecord>().limitRate).toBeNull()
      let rec = added
      for (let i = 0; i < 1500 && rec.status !== 'success' && rec.status !== 'failed'; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20))
        rec = (await app.inject({ url: `/api/downloads/${added.id}`, headers: { authorization: HEADERS.authorization } })).json<DownloadRecord>()
      }
      expect(rec.status).toBe('success')
      expect(sha256(await readFile(rec.output))).toBe(w.sha)
    })

    it('GET and PUT /api/limit: the process\'s limit, shared by its downloads; a bad rate is a 400', async () => {
      const auth = { authorization: HEADERS.authorization }
      expect((await app.inject({ url: '/api/limit', headers: auth })).json()).toEqual({ limitRate: null })
      const set = await app.inject({ method: 'PUT', url: '/api/limit', headers: HEADERS, payload: { limitRate: '2M' } })
      expect(set.json()).toEqual({ limitRate: 2 * MiB })
      expect(api.limitRate).toBe(2 * MiB)
      const bad = await app.inject({ method: 'PUT', url: '/api/limit', headers: HEADERS, payload: { limitRate: 'fast' } })
      expect(bad.statusCode).toBe(400)
      const off = await app.inject({ method: 'PUT', url: '/api/limit', headers: HEADERS, payload: { limitRate: 0 } })
      expect(off.json()).toEqual({ limitRate: null })
      const noType = await app.inject({ method: 'PUT', url: '/api/limit', headers: auth, payload: '{"limitRate":null}' })
      expect(noType.statusCode).toBe(415)
    })
  })
})
