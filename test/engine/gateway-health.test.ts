/** Gateway health is the process's: a download does not ask a gateway another found failing until its back-off ends. */
import { describe, it, expect, afterEach } from 'vitest'
import { join } from 'node:path'
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
})
