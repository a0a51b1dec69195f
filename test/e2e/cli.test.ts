/**
 * The CLI as a user runs it: a real child process, real gateways on loopback,
 * a real SQLite state file, exit codes and bytes on disk.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { spawn, execFileSync } from 'node:child_process'
import { mkdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { world, runCli, lastRecord, fileSha256, skipUnlessCi, MiB, KiB, CLI, type World, pathRequests } from '../helpers.js'
import { partialPath, exists } from '../../src/sink/partial.js'
import { MemoryBlocks, addDirectory, startTestGateway, type Fault } from '../../src/testing/index.js'
import type { DownloadRecord } from '../../src/core/types.js'

let w: World
afterEach(async () => { await w?.close() })

function env (): NodeJS.ProcessEnv {
  return { HOME: w.dir, CIDGET_STATE: w.state, CIDGET_INITIAL_BACKOFF_MS: '20', CIDGET_TIMEOUT_MS: '1000' }
}

/** Gateways, and path mode: these tests are about the Range-based strategy. */
function gatewayArgs (): string[] {
  return [...w.gateways.flatMap(g => ['-g', g.url]), '--mode', 'path']
}

/** Tries to mount a tmpfs; returns a reason when it cannot. */
function mountTmpfs (dir: string, size: string, ro = false): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}${ro ? ',ro' : ''}`, 'tmpfs', dir], { stdio: 'pipe' })
    return undefined
  } catch (err) {
    return (err as Error).message.split('\n')[0]
  }
}

describe('cidget get', () => {
  it('downloads a file and prints the record as JSON', async () => {
    w = await world({ size: 3 * MiB })
    const out = join(w.dir, 'file.bin')
    const r = await runCli(['get', w.cid, '-o', out, ...gatewayArgs(), '--json'], { env: env() })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const rec = lastRecord(r.stdout)
    expect(rec).toMatchObject({ cid: w.cid, status: 'success', currentSize: 3 * MiB, size: 3 * MiB, attempts: 1, hash: w.sha, output: out, error: null })
    expect(await fileSha256(out)).toBe(w.sha)
    // a second run finds it done and fetches nothing
    const again = await runCli(['get', w.cid, '-o', out, ...gatewayArgs(), '--json'], { env: env() })
    expect(again.code).toBe(0)
    expect(lastRecord(again.stdout).id).toBe(rec.id)
    expect(pathRequests(w.gateways[0]!)).toHaveLength(1)
  })

  const faults: Array<[string, Fault[]]> = [
    ['resets', [{ type: 'reset', afterBytes: 5 * MiB }]],
    ['stalls', [{ type: 'stall', afterBytes: 5 * MiB }]],
    ['ignores Range', [{ type: 'reset', afterBytes: 5 * MiB }, { type: 'ignore-range' }]],
    ['answers 416', [{ type: 'reset', afterBytes: 5 * MiB }, { type: 'range-not-satisfiable' }]],
    ['answers 503 with Retry-After', [{ type: 'status', status: 503, retryAfter: 1 }]],
    ['corrupts bytes', [{ type: 'flip', atByte: 3 * MiB }]]
  ]
  for (const [name, list] of faults) {
    it(`gets the right bytes through a gateway that ${name} (with --sha256 and a second gateway)`, async () => {
      w = await world({ size: 8 * MiB, gateways: 2 })
      w.gateways[0]!.setFaults(list.map(fault => ({ fault, times: 1 })))
      const out = join(w.dir, 'file.bin')
      const r = await runCli(['get', w.cid, '-o', out, ...gatewayArgs(), '--sha256', w.sha, '--json'], { env: env() })
      expect(r.code, r.stderr).toBe(0)
      expect(lastRecord(r.stdout).status).toBe('success')
      expect(await fileSha256(out)).toBe(w.sha)
      expect(pathRequests(w.gateways[0]!)[0]!.fault).not.toBeNull()
    })
  }

  it('Ctrl-C pauses cleanly (exit 3) and running get again resumes the same download', async () => {
    w = await world({ size: 4 * MiB })
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 1 * MiB }, times: 1 })
    const out = join(w.dir, 'file.bin')
    const child = spawn(process.execPath, [CLI, 'get', w.cid, '-o', out, ...gatewayArgs(), '--json'], { env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    await new Promise<void>(resolve => {
      const on = (): void => {
        if (w.gateways[0]!.bytesSent(r => r.format === 'path') >= MiB) { w.gateways[0]!.off('progress', on); resolve() }
      }
      w.gateways[0]!.on('progress', on)
    })
    // the stall holds the download at 1 MiB: interrupt it there
    const closed = new Promise<number | null>(resolve => child.on('close', code => resolve(code)))
    child.kill('SIGINT')
    const code = await closed
    const paused = lastRecord(stdout)
    expect(code).toBe(3)
    expect(paused.status).toBe('paused')
    expect(await exists(partialPath(out))).toBe(true)
    expect((await stat(partialPath(out))).size).toBe(paused.currentSize)
    const again = await runCli(['get', w.cid, '-o', out, ...gatewayArgs(), '--json'], { env: env() })
    expect(again.code).toBe(0)
    const rec = lastRecord(again.stdout)
    expect(rec.id).toBe(paused.id)
    expect(pathRequests(w.gateways[0]!).at(-1)!.range).toBe(paused.currentSize > 0 ? `bytes=${paused.currentSize}-` : null)
    expect(await fileSha256(out)).toBe(w.sha)
  })
})

describe('crash and takeover', () => {
  it('a download killed with SIGKILL is completed by resume --all, re-sending at most one write window', async () => {
    const window = 512 * KiB
    w = await world({ size: 6 * MiB, maxBytesPerSecond: 3 * MiB })
    const out = join(w.dir, 'file.bin')
    const child = spawn(process.execPath, [CLI, 'get', w.cid, '-o', out, ...gatewayArgs(), '-q'], {
      env: { ...process.env, ...env(), CIDGET_SYNC_INTERVAL_BYTES: String(window) }, stdio: 'ignore'
    })
    await new Promise<void>(resolve => {
      const on = (): void => {
        if (w.gateways[0]!.bytesSent(r => r.format === 'path') >= 3 * MiB) { w.gateways[0]!.off('progress', on); resolve() }
      }
      w.gateways[0]!.on('progress', on)
    })
    child.kill('SIGKILL')
    await new Promise(resolve => child.on('close', resolve))
    const before = await runCli(['status', '1', '--json'], { env: env() })
    const crashed = lastRecord(before.stdout)
    expect(['in_progress', 'resuming']).toContain(crashed.status)
    expect(crashed.currentSize).toBeGreaterThan(0)
    // what the killed run wrote, recorded or not: the file is checked against the CID, so a resume continues from it
    const onDisk = (await stat(partialPath(out))).size
    expect(onDisk).toBeGreaterThanOrEqual(crashed.currentSize)
    const r = await runCli(['resume', '--all', '--json'], { env: env() })
    expect(r.code, r.stderr).toBe(0)
    const rec = lastRecord(r.stdout)
    expect(rec.status).toBe('success')
    expect(await fileSha256(out)).toBe(w.sha)
    // it continued from the bytes on disk, and the re-sent bytes fit in one write window
    expect(pathRequests(w.gateways[0]!).at(-1)!.range).toBe(`bytes=${onDisk}-`)
    expect(w.gateways[0]!.bytesSent(r => r.format === 'path')).toBeLessThanOrEqual(6 * MiB + window + 256 * KiB)
  })

  it('two processes on one state file never download the same record at once', async () => {
    w = await world({ size: 4 * MiB, maxBytesPerSecond: 8 * MiB })
    const out = join(w.dir, 'file.bin')
    const args = ['get', w.cid, '-o', out, ...gatewayArgs(), '--json']
    const [a, b] = await Promise.all([runCli(args, { env: env() }), runCli(args, { env: env() })])
    const codes = [a.code, b.code].sort()
    expect(codes, a.stderr + b.stderr).toEqual([0, 1])
    const loser = a.code === 1 ? a : b
    expect(loser.stderr).toMatch(/another process.*\[CIDGET_ERR_LEASE_HELD\]/)
    expect(w.gateways[0]!.bytesSent(r => r.format === 'path')).toBe(4 * MiB)
    expect(await fileSha256(out)).toBe(w.sha)
  })

  it('two resume --all processes share paused downloads without overlap', async () => {
    w = await world({ size: 2 * MiB, maxBytesPerSecond: 16 * MiB })
    const lib = await w.open({ concurrency: 1 })
    const outs: string[] = []
    for (let i = 0; i < 4; i++) {
      const out = join(w.dir, `f${i}.bin`)
      outs.push(out)
      const job = await lib.add(w.cid, { mode: 'path', output: out })
      await lib.pause(job.id)
    }
    await lib.close()
    const [a, b] = await Promise.all([runCli(['resume', '--all', '--json'], { env: env() }), runCli(['resume', '--all', '--json'], { env: env() })])
    expect(a.code, a.stderr).toBe(0)
    expect(b.code, b.stderr).toBe(0)
    const ids = [...a.stdout.trim().split('\n'), ...b.stdout.trim().split('\n')].filter(l => l !== '').map(l => (JSON.parse(l) as DownloadRecord).id)
    expect(ids.sort()).toEqual([1, 2, 3, 4])
    for (const out of outs) expect(await fileSha256(out)).toBe(w.sha)
    // each of the four files crossed the wire once
    expect(w.gateways[0]!.bytesSent(r => r.format === 'path')).toBe(4 * 2 * MiB)
  })
})

describe('disk full', () => {
  it('a full tmpfs pauses the download (exit 3) and keeps the partial; resume completes it after space is freed', async (ctx) => {
    w = await world({ size: 4 * MiB })
    const mnt = join(w.dir, 'small')
    await mkdir(mnt)
    const why = mountTmpfs(mnt, '2m')
    if (why !== undefined) {
      skipUnlessCi(ctx, `cannot mount a tmpfs here (${why})`)
      return
    }
    try {
      w.gateways[0]!.addFault({ fault: { type: 'no-length' }, times: 1 })
      const out = join(mnt, 'file.bin')
      const r = await runCli(['get', w.cid, '-o', out, ...gatewayArgs(), '--json'], { env: env() })
      expect(r.code).toBe(3)
      const rec = lastRecord(r.stdout)
      expect(rec).toMatchObject({ status: 'paused', errorCode: 'CIDGET_ERR_DISK_FULL' })
      expect(rec.currentSize).toBeGreaterThan(0)
      expect((await stat(partialPath(out))).size).toBeGreaterThanOrEqual(rec.currentSize)
      expect(await exists(out)).toBe(false)
      execFileSync('mount', ['-o', 'remount,size=16m', mnt])
      const again = await runCli(['resume', String(rec.id), '--json'], { env: env() })
      expect(again.code, again.stderr).toBe(0)
      expect(await fileSha256(out)).toBe(w.sha)
    } finally {
      execFileSync('umount', ['-l', mnt])
    }
  })

  it('refuses to start when the known size does not fit (exit 3, nothing written)', async (ctx) => {
    w = await world({ size: 4 * MiB })
    const mnt = join(w.dir, 'tiny')
    await mkdir(mnt)
    const why = mountTmpfs(mnt, '1m')
    if (why !== undefined) {
      skipUnlessCi(ctx, `cannot mount a tmpfs here (${why})`)
      return
    }
    try {
      const r = await runCli(['get', w.cid, '-o', join(mnt, 'f.bin'), ...gatewayArgs()], { env: env() })
      expect(r.code).toBe(3)
      expect(r.stderr).toMatch(/Not enough space.*bytes needed/)
      expect((await stat(partialPath(join(mnt, 'f.bin')))).size).toBe(0)
    } finally {
      execFileSync('umount', ['-l', mnt])
    }
  })
})

describe('bad input: one clear line and the documented exit code', () => {
  it.each([
    [['get', 'not-a-cid'], 2, /^cidget: Invalid target "not-a-cid".*\[CIDGET_ERR_BAD_TARGET\]$/],
    [['get', '/ipfs/bafy'], 2, /Invalid target.*\[CIDGET_ERR_BAD_TARGET\]$/],
    [['frobnicate'], 2, /unknown command 'frobnicate'/],
    [[], 2, /^Usage: cidget/],
    [['get'], 2, /missing required argument 'target'/],
    [['get', 'bafkqaaa', '--timeout', 'soon'], 2, /--timeout.*must be an integer/],
    [['get', 'bafkqaaa', '--sha256', 'xyz'], 2, /--sha256 must be 64 hex digits.*\[CIDGET_ERR_BAD_OPTION\]$/],
    [['get', 'bafkqaaa', '--mode', 'fast'], 2, /--mode must be verified, path or car/],
    [['get', 'bafkqaaa', '-g', 'ftp://x'], 2, /must be http or https.*\[CIDGET_ERR_BAD_OPTION\]$/],
    [['status', 'abc'], 2, /not a download id/],
    [['status', '42'], 2, /No download with id 42.*\[CIDGET_ERR_UNKNOWN_DOWNLOAD\]$/],
    [['resume'], 2, /Give either a download id or --all/],
    [['list', '--status', 'done'], 2, /--status must be one of/]
  ])('cidget %j → exit %i', async (args, code, message) => {
    w = await world({ size: 1 })
    const r = await runCli(args as string[], { env: env(), cwd: w.dir })
    expect(r.code).toBe(code)
    expect(r.stderr.trim().split('\n')[0]).toMatch(message as RegExp)
    expect(r.stderr).not.toMatch(/\n\s+at /) // no stack trace
  })

  it('an unreachable gateway fails with exit 1 and says which', async () => {
    w = await world({ size: 1 })
    await w.gateways[0]!.close()
    const r = await runCli(['get', w.cid, '-o', join(w.dir, 'x'), ...gatewayArgs(), '--json'], { env: env() })
    expect(r.code).toBe(1)
    const rec = lastRecord(r.stdout)
    expect(rec.status).toBe('failed')
    expect(rec.errorCode).toBe('CIDGET_ERR_NETWORK')
    expect(rec.error).toContain(w.gateways[0]!.url)
  })

  it('a missing state directory is a usage error (exit 2)', async () => {
    w = await world({ size: 1 })
    const r = await runCli(['list', '--state', join(w.dir, 'nope', 'state.db')], { env: env() })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/does not exist.*\[CIDGET_ERR_STATE\]/)
  })

  it('a read-only output path is refused before anything is recorded (exit 2)', async () => {
    w = await world({ size: 1 })
    const ro = join(w.dir, 'ro')
    await mkdir(ro)
    if (mountTmpfs(ro, '1m', true) !== undefined) {
      // without mount: a path below a regular file cannot be created either
      await writeFile(join(w.dir, 'file'), '')
    }
    const target = (await exists(join(w.dir, 'file'))) ? join(w.dir, 'file', 'x') : join(ro, 'x')
    try {
      const r = await runCli(['get', w.cid, '-o', target, ...gatewayArgs()], { env: env() })
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/Cannot write to .*\[CIDGET_ERR_OUTPUT_NOT_WRITABLE\]/)
      const list = await runCli(['list', '--json'], { env: env() })
      expect(list.stdout).toBe('')
    } finally {
      try { execFileSync('umount', ['-l', ro], { stdio: 'pipe' }) } catch { /* not mounted */ }
    }
  })

  it('an existing file is not overwritten without --force', async () => {
    w = await world({ size: 1000 })
    const out = join(w.dir, 'exists.bin')
    await writeFile(out, 'precious')
    const r = await runCli(['get', w.cid, '-o', out, ...gatewayArgs()], { env: env() })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/already exists.*--force/)
    const forced = await runCli(['get', w.cid, '-o', out, ...gatewayArgs(), '--force'], { env: env() })
    expect(forced.code).toBe(0)
    expect(await fileSha256(out)).toBe(w.sha)
  })
})

describe('list, status, pause, cancel, rm', () => {
  it('cidget pause stops a download another process is running (it exits 3), cancel removes its partial', async () => {
    w = await world({ size: 4 * MiB })
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: MiB }, times: 2 })
    const out = join(w.dir, 'file.bin')
    const fast = { ...env(), CIDGET_HEARTBEAT_MS: '50' }
    const start = (): { closed: Promise<number | null> } => {
      const child = spawn(process.execPath, [CLI, 'get', w.cid, '-o', out, ...gatewayArgs(), '-q'], { env: { ...process.env, ...fast }, stdio: 'ignore' })
      return { closed: new Promise(resolve => child.on('close', code => resolve(code))) }
    }
    const stalled = async (n: number): Promise<void> => {
      await new Promise<void>(resolve => {
        const on = (): void => {
          if (w.gateways[0]!.bytesSent(r => r.format === 'path') >= n * MiB) { w.gateways[0]!.off('progress', on); resolve() }
        }
        w.gateways[0]!.on('progress', on)
      })
    }
    const first = start()
    await stalled(1)
    const p = await runCli(['pause', '1', '--json'], { env: fast })
    expect(p.code, p.stderr).toBe(0)
    expect(lastRecord(p.stdout).status).toBe('paused')
    expect(await first.closed).toBe(3)

    const second = start()
    await stalled(2)
    const c = await runCli(['cancel', '1'], { env: fast })
    expect(c.code, c.stderr).toBe(0)
    expect(await second.closed).toBe(1)
    expect(await exists(partialPath(out))).toBe(false)
    expect(lastRecord((await runCli(['status', '1', '--json'], { env: fast })).stdout).status).toBe('cancelled')
  })

  it('manage downloads across processes', async () => {
    w = await world({ size: 2 * MiB })
    const out = join(w.dir, 'a.bin')
    expect((await runCli(['get', w.cid, '-o', out, ...gatewayArgs(), '-q'], { env: env() })).code).toBe(0)
    const list = await runCli(['list'], { env: env() })
    expect(list.stdout).toMatch(/^ID\s+STATUS/)
    expect(list.stdout).toMatch(/1\s+success\s+100%/)
    const listJson = await runCli(['list', '--status', 'success', '--json'], { env: env() })
    expect(lastRecord(listJson.stdout).id).toBe(1)
    const st = await runCli(['status', '1'], { env: env() })
    expect(st.stdout).toContain(`sha256:    ${w.sha}`)
    expect((await runCli(['pause', '1'], { env: env() })).code).toBe(2) // finished: nothing to pause
    expect((await runCli(['rm', '1'], { env: env() })).code).toBe(0)
    expect(await exists(out)).toBe(true) // the finished file stays
    expect((await runCli(['status', '1'], { env: env() })).code).toBe(2)
  })
})

describe('the DAG limits', () => {
  it('--max-entries refuses a tree of more entries (exit 1, CIDGET_ERR_DAG_LIMIT); a bad value is a usage error (exit 2)', async () => {
    w = await world({ size: 1 })
    const blocks = new MemoryBlocks()
    const text = (t: string): Uint8Array => new TextEncoder().encode(t)
    // five entries: the root, a, a/1, b, c
    const root = (await addDirectory(blocks, [{ path: 'a/1', content: text('1') }, { path: 'b', content: text('b') }, { path: 'c', content: text('c') }])).toString()
    const gw = await startTestGateway({ blocks })
    try {
      const args = (out: string, ...more: string[]): string[] => ['get', `/ipfs/${root}`, '-o', join(w.dir, out), '-g', gw.url, '--json', ...more]
      const refused = await runCli(args('small', '--max-entries', '3'), { env: env() })
      expect(refused.code, refused.stderr).toBe(1)
      const rec = lastRecord(refused.stdout)
      expect(rec).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_DAG_LIMIT' })
      expect(rec.error).toMatch(/more than 3 /)
      // the same limit from the environment (and so the config file), and a flag above it wins
      const fromEnv = await runCli(args('env'), { env: { ...env(), CIDGET_MAX_ENTRIES: '4' } })
      expect(lastRecord(fromEnv.stdout)).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_DAG_LIMIT' })
      const enough = await runCli(args('enough', '--max-entries', '5'), { env: { ...env(), CIDGET_MAX_ENTRIES: '4' } })
      expect(enough.code, enough.stderr).toBe(0)
      expect(await stat(join(w.dir, 'enough', 'a', '1'))).toBeTruthy()

      for (const bad of ['0', '-1', 'many', '2.5']) {
        const r = await runCli(args('bad', '--max-entries', bad), { env: env() })
        expect(r.code, bad).toBe(2)
        expect(r.stderr).toMatch(/--max-entries.*must be an integer ≥ 1/)
        expect(r.stderr).not.toMatch(/\n\s+at /)
      }
      const badEnv = await runCli(args('bad'), { env: { ...env(), CIDGET_MAX_ENTRIES: 'many' } })
      expect(badEnv.code).toBe(2)
      expect(badEnv.stderr).toMatch(/maxEntries must be a positive integer, got "many" \[CIDGET_ERR_BAD_OPTION\]/)
      expect(badEnv.stderr).not.toMatch(/\n\s+at /)
      for (const cmd of ['serve', 'worker', 'resume']) {
        const r = await runCli([cmd, '--max-entries', '0'], { env: env() })
        expect(r.code, cmd).toBe(2)
        expect(r.stderr).toMatch(/--max-entries/)
      }
    } finally {
      await gw.close()
    }
  })
})
