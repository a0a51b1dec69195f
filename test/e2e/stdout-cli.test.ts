/**
 * `cidget get FILE -o -`: the verified bytes in order on standard output,
 * piped into a hashing child process; a gateway that resets mid-body or sends
 * a wrong block, deep DAGs, dag-pb leaves; nothing on disk or in the state;
 * the flags it cannot go with are usage errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced, trickle } from 'ipfs-unixfs-importer/layout'
import { MemoryBlocks, addDirectory, addFile, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { CLI, childEnv, runCli, sha256, KiB, MiB } from '../helpers.js'

/** cidget's standard output piped into a child process that hashes it (as `| sha256sum` would), and what each printed. */
async function pipeToHash (args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null, hash: string, bytes: number, stderr: string }> {
  const cidget = spawn(process.execPath, [CLI, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
  const hasher = spawn(process.execPath, ['-e', `
    const h = require('node:crypto').createHash('sha256'); let n = 0
    process.stdin.on('data', (d) => { h.update(d); n += d.length })
    process.stdin.on('end', () => process.stdout.write(JSON.stringify({ hash: h.digest('hex'), bytes: n })))`], { stdio: ['pipe', 'pipe', 'inherit'] })
  cidget.stdout.pipe(hasher.stdin)
  let stderr = ''
  let result = ''
  cidget.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  hasher.stdout.on('data', (d: Buffer) => { result += d.toString() })
  const [code] = await Promise.all([
    new Promise<number | null>((resolve) => cidget.on('close', resolve)),
    new Promise((resolve) => hasher.on('close', resolve))
  ])
  const { hash, bytes } = JSON.parse(result) as { hash: string, bytes: number }
  return { code, hash, bytes, stderr }
}

describe('cidget get -o - (standard output)', () => {
  let gw: TestGateway
  let other: TestGateway
  let dir: string
  let env: NodeJS.ProcessEnv
  const big = seededBytes(3 * MiB + 12_345, 21)
  const small = seededBytes(40 * KiB, 22)
  let bigCid: string
  let deepCid: string
  let trickleCid: string
  let pbLeavesCid: string
  let treeCid: string

  beforeAll(async () => {
    const blocks = new MemoryBlocks()
    bigCid = (await addFile(blocks, big)).toString()
    // 1 KiB leaves, at most 4 links per node: a DAG three levels deep
    deepCid = (await addFile(blocks, small, { chunker: fixedSize({ chunkSize: 1024 }), layout: balanced({ maxChildrenPerNode: 4 }) })).toString()
    // a trickle DAG: leaves at every level, inner nodes between them
    trickleCid = (await addFile(blocks, small, { chunker: fixedSize({ chunkSize: 1024 }), layout: trickle({ maxChildrenPerNode: 4, layerRepeat: 2 }) })).toString()
    // leaves as dag-pb nodes (no raw leaves), as older importers made them
    pbLeavesCid = (await addFile(blocks, small, { rawLeaves: false, chunker: fixedSize({ chunkSize: 4096 }) })).toString()
    treeCid = (await addDirectory(blocks, [{ path: 'a.bin', content: small }])).toString()
    ;[gw, other] = await Promise.all([startTestGateway({ blocks }), startTestGateway({ blocks })])
    dir = await mkdtemp(join(tmpdir(), 'cidget-stdout-'))
    env = { HOME: dir, CIDGET_ROUTERS: '' }
  })
  afterAll(async () => {
    await Promise.all([gw.close(), other.close()])
    await rm(dir, { recursive: true, force: true })
  })

  it('writes the file\'s bytes in order to a pipe, progress and summary on stderr; nothing on disk, no state', async () => {
    const r = await pipeToHash(['get', bigCid, '-o', '-', '-g', gw.url], env)
    expect(r.code).toBe(0)
    expect(r.bytes).toBe(big.byteLength)
    expect(r.hash).toBe(sha256(big))
    expect(r.stderr).toContain(`to standard output (sha256 ${sha256(big)}`)
    expect(existsSync(join(dir, '.cidget'))).toBe(false)
    expect(await readdir(dir)).toEqual([])
  })

  it('a gateway that resets mid-body, and one that sends a wrong block: the pipe still carries every byte exactly once', async () => {
    gw.setFaults([{ fault: { type: 'reset', afterBytes: 300 * KiB }, times: 3 }])
    other.setFaults([{ fault: { type: 'wrong-block' }, times: 2 }])
    try {
      const r = await pipeToHash(['get', bigCid, '-o', '-', '-g', gw.url, '-g', other.url], env)
      expect(r.code).toBe(0)
      expect(r.bytes).toBe(big.byteLength)
      expect(r.hash).toBe(sha256(big))
      expect(gw.requests.some((q) => q.fault === 'reset')).toBe(true)
      expect(other.requests.some((q) => q.fault === 'wrong-block')).toBe(true)
    } finally {
      gw.clearFaults()
      other.clearFaults()
    }
  })

  it('a deep DAG, a trickle DAG and dag-pb leaves come out in order', async () => {
    for (const cid of [deepCid, trickleCid, pbLeavesCid]) {
      const r = await pipeToHash(['get', cid, '-o', '-', '-g', gw.url, '-q'], env)
      expect(r.code).toBe(0)
      expect(r.hash).toBe(sha256(small))
      expect(r.stderr).toBe('')
    }
  })

  it('a file inside a directory by its path; a directory itself is a usage error', async () => {
    const ok = await pipeToHash(['get', `/ipfs/${treeCid}/a.bin`, '-o', '-', '-g', gw.url], env)
    expect(ok.code).toBe(0)
    expect(ok.hash).toBe(sha256(small))
    const r = await runCli(['get', treeCid, '-o', '-', '-g', gw.url], { env })
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(/is a directory: -o - writes one file.*\[CIDGET_ERR_BAD_OPTION\]/)
  })

  it('--json, --mode path, --mode car and --car are usage errors, and nothing reaches stdout', async () => {
    for (const extra of [['--json'], ['--mode', 'path'], ['--mode', 'car'], ['--car', join(dir, 'x.car')]]) {
      const r = await runCli(['get', bigCid, '-o', '-', '-g', gw.url, ...extra], { env })
      expect(r.code).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toContain('CIDGET_ERR_BAD_OPTION')
    }
  })

  it('a reader that stops early (| head -c): cidget ends quietly, without a stack trace', async () => {
    const cidget = spawn(process.execPath, [CLI, 'get', bigCid, '-o', '-', '-g', gw.url], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    cidget.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    cidget.stdout.once('data', () => { cidget.stdout.destroy() })
    const code = await new Promise<number | null>((resolve) => cidget.on('close', resolve))
    expect(code).toBe(1)
    expect(stderr).not.toMatch(/EPIPE|\n\s+at /)
  })
})
