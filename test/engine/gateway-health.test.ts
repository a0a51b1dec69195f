/** Gateway health is the process's: a download does not ask a gateway another found failing until its back-off ends. */
import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
import { abortableSleep } from '../../src/core/async.js'
import { addFile, seededBytes } from '../../src/testing/index.js'
import { world, sha256, fileSha256, KiB, type World } from '../helpers.js'

let w: World | undefined
afterEach(async () => { await w?.close() })

describe('gateway health shared by the downloads of a process', () => {
  it('a second download does not ask the gateway the first found failing until its back-off ends', async () => {
    w = await world({ size: 1024 * KiB, gateways: 2 })
    const [bad, good] = w.gateways as [NonNullable<World['gateways'][0]>, NonNullable<World['gateways'][0]>]
    bad.addFault({ fault: { type: 'status', status: 503 } })
    // a real clock that the test can move on: back-offs last a minute, so only the test ends them
    let skew = 0
    const dl = await w.open({
      now: () => Date.now() + skew,
      sleep: undefined,
      initialBackoffMs: 60_000,
      maxBackoffMs: 60_000,
      backoffJitter: 0
    })
    const second = seededBytes(512 * KiB, 8)
    const secondCid = (await addFile(w.blocks, second)).toString()
    const third = seededBytes(512 * KiB, 9)
    const thirdCid = (await addFile(w.blocks, third)).toString()

    const first = await (await dl.add(w.cid, { output: join(w.dir, 'first') })).done
    expect(first.status).toBe('success')
    expect(await fileSha256(join(w.dir, 'first'))).toBe(w.sha)
    const askedByFirst = bad.requests.length
    expect(askedByFirst).toBeGreaterThan(0)

    const next = await (await dl.add(secondCid, { output: join(w.dir, 'second') })).done
    expect(next.status).toBe('success')
    expect(await fileSha256(join(w.dir, 'second'))).toBe(sha256(second))
    // backing off: not asked at all by the second download
    expect(bad.requests.length).toBe(askedByFirst)
    expect(good.requests.length).toBeGreaterThan(0)

    // once the back-off is over, the next download asks it again
    skew += 61_000
    const last = await (await dl.add(thirdCid, { output: join(w.dir, 'third') })).done
    expect(last.status).toBe('success')
    expect(bad.requests.length).toBeGreaterThan(askedByFirst)
  })

  it('path mode: a gateway that said Retry-After to one download is not asked by the next until then', async () => {
    w = await world({ size: 256 * KiB, gateways: 2 })
    const [bad, good] = w.gateways as [NonNullable<World['gateways'][0]>, NonNullable<World['gateways'][0]>]
    bad.addFault({ fault: { type: 'status', status: 503, retryAfter: 60 } })
    let skew = 0
    const dl = await w.open({ now: () => Date.now() + skew, sleep: undefined })
    const second = seededBytes(128 * KiB, 8)
    const secondCid = (await addFile(w.blocks, second)).toString()

    const first = await (await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'first') })).done
    expect(first.status).toBe('success')
    const askedByFirst = bad.requests.length
    expect(askedByFirst).toBeGreaterThan(0)

    const next = await (await dl.add(secondCid, { mode: 'path', output: join(w.dir, 'second') })).done
    expect(next.status).toBe('success')
    expect(await fileSha256(join(w.dir, 'second'))).toBe(sha256(second))
    expect(bad.requests.length).toBe(askedByFirst)
    expect(good.requests.length).toBeGreaterThan(0)

    skew += 61_000
    bad.clearFaults()
    const again = await (await dl.add(secondCid, { mode: 'path', output: join(w.dir, 'third') })).done
    expect(again.status).toBe('success')
    expect(bad.requests.length).toBeGreaterThan(askedByFirst)
  })

  it('path mode: a download whose every gateway another download set aside waits the time out before its first request', async () => {
    w = await world({ size: 256 * KiB, gateways: 2 })
    const [bad, good] = w.gateways as [NonNullable<World['gateways'][0]>, NonNullable<World['gateways'][0]>]
    bad.addFault({ fault: { type: 'status', status: 503, retryAfter: 60 }, times: 1 })
    // the second download's waits take no time: they move the clock on, and say what the gateway had received then
    let skew = 0
    let second = false
    const askedAtWait: number[] = []
    const dl = await w.open({
      now: () => Date.now() + skew,
      sleep: async (ms, signal) => {
        if (!second) return await abortableSleep(ms, signal)
        askedAtWait.push(bad.requests.length)
        skew += ms
      }
    })
    const waits: Array<{ id: number, action: string, delayMs: number, code: string }> = []
    dl.on('cidget:download:retry', (e) => { waits.push(e) })
    const bytes = seededBytes(128 * KiB, 8)
    const cid = (await addFile(w.blocks, bytes)).toString()

    const first = await (await dl.add(w.cid, { mode: 'path', output: join(w.dir, 'first') })).done
    expect(first.status).toBe('success')
    expect(good.requests.length).toBeGreaterThan(0)
    const askedByFirst = bad.requests.length

    // the next download may only use the gateway the first was told to leave alone for 60 s
    second = true
    const next = await dl.add(cid, { mode: 'path', output: join(w.dir, 'second'), gateways: [bad.url] })
    const done = await next.done
    expect(done.status).toBe('success')
    expect(await fileSha256(join(w.dir, 'second'))).toBe(sha256(bytes))
    const wait = waits.find((e) => e.id === next.id && e.action === 'wait')
    expect(wait).toBeDefined()
    expect(wait?.code).toBe('CIDGET_ERR_HTTP_STATUS')
    expect(wait?.delayMs).toBeGreaterThan(50_000)
    // it waited before asking: the gateway had only the first download's requests then
    expect(askedAtWait[0]).toBe(askedByFirst)
    expect(bad.requests.length).toBeGreaterThan(askedByFirst)
  })
})
