/**
 * A tree stream cut by SIGKILL: a real `cidget get` child process downloads
 * a tree of 3,000 small files and two multi-MiB files from a throttled test
 * gateway, as one CAR of the whole DAG (`dag-scope=all`), and is killed in
 * the middle of that stream (held open past half of the tree), once the state
 * has recorded part of the tree; `cidget resume --all` then completes it.
 *
 * What is checked: every file's bytes; and that nothing recorded as written
 * before the kill crosses the wire again. The state's progress bitmap numbers
 * the blocks the walk writes in its order: here, where every file is one or
 * more raw leaves of its own (no inline data in file nodes, no content twice),
 * block i is the i-th raw leaf of a depth-first walk of the DAG in link order.
 * So the bitmap read from the state right after the kill names the CIDs that
 * were recorded; after the resume, every raw block request and every block a
 * CAR answer carried (its `carBlocks`, even the part a cut stream did not
 * deliver) must be outside that set. A resume that started the tree stream
 * from its root again, or asked for the recorded files one by one, fails it.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import { MemoryBlocks, addDirectory, seededBytes, startTestGateway, type RequestRecord, type TestGateway } from '../../src/testing/index.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import { Bitmap } from '../../src/strategies/verified/bitmap.js'
import { CLI, KiB, MiB, sha256, within } from '../helpers.js'

/** The gateway's cap: the tree's 8 MiB take about two seconds. */
const RATE = 4 * MiB

let cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

/** A block's identity whatever the CID's version or base: its multihash. */
const key = (cid: CID): string => Buffer.from(cid.multihash.bytes).toString('hex')

/** The raw leaves of the DAG of `root`, in the walk's order (depth-first, links in order): the walk's block numbers. */
function leavesInOrder (blocks: MemoryBlocks, root: CID, out: CID[] = []): CID[] {
  if (root.code === rawCodec.code) {
    out.push(root)
    return out
  }
  const node = dagPb.decode(blocks.get(root))
  const fs = UnixFS.unmarshal(node.Data ?? new Uint8Array())
  // a file node's own data would take a block number of its own: the tree is built without any
  if (fs.type === 'file') expect(fs.data?.byteLength ?? 0).toBe(0)
  for (const link of node.Links) leavesInOrder(blocks, link.Hash, out)
  return out
}

/** Bytes of every block of the DAG of `root` (each once): about what a CAR of it carries. */
function dagBytes (blocks: MemoryBlocks, root: CID, seen = new Set<string>()): number {
  if (seen.has(root.toString())) return 0
  seen.add(root.toString())
  const bytes = blocks.get(root)
  if (root.code !== dagPb.code) return bytes.byteLength
  return dagPb.decode(bytes).Links.reduce((n, l) => n + dagBytes(blocks, l.Hash, seen), bytes.byteLength)
}

/** Resolves once every request the gateway has seen has ended (the killed client's included). */
async function quiet (gw: TestGateway): Promise<void> {
  while (gw.requests.some(r => r.endedAt === null)) await once(gw, 'response')
}

/** The blocks a gateway's answers carried: raw answers by the CID asked for, CAR answers by the blocks they list. */
function sentKeys (records: RequestRecord[]): string[] {
  return records.filter(r => r.status === 200).flatMap(r => {
    if (r.format === 'raw') return [r.path.split('/')[2]!]
    if (r.format === 'car') return r.carBlocks ?? []
    return []
  }).map(c => key(CID.parse(c)))
}

describe('a tree stream cut by SIGKILL', () => {
  it('the resume completes the tree and fetches nothing recorded before the kill', async () => {
    const blocks = new MemoryBlocks()
    const entries: Array<{ path: string, content: Uint8Array }> = []
    // in the walk's order: a multi-MiB file, 3,000 small files, another multi-MiB file
    entries.push({ path: '0/one.bin', content: seededBytes(3 * MiB, 90_001) })
    for (const d of ['a', 'b', 'c']) {
      for (let i = 0; i < 1_000; i++) entries.push({ path: `${d}/f${i}.txt`, content: seededBytes(512 + (i % 7) * 100, entries.length + 1) })
    }
    entries.push({ path: 'z/two.bin', content: seededBytes(2 * MiB + 5, 90_002) })
    const root = await addDirectory(blocks, entries)
    const leaves = leavesInOrder(blocks, root)
    expect(new Set(leaves.map(key)).size).toBe(leaves.length) // no content twice: one number per block

    const gw = await startTestGateway({ blocks, maxBytesPerSecond: RATE })
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-kill-'))
    cleanups.push(async () => {
      await gw.close()
      await rm(dir, { recursive: true, force: true })
    })
    for (const d of ['home', 'tmp', 'work']) await mkdir(join(dir, d))
    const state = join(dir, 'state.db')
    const output = join(dir, 'work', 'tree')
    // the children see none of the caller's CIDGET_* settings; progress is recorded often
    const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CIDGET_')))
    Object.assign(env, {
      HOME: join(dir, 'home'),
      TMPDIR: join(dir, 'tmp'),
      CIDGET_STATE: state,
      CIDGET_SYNC_INTERVAL_BYTES: String(64 * KiB),
      CIDGET_SYNC_INTERVAL_MS: '50',
      CIDGET_INITIAL_BACKOFF_MS: '20',
      CIDGET_HEDGE_AFTER_MS: '0',
      CIDGET_TIMEOUT_MS: '60000'
    })
    const run = (args: string[]): { pid: number, closed: Promise<{ code: number | null, signal: NodeJS.Signals | null, stderr: string }> } => {
      const child = spawn(process.execPath, [CLI, ...args], { env, cwd: join(dir, 'work'), stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      return { pid: child.pid as number, closed: new Promise(resolve => child.on('close', (code, signal) => resolve({ code, signal, stderr }))) }
    }

    /** The blocks the state records as written, by key; empty before the child recorded any. */
    const recorded = async (): Promise<Set<string>> => {
      const store = SqliteStore.open(state)
      try {
        const record = await store.findDownload(root.toString(), '', output)
        const bytes = record === undefined ? undefined : await store.getProgress(record.id)
        const bitmap = new Bitmap(bytes)
        expect(bitmap.last()).toBeLessThan(leaves.length)
        return new Set(leaves.filter((_, i) => bitmap.has(i)).map(key))
      } finally {
        await store.close()
      }
    }

    // killed while the tree's CAR is on its way and the state records part of the tree: the CAR stalls
    // past half of the tree (once; the client waits for it: no hedging, a long timeout), so however slow
    // the walk is on a loaded machine, it cannot have ended when the state records the 100th block
    gw.addFault({ fault: { type: 'stall', afterBytes: Math.floor(dagBytes(blocks, root) * 0.55) }, match: { format: 'car', query: { 'dag-scope': 'all' } }, times: 1 })
    const first = run(['get', root.toString(), '-o', output, '-g', gw.url, '-q'])
    let ended: Error | undefined
    void first.closed.then(r => { ended = new Error(`the first run ended before the kill: exit ${String(r.code)}\n${r.stderr}`) })
    await within(60_000, (async () => {
      while ((await recorded()).size < 100) {
        if (ended !== undefined) throw ended
        await new Promise(resolve => setTimeout(resolve, 20)) // the state is read again: no event tells a record
      }
    })(), 'the state has not recorded 100 blocks')
    process.kill(first.pid, 'SIGKILL')
    const killed = await first.closed
    expect(killed.signal).toBe('SIGKILL')
    await quiet(gw)
    // the kill cut the tree's stream
    const trees = gw.requests.filter(r => r.format === 'car' && r.url.includes('dag-scope=all'))
    expect(trees).toHaveLength(1)
    expect(trees[0]).toMatchObject({ fault: 'stall', aborted: true })
    const before = await recorded()
    expect(before.size).toBeGreaterThanOrEqual(100)
    expect(before.size).toBeLessThan(leaves.length)

    const mark = gw.requests.length
    const resumed = await run(['resume', '--all', '-q']).closed
    expect(resumed.code, resumed.stderr).toBe(0)
    const files = (await readdir(output, { recursive: true, withFileTypes: true })).filter(e => e.isFile())
    expect(files).toHaveLength(entries.length)
    for (const e of entries) {
      const got = await readFile(join(output, e.path))
      expect(got.byteLength, e.path).toBe(e.content.byteLength)
      expect(sha256(got), e.path).toBe(sha256(e.content))
    }
    const again = sentKeys(gw.requests.slice(mark))
    const resumedTrees = gw.requests.slice(mark).filter(r => r.format === 'car' && r.url.includes('dag-scope=all')).length
    console.log(`tree-kill: ${before.size} of ${leaves.length} blocks recorded at the kill; the resume fetched ${again.length} (${resumedTrees} tree streams)`)
    // the resume did fetch what was missing (the test would say nothing otherwise)…
    expect(again.length).toBeGreaterThan(0)
    // …and none of what was recorded
    const refetched = again.filter(k => before.has(k))
    expect(refetched.length, `${refetched.length} of the ${before.size} blocks recorded before the kill were fetched again`).toBe(0)
  }, 120_000)
})
