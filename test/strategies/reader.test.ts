/** The DAG reader's memory of kept blocks: fingerprints of their CIDs, never the bytes of another block. */
import { describe, it, expect } from 'vitest'
import { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import { sha256 } from 'multiformats/hashes/sha2'
import { DagReader, fingerprint, type BlockSource, type KeptBlocks } from '../../src/strategies/verified/reader.js'

/** Two dag-pb blocks whose CIDs share a fingerprint (found by trying: about 2^16 blocks). */
async function collidingBlocks (): Promise<Array<{ cid: CID, bytes: Uint8Array }>> {
  const seen = new Map<number, { cid: CID, bytes: Uint8Array }>()
  for (let i = 0; ; i++) {
    const bytes = dagPb.encode({ Data: new TextEncoder().encode(`node ${i}`), Links: [] })
    const cid = CID.createV1(dagPb.code, await sha256.digest(bytes))
    const print = fingerprint(cid.toString())
    const other = seen.get(print)
    if (other !== undefined) return [other, { cid, bytes }]
    seen.set(print, { cid, bytes })
  }
}

function memoryKept (): KeptBlocks & { kept: Map<string, Uint8Array> } {
  const kept = new Map<string, Uint8Array>()
  return {
    kept,
    keptBlockKeys: async () => new Set(kept.keys()),
    keptBlock: async (cid) => kept.get(cid),
    keepBlock: async (cid, bytes) => { kept.set(cid, bytes) }
  }
}

describe('DagReader', () => {
  it('a block whose CID shares a kept block\'s fingerprint is fetched, not read from the record', async () => {
    const [a, b] = await collidingBlocks() as [{ cid: CID, bytes: Uint8Array }, { cid: CID, bytes: Uint8Array }]
    expect(a.cid.equals(b.cid)).toBe(false)
    const fetched: string[] = []
    const source: BlockSource = {
      get: async (cid) => {
        fetched.push(cid.toString())
        if (cid.equals(b.cid)) return b.bytes
        throw new Error(`unexpected fetch of ${cid.toString()}`)
      }
    }
    // kept by an earlier run
    const journal = memoryKept()
    await journal.keepBlock(a.cid.toString(), a.bytes)
    const reader = await DagReader.open(journal, source, new AbortController().signal, 4)
    expect(await reader.get(a.cid)).toEqual(a.bytes)
    expect(reader.kept(b.cid)).toBe(true) // the fingerprint matches…
    expect(await reader.keptBytes(b.cid)).toBeUndefined() // …but the record has no such block
    expect(await reader.get(b.cid)).toEqual(b.bytes)
    expect(fetched).toEqual([b.cid.toString()])
  })

  it('a block kept after another that shares its fingerprint is kept too, and read back', async () => {
    const [a, b] = await collidingBlocks() as [{ cid: CID, bytes: Uint8Array }, { cid: CID, bytes: Uint8Array }]
    const journal = memoryKept()
    const reader = await DagReader.open(journal, { get: async () => { throw new Error('no fetch expected') } }, new AbortController().signal, 4)
    await reader.keep(a.cid, a.bytes)
    await reader.keep(b.cid, b.bytes)
    expect([...journal.kept.keys()].sort()).toEqual([a.cid.toString(), b.cid.toString()].sort())
    const again = await DagReader.open(journal, { get: async () => { throw new Error('no fetch expected') } }, new AbortController().signal, 4)
    expect(await again.keptBytes(b.cid)).toEqual(b.bytes)
    expect(await again.keptBytes(a.cid)).toEqual(a.bytes)
  })

  it('keeps each inner block once and reads it back without a request', async () => {
    const bytes = dagPb.encode({ Data: new Uint8Array([8, 1]), Links: [] })
    const cid = CID.createV1(dagPb.code, await sha256.digest(bytes))
    const journal = memoryKept()
    const reader = await DagReader.open(journal, { get: async () => { throw new Error('no fetch expected') } }, new AbortController().signal, 4)
    expect(reader.kept(cid)).toBe(false)
    await reader.keep(cid, bytes)
    await reader.keep(cid, bytes)
    expect([...journal.kept.keys()]).toEqual([cid.toString()])
    expect(await reader.get(cid)).toEqual(bytes)
    // a new reader (a resume) knows it from the record
    const again = await DagReader.open(journal, { get: async () => { throw new Error('no fetch expected') } }, new AbortController().signal, 4)
    expect(again.kept(cid)).toBe(true)
    expect(await again.get(cid)).toEqual(bytes)
  })
})
