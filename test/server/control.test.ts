/**
 * Pause and cancel through the API of a download that another process holds:
 * the request goes through the state, and an answer comes within the
 * Downloader's `controlWaitMs` (16 s by default; milliseconds here).
 */
import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildServer } from '../../src/server/app.js'
import { world, progressReaches, KiB, type World } from '../helpers.js'

const TOKEN = 'control-token'
const HEADERS = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }

let w: World
let app: FastifyInstance | undefined
afterEach(async () => {
  await app?.close()
  app = undefined
  await w?.close()
})

describe('control of another process\'s download', () => {
  it('a pause the holder does not act on answers 409 CIDGET_ERR_LEASE_HELD after controlWaitMs', async () => {
    w = await world({ size: 512 * KiB })
    const dir = join(w.dir, 'downloads')
    // the holder never beats (an hour between heartbeats), so it never reads the pause request, and its lease stays valid
    const holder = await w.open({ now: () => Date.now(), heartbeatMs: 3_600_000, leaseMs: 3_600_000 })
    const service = await w.open({ now: () => Date.now(), controlWaitMs: 300 })
    app = await buildServer({ downloader: service, dir, token: TOKEN })
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 64 * KiB }, times: 1, match: { format: 'path' } })
    const job = await holder.add(w.cid, { mode: 'path', output: join(dir, 'held.bin') })
    await progressReaches(holder, job.id, 64 * KiB)

    const r = await app.inject({ method: 'POST', url: `/api/downloads/${job.id}/pause`, headers: HEADERS })
    expect(r.statusCode, r.body).toBe(409)
    expect(r.json()).toEqual({ error: { code: 'CIDGET_ERR_LEASE_HELD', message: expect.stringMatching(/did not act on the pause request/) } })
    // the holder still has it: nothing was taken over or written behind its back
    expect(await service.get(job.id)).toMatchObject({ status: 'in_progress', leaseOwner: holder.owner, control: 'pause' })
  })

  it('a pause the holder acts on at its next heartbeat answers 200 paused', async () => {
    w = await world({ size: 512 * KiB })
    const dir = join(w.dir, 'downloads')
    const holder = await w.open({ now: () => Date.now(), heartbeatMs: 20 })
    const service = await w.open({ now: () => Date.now(), controlWaitMs: 60_000 })
    app = await buildServer({ downloader: service, dir, token: TOKEN })
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 64 * KiB }, times: 1, match: { format: 'path' } })
    const job = await holder.add(w.cid, { mode: 'path', output: join(dir, 'held.bin') })
    await progressReaches(holder, job.id, 64 * KiB)

    const r = await app.inject({ method: 'POST', url: `/api/downloads/${job.id}/pause`, headers: HEADERS })
    expect(r.statusCode, r.body).toBe(200)
    expect(r.json()).toMatchObject({ id: job.id, status: 'paused', control: null })
    expect((await job.done).status).toBe('paused')
  })

  it('controlWaitMs is checked', async () => {
    w = await world({ size: KiB })
    await expect(w.open({ controlWaitMs: -1 })).rejects.toMatchObject({ code: 'CIDGET_ERR_BAD_OPTION' })
  })
})
