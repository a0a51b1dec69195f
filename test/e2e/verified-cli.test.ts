/** Verified mode through the CLI: the default for CIDs, directories, crash and resume at block granularity. */
import { describe, it, expect, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { CarReader } from '@ipld/car'
import type { CID } from 'multiformats/cid'
import type { DownloadRecord } from '../../src/core/types.js'
import { MemoryBlocks, addFile, addDirectory, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import { verifyBlock } from '../../src/gateways/block.js'
import { runCli, lastRecord, sha256, CLI, KiB, MiB } from '../helpers.js'

let cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

async function serve (blocks: MemoryBlocks, n = 1): Promise<{ gateways: TestGateway[], dir: string, env: NodeJS.ProcessEnv, args: string[] }> {
  const gateways: TestGateway[] = []
  for (let i = 0; i < n; i++) gateways.push(await startTestGateway({ blocks }))
  const dir = await mkdtemp(join(tmpdir(), 'cidget-vcli-'))
  cleanups.push(async () => {
    for (const g of gateways) await g.close()
    await rm(dir, { recursive: true, force: true })
  })
  const env = { HOME: dir, CIDGET_STATE: join(dir, 'state.db'), CIDGET_INITIAL_BACKOFF_MS: '10', CIDGET_HEDGE_AFTER_MS: '0' }
  return { gateways, dir, env, args: gateways.flatMap(g => ['-g', g.url]) }
}

/** The leaves of a one-level file DAG, in order. */
function leaves (blocks: MemoryBlocks, root: CID): CID[] {
  return dagPb.decode(blocks.get(root)).Links.map(l => l.Hash)
}

/** Waits until the state file records `bytes` durable bytes for download 1 (the child process writes it). */
async function durable (state: string, bytes: number): Promise<void> {
  const store = SqliteStore.open(state)
  try {
    for (let i = 0; i < 500; i++) {
      if (((await store.getDownload(1))?.currentSize ?? 0) >= bytes) return
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    throw new Error(`download 1 never recorded ${bytes} durable bytes`)
  } finally {
    await store.close()
  }
}

/**
 * `cidget get ROOT …output` one block request at a time, the 11th leaf stalling: SIGKILLed once the
 * root and ten leaves are recorded as durable, then `resume --all`. Every block, the root included,
 * must cross the wire once (the stalled leaf is asked twice). Returns the resumed run's record.
 */
async function killedAfterTenLeaves (s: Awaited<ReturnType<typeof serve>>, blocks: MemoryBlocks, root: CID, output: string[]): Promise<DownloadRecord> {
  const leafCids = leaves(blocks, root)
  const stalled = `/ipfs/${leafCids[10]!.toString()}`
  s.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: stalled } })
  const env = { ...s.env, CIDGET_BLOCK_CONCURRENCY: '1', CIDGET_RUN_BLOCKS: '0', CIDGET_SYNC_INTERVAL_BYTES: '1' }
  const child = spawn(process.execPath, [CLI, 'get', root.toString(), ...output, ...s.args, '-q'], { env: { ...process.env, ...env }, stdio: 'ignore' })
  const closed = new Promise(resolve => child.on('close', resolve))
  await durable(s.env.CIDGET_STATE as string, 10 * 256 * KiB)
  child.kill('SIGKILL')
  await closed
  const r = await runCli(['resume', '--all', '--json'], { env })
  expect(r.code, r.stderr).toBe(0)
  const fetched = s.gateways[0]!.requests.filter(q => q.status === 200 && !q.aborted).map(q => q.path)
  expect(fetched.sort()).toEqual([root, ...leafCids].map(c => `/ipfs/${c.toString()}`).sort())
  expect(s.gateways[0]!.requests.filter(q => q.path === stalled)).toHaveLength(2)
  return lastRecord(r.stdout)
}

describe('cidget get (verified, the default)', () => {
  it('checks every block against the CID and survives a gateway that lies', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(3 * MiB, 5)
    const cid = await addFile(blocks, data)
    const s = await serve(blocks, 2)
    s.gateways[0]!.addFault({ fault: { type: 'wrong-block' } })
    const out = join(s.dir, 'file.bin')
    const r = await runCli(['get', cid.toString(), '-o', out, ...s.args, '--json'], { env: s.env })
    expect(r.code, r.stderr).toBe(0)
    const rec = lastRecord(r.stdout)
    expect(rec).toMatchObject({ status: 'success', mode: 'verified', size: 3 * MiB, hash: sha256(data) })
    expect(sha256(await readFile(out))).toBe(sha256(data))
    expect(s.gateways.flatMap(g => g.requests).every(q => q.format === 'raw' || q.format === 'car')).toBe(true)
  })

  it('hashes a large file on the worker thread of the bundled CLI', async () => {
    // 16 MiB and more: the SHA-256 is computed by the worker (dist/sink/hash-worker.js) as blocks arrive
    const blocks = new MemoryBlocks()
    const data = seededBytes(17 * MiB + 3, 21)
    const cid = await addFile(blocks, data)
    const s = await serve(blocks)
    const out = join(s.dir, 'large.bin')
    const r = await runCli(['get', cid.toString(), '-o', out, ...s.args, '--json'], { env: s.env })
    expect(r.code, r.stderr).toBe(0)
    expect(lastRecord(r.stdout)).toMatchObject({ status: 'success', size: 17 * MiB + 3, hash: sha256(data) })
    // started with a V8 flag of the user's (which a worker thread refuses in its execArgv): the same
    const flagged = await new Promise<{ code: number | null, stdout: string, stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--max-semi-space-size=8', CLI, 'get', cid.toString(), '-o', join(s.dir, 'again.bin'), ...s.args, '--json'],
        { env: { ...process.env, ...s.env }, stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      child.on('close', (code) => { resolve({ code, stdout, stderr }) })
    })
    expect(flagged.code, flagged.stderr).toBe(0)
    expect(lastRecord(flagged.stdout)).toMatchObject({ status: 'success', hash: sha256(data) })
  })

  it('writes a directory tree', async () => {
    const blocks = new MemoryBlocks()
    const root = await addDirectory(blocks, [
      { path: 'a.txt', content: new TextEncoder().encode('a') },
      { path: 'sub/b.bin', content: seededBytes(300 * KiB) },
      { path: 'void' }
    ])
    const s = await serve(blocks)
    const r = await runCli(['get', `/ipfs/${root.toString()}`, '-o', join(s.dir, 'tree'), ...s.args], { env: s.env })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/every block verified/)
    expect((await readdir(join(s.dir, 'tree'), { recursive: true })).sort()).toEqual(['a.txt', 'sub', 'sub/b.bin', 'void'])
  })

  it('--car writes the verified blocks as a CAR file', async () => {
    const blocks = new MemoryBlocks()
    const root = await addFile(blocks, seededBytes(MiB, 3))
    const s = await serve(blocks)
    const car = join(s.dir, 'out.car')
    const r = await runCli(['get', root.toString(), '--car', car, ...s.args, '--json'], { env: s.env })
    expect(r.code, r.stderr).toBe(0)
    expect(lastRecord(r.stdout)).toMatchObject({ status: 'success', mode: 'car', output: car })
    const reader = await CarReader.fromBytes(await readFile(car))
    expect((await reader.getRoots()).map(c => c.toString())).toEqual([root.toString()])
    let n = 0
    for await (const block of reader.blocks()) { expect(block.bytes.byteLength).toBeGreaterThan(0); n++ }
    expect(n).toBe(1 + leaves(blocks, root).length)
    const both = await runCli(['get', root.toString(), '--car', car, '-o', car], { env: s.env })
    expect(both.code).toBe(2)
    expect(both.stderr).toMatch(/--car names the output file/)
  })

  it('a download killed with SIGKILL resumes with resume --all, and no durable block is fetched again', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(4 * MiB, 8)
    const root = await addFile(blocks, data)
    expect(leaves(blocks, root)).toHaveLength(16)
    const s = await serve(blocks)
    const out = join(s.dir, 'file.bin')
    expect((await killedAfterTenLeaves(s, blocks, root, ['-o', out])).status).toBe('success')
    expect(sha256(await readFile(out))).toBe(sha256(data))
  })

  it('--car killed with SIGKILL resumes with resume --all into one whole CAR, and no durable block is fetched again', async () => {
    const blocks = new MemoryBlocks()
    const root = await addFile(blocks, seededBytes(4 * MiB, 12))
    const s = await serve(blocks)
    const car = join(s.dir, 'out.car')
    const rec = await killedAfterTenLeaves(s, blocks, root, ['--car', car])
    expect(rec).toMatchObject({ status: 'success', mode: 'car', output: car })
    // the CAR: rooted at the file, every block once, depth-first, each hashing to its CID, no byte between them
    const bytes = await readFile(car)
    expect(rec.hash).toBe(sha256(bytes))
    const reader = await CarReader.fromBytes(bytes)
    expect((await reader.getRoots()).map(c => c.toString())).toEqual([root.toString()])
    const inCar: string[] = []
    for await (const block of reader.blocks()) {
      await verifyBlock(block.cid, block.bytes)
      inCar.push(block.cid.toString())
    }
    expect(inCar).toEqual([root, ...leaves(blocks, root)].map(c => c.toString()))
  })

  it('killed with SIGKILL in the middle of a CAR run: resume --all asks only for the leaves not yet durable', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(4 * MiB, 9)
    const root = await addFile(blocks, data)
    const leafCids = leaves(blocks, root)
    const s = await serve(blocks)
    // the one run of 16 leaves stalls after ten whole leaves (and its own node, and the CAR framing)
    s.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 10 * 256 * KiB + 2000 }, times: 1, match: { format: 'car' } })
    const env = { ...s.env, CIDGET_SYNC_INTERVAL_BYTES: '1' }
    const out = join(s.dir, 'file.bin')
    const child = spawn(process.execPath, [CLI, 'get', root.toString(), '-o', out, ...s.args, '-q'], { env: { ...process.env, ...env }, stdio: 'ignore' })
    const closed = new Promise(resolve => child.on('close', resolve))
    await durable(s.env.CIDGET_STATE as string, 10 * 256 * KiB)
    child.kill('SIGKILL')
    await closed
    const before = s.gateways[0]!.requests.length
    const r = await runCli(['resume', '--all', '--json'], { env })
    expect(r.code, r.stderr).toBe(0)
    expect(lastRecord(r.stdout).status).toBe('success')
    expect(sha256(await readFile(out))).toBe(sha256(data))
    const after = s.gateways[0]!.requests.slice(before).filter(q => q.status === 200)
    // one CAR of the six leaves left, by their byte range; the root was kept in the state, so it travels only as that CAR's own node
    expect(after.map(q => q.url.replace(/^.*\?/, ''))).toEqual([`format=car&dag-scope=entity&entity-bytes=${10 * 256 * KiB}:${4 * MiB - 1}`])
    expect(after[0]!.carBlocks).toEqual([root, ...leafCids.slice(10)].map(c => c.toString()))
  })

  it('Ctrl-C pauses (exit 3); get again continues without refetching what was written', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(2 * MiB, 12)
    const root = await addFile(blocks, data)
    const leafCids = leaves(blocks, root)
    const s = await serve(blocks)
    s.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 0 }, times: 1, match: { path: `/ipfs/${leafCids[5]!.toString()}` } })
    const env = { ...s.env, CIDGET_BLOCK_CONCURRENCY: '1', CIDGET_RUN_BLOCKS: '0' }
    const out = join(s.dir, 'file.bin')
    const args = ['get', root.toString(), '-o', out, ...s.args, '--json']
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'ignore'] })
    let stdout = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    const closed = new Promise<number | null>(resolve => child.on('close', code => resolve(code)))
    await new Promise<void>(resolve => {
      const on = (q: { path: string }): void => {
        if (q.path === `/ipfs/${leafCids[5]!.toString()}`) { s.gateways[0]!.off('request', on); resolve() }
      }
      s.gateways[0]!.on('request', on)
    })
    child.kill('SIGINT')
    expect(await closed).toBe(3)
    const paused = lastRecord(stdout)
    expect(paused).toMatchObject({ status: 'paused', currentSize: 5 * 256 * KiB })
    const again = await runCli(args, { env })
    expect(again.code, again.stderr).toBe(0)
    expect(sha256(await readFile(out))).toBe(sha256(data))
    const completed = s.gateways[0]!.requests.filter(q => q.status === 200 && !q.aborted).map(q => q.path)
    expect(new Set(completed).size).toBe(completed.length)
    expect(completed).toHaveLength(9)
  })
})
