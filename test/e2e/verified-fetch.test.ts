/**
 * Cross-check with a real peer client: @helia/verified-fetch, pointed at the same
 * local gateway, must produce the same bytes as cidget. It needs Node ≥ 22 and its
 * own install under bench/verified-fetch (see bench/README.md); `.ci/run` provides
 * both and sets CIDGET_NODE22 to the binary. Elsewhere the test is skipped, saying why.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { MemoryBlocks, addFile, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { runCli, lastRecord, sha256, KiB, MiB } from '../helpers.js'

const run = promisify(execFile)
const client = new URL('../../bench/verified-fetch/fetch.mjs', import.meta.url).pathname
const installed = existsSync(new URL('../../bench/verified-fetch/node_modules/@helia/verified-fetch', import.meta.url))
const major = Number(process.versions.node.split('.')[0])
const node = process.env.CIDGET_NODE22 ?? (major >= 22 ? process.execPath : undefined)
const why = !installed
  ? 'bench/verified-fetch is not installed (npm ci --prefix bench/verified-fetch)'
  : node === undefined ? 'no Node >= 22 to run @helia/verified-fetch (set CIDGET_NODE22)' : undefined
if (why !== undefined && process.env.CI === 'true') throw new Error(`the verified-fetch cross-check is required in CI: ${why}`)
if (why !== undefined) console.log(`skipping the @helia/verified-fetch cross-check: ${why}`)

let cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

describe.skipIf(why !== undefined)('@helia/verified-fetch cross-check', () => {
  it.each([
    ['a 3 MiB file, 256 KiB raw leaves', 3 * MiB, {}],
    ['a CIDv0 file with dag-pb leaves and 64 KiB chunks', MiB + 17, { cidVersion: 0 as const, rawLeaves: false, chunker: fixedSize({ chunkSize: 64 * KiB }) }]
  ])('%s: the same bytes from the same gateway', async (_name, size, opts) => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(size, size)
    const cid = (await addFile(blocks, data, opts)).toString()
    const gw: TestGateway = await startTestGateway({ blocks })
    const dir = await mkdtemp(join(tmpdir(), 'cidget-vf-'))
    cleanups.push(async () => { await gw.close(); await rm(dir, { recursive: true, force: true }) })

    await run(node as string, [client, gw.url, cid, join(dir, 'helia.bin')], { timeout: 120_000 })
    const r = await runCli(['get', cid, '-o', join(dir, 'cidget.bin'), '-g', gw.url, '--json'], { env: { HOME: dir, CIDGET_STATE: join(dir, 'state.db') } })
    expect(r.code, r.stderr).toBe(0)
    expect(lastRecord(r.stdout).status).toBe('success')
    const theirs = await readFile(join(dir, 'helia.bin'))
    const ours = await readFile(join(dir, 'cidget.bin'))
    expect(theirs.byteLength).toBe(size)
    expect(sha256(ours)).toBe(sha256(theirs))
    expect(sha256(ours)).toBe(sha256(data))
  }, 180_000)
})
