import { describe, it, expect } from 'vitest'
import { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { RunPlanner, type PlannedLeaf } from '../../src/strategies/verified/runs.js'
import type { RunRange } from '../../src/gateways/car.js'

const LEAF = 256 * 1024

async function leaves (count: number): Promise<PlannedLeaf[]> {
  const out: PlannedLeaf[] = []
  for (let i = 0; i < count; i++) {
    const cid = CID.createV1(rawCodec.code, await sha256.digest(Uint8Array.of(i & 0xff, i >> 8)))
    out.push({ index: i, cid, offset: i * LEAF, size: LEAF, parent: 0 })
  }
  return out
}

/** The runs a planner starts for `count` leaves of one node when the walk goes through them all. */
async function plan (count: number, runBlocks: number, spread: number | undefined): Promise<Array<{ range: RunRange, leaves: number }>> {
  const started: Array<{ range: RunRange, leaves: number }> = []
  const planner = new RunPlanner({
    runBlocks,
    ...(spread === undefined ? {} : { spread }),
    window: runBlocks * 4,
    isDone: () => false,
    start: (_entity, range, leaves) => { started.push({ range, leaves: leaves.length }); return true }
  })
  const all = await leaves(count)
  planner.add((all[0] as PlannedLeaf).cid, all)
  for (let current = 0; current < count; current++) planner.advance(current)
  return started
}

describe('RunPlanner', () => {
  it('asks for every leaf once, in runs of consecutive bytes', async () => {
    for (const spread of [undefined, 1, 3, 4]) {
      const runs = await plan(150, 16, spread)
      expect(runs.reduce((n, r) => n + r.leaves, 0)).toBe(150)
      let next = 0
      for (const r of runs) {
        expect(r.range.from).toBe(next)
        expect(r.range.to - r.range.from + 1).toBe(r.leaves * LEAF)
        next = r.range.to + 1
      }
    }
  })

  it('one gateway: full runs to the end', async () => {
    expect((await plan(150, 16, 1)).map(r => r.leaves)).toEqual([16, 16, 16, 16, 16, 16, 16, 16, 16, 6])
  })

  it('four gateways: the last leaves are shared out in shorter runs, none shorter than two leaves', async () => {
    const sizes = (await plan(150, 16, 4)).map(r => r.leaves)
    expect(sizes.slice(0, 6)).toEqual([16, 16, 16, 16, 16, 16])
    // from 54 leaves left on, each run takes ceil(left / 4): the last ones are short, like the
    // small pieces a download splits its end into, so that a gateway that is done takes the next
    expect(sizes.slice(6)).toEqual([14, 10, 8, 6, 4, 3, 3, 2, 2, 2])
    expect(Math.min(...sizes)).toBeGreaterThanOrEqual(2)
  })

  it('a node\'s children: runs of consecutive raw leaves within the window, none over done or withheld leaves, up to the first inner node', async () => {
    const all = await leaves(40)
    const children = all.map(l => l.cid)
    // child 30 is an inner node: the block numbers after it are not known yet
    const inner = CID.createV1(0x70, (all[30] as PlannedLeaf).cid.multihash)
    children[30] = inner
    const started: Array<{ from: number, count: number }> = []
    const planner = new RunPlanner({
      runBlocks: 4,
      window: 16,
      isDone: () => false,
      start: (_entity, range, run) => { started.push({ from: range.from / LEAF, count: run.length }); return true }
    })
    // leaf 5 is done, leaf 9 comes another way
    const leaf = (j: number): PlannedLeaf | undefined => j === 5 || j === 9 ? undefined : all[j]
    expect(planner.startChildren(inner, children, 0, 0, leaf)).toBe(16)
    expect(started).toEqual([{ from: 0, count: 4 }, { from: 6, count: 3 }, { from: 10, count: 4 }, { from: 14, count: 2 }])
    expect(planner.startChildren(inner, children, 20, 16, leaf)).toBe(30)
    expect(started.slice(4)).toEqual([{ from: 16, count: 4 }, { from: 20, count: 4 }, { from: 24, count: 4 }, { from: 28, count: 2 }])
  })

  it('a source that cannot start a node\'s run stops those runs, not the registered ones', async () => {
    const all = await leaves(8)
    let calls = 0
    const planner = new RunPlanner({ runBlocks: 4, window: 8, isDone: () => false, start: () => { calls++; return false } })
    expect(planner.startChildren(all[0]!.cid, all.map(l => l.cid), 0, 0, (j) => all[j])).toBe(4)
    expect(calls).toBe(1)
    expect(planner.children).toBe(false)
    expect(planner.enabled).toBe(true)
  })
})
