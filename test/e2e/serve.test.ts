/**
 * `cidget serve` as a user runs it: the built CLI as a child process on port
 * 0, driven by `cidget add|list|status|pause|resume --server` and by the API,
 * killed with SIGKILL and stopped with SIGTERM mid-download.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { world, runCli, lastRecord, fileSha256, CLI, KiB, MiB, type World } from '../helpers.js'
import type { DownloadRecord, DownloadStatus } from '../../src/core/types.js'
import { MemoryBlocks, startTestGateway } from '../../src/testing/index.js'

let w: World
const children: ChildProcess[] = []
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await w?.close()
})

function env (): NodeJS.ProcessEnv {
  // two blocks at a time and frequent checkpoints: a throttled download is durable block by block, not all at the end
  return {
    HOME: w.dir, CIDGET_STATE: w.state, CIDGET_INITIAL_BACKOFF_MS: '20', CIDGET_TIMEOUT_MS: '2000', CIDGET_TOKEN: '', CIDGET_SERVER: '',
    CIDGET_BLOCK_CONCURRENCY: '2', CIDGET_SYNC_INTERVAL_MS: '100'
  }
}

interface Served {
  child: ChildProcess
  url: string
  token: string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  stderr: () => string
}

/** Starts `cidget serve --port 0 …` and waits for its one line. */
async function serve (args: string[] = ['--allow-local']): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--dir', join(w.dir, 'downloads'), ...args], { env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let stderr = ''
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => { child.on('exit', (code, signal) => { resolve({ code, signal }) }) })
  const line = await new Promise<RegExpExecArray>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString()
      // the token is printed on the start that made it; later starts point at `cidget token`
      const m = /^cidget serving (http:\/\/127\.0\.0\.1:(\d+))\/ \(dashboard: (?:\1\/#token=(\S+)|`cidget token --server \1\/` prints its link)\)$/m.exec(stderr)
      if (m !== null) resolve(m)
    })
    void exited.then(({ code }) => { reject(new Error(`serve exited (${String(code)}): ${stderr}`)) })
  })
  const token = line[3] !== undefined ? decodeURIComponent(line[3]) : (await runCli(['token'], { env: env() })).stdout.trim()
  return { child, url: line[1]!, token, exited, stderr: () => stderr }
}

async function api<T> (s: Served, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const res = await request(s.url + path, {
    method,
    headers: { authorization: `Bearer ${s.token}`, ...(method === 'GET' ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const json = await res.body.json() as T
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${JSON.stringify(json)}`)
  return json
}

/** Polls the API until `pred` holds for the download. */
async function until (s: Served, id: number, pred: (r: DownloadRecord) => boolean, what: string): Promise<DownloadRecord> {
  const deadline = Date.now() + 30_000
  let rec: DownloadRecord | undefined
  while (Date.now() < deadline) {
    rec = await api<DownloadRecord>(s, 'GET', `/api/downloads/${id}`)
    if (pred(rec)) return rec
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`download ${id} never became ${what}: ${JSON.stringify(rec)}`)
}

const statusIs = (...statuses: DownloadStatus[]) => (r: DownloadRecord): boolean => statuses.includes(r.status)

/** Body bytes the gateway sent for the requests from the `from`-th on. */
function gatewayBytes (from: number): number {
  return w.gateways[0]!.requests.slice(from).reduce((n, r) => n + r.bytesSent, 0)
}

describe('cidget serve', () => {
  it('serves on port 0 with a stored token; cidget add, list, status, pause and resume work through --server', async () => {
    w = await world({ size: 512 * KiB })
    const s = await serve()
    // the token was generated and stored next to the state, readable by its owner only
    const tokenStat = await stat(join(w.dir, 'token'))
    expect(tokenStat.mode & 0o777).toBe(0o600)
    const health = await request(`${s.url}/healthz`)
    expect(await health.body.json()).toMatchObject({ ok: true })

    // cidget add reads the token from the file next to the state (CIDGET_STATE)
    const added = await runCli(['add', w.cid, '--server', s.url, '-o', 'a/file.bin', '-g', w.gateways[0]!.url, '--json'], { env: env() })
    expect(added.code, added.stderr).toBe(0)
    const rec = lastRecord(added.stdout)
    expect(rec).toMatchObject({ cid: w.cid, output: join(w.dir, 'downloads', 'a', 'file.bin') })
    const done = await until(s, rec.id, statusIs('success', 'failed'), 'finished')
    expect(done).toMatchObject({ status: 'success', hash: w.sha })
    expect(await fileSha256(done.output)).toBe(w.sha)

    const list = await runCli(['list', '--server', s.url, '--json'], { env: env() })
    expect(list.code, list.stderr).toBe(0)
    expect(list.stdout.trim().split('\n').map(l => (JSON.parse(l) as DownloadRecord).id)).toEqual([rec.id])
    const table = await runCli(['list', '--server', s.url], { env: env() })
    expect(table.stdout).toMatch(new RegExp(`^${rec.id}\\s+success\\s+100%`, 'm'))
    const status = await runCli(['status', String(rec.id), '--server', s.url], { env: env() })
    expect(status.code).toBe(0)
    expect(status.stdout).toContain('status:    success')

    // the API's errors come back with the local exit codes
    const outside = await runCli(['add', w.cid, '--server', s.url, '-o', '../x'], { env: env() })
    expect(outside.code).toBe(2)
    expect(outside.stderr).toMatch(/\[CIDGET_ERR_OUTSIDE_DIR\]/)
    const unknown = await runCli(['status', '999', '--server', s.url], { env: env() })
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/\[CIDGET_ERR_UNKNOWN_DOWNLOAD\]/)
    const wrong = await runCli(['list', '--server', s.url, '--token', 'wrong'], { env: env() })
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toMatch(/\[CIDGET_ERR_UNAUTHORIZED\]/)
    const finished = await runCli(['pause', String(rec.id), '--server', s.url], { env: env() })
    expect(finished.code).toBe(2)
    expect(finished.stderr).toMatch(/\[CIDGET_ERR_INVALID_TRANSITION\]/)
    const nobody = await runCli(['list', '--server', 'http://127.0.0.1:1'], { env: env() })
    expect(nobody.code).toBe(1)
    expect(nobody.stderr).toMatch(/Cannot reach the cidget service.*\[CIDGET_ERR_NETWORK\]/)

    // pause and resume through the service: resume waits for the download, as locally
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 128 * KiB }, times: 1, match: { format: 'path' } })
    const second = lastRecord((await runCli(['add', w.cid, '--server', s.url, '-o', 'b.bin', '--mode', 'path', '-g', w.gateways[0]!.url, '--json'], { env: env() })).stdout)
    await until(s, second.id, r => r.status === 'in_progress' || r.status === 'resuming', 'running')
    const paused = await runCli(['pause', String(second.id), '--server', s.url, '--json'], { env: env() })
    expect(paused.code, paused.stderr).toBe(0)
    expect(lastRecord(paused.stdout).status).toBe('paused')
    const resumed = await runCli(['resume', String(second.id), '--server', s.url], { env: env() })
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stderr).toMatch(/^saved .*b\.bin/m)
    expect(await fileSha256(join(w.dir, 'downloads', 'b.bin'))).toBe(w.sha)

    s.child.kill('SIGTERM')
    expect(await s.exited).toEqual({ code: 0, signal: null })
  })

  it('without --allow-local, a gateway a client names on 127.0.0.1 is refused (400) and gets no request; the -g gateway works (issue 14)', async () => {
    w = await world({ size: 64 * KiB })
    const s = await serve(['-g', w.gateways[0]!.url])
    const other = await startTestGateway({ blocks: new MemoryBlocks() })
    try {
      for (const body of [{ target: w.cid, gateways: [other.url] }, { target: `${other.url}/ipfs/${w.cid}` }]) {
        const res = await request(s.url + '/api/downloads', { method: 'POST', headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
        expect(res.statusCode).toBe(400)
        expect(await res.body.json()).toMatchObject({ error: { code: 'CIDGET_ERR_ADDRESS_REFUSED' } })
      }
      expect(other.requests).toHaveLength(0)
      const rec = await api<DownloadRecord>(s, 'POST', '/api/downloads', { target: w.cid, output: 'operator.bin' })
      expect(await until(s, rec.id, statusIs('success', 'failed'), 'finished')).toMatchObject({ status: 'success', hash: w.sha })
    } finally {
      await other.close()
      s.child.kill('SIGTERM')
      await s.exited
    }
  })

  it('with the default state, makes ~/.cidget (0700), the state and its WAL (0600) and the token (0600); prints the token only when it made it; `cidget token` prints it (issue 14)', async () => {
    w = await world({ size: 1 })
    const home = join(w.dir, 'home')
    const homeEnv: NodeJS.ProcessEnv = { ...process.env, ...env(), HOME: home }
    delete homeEnv.CIDGET_STATE
    const start = async (): Promise<{ child: ChildProcess, line: string, exited: Promise<unknown> }> => {
      const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--dir', join(w.dir, 'downloads')], { env: homeEnv, stdio: ['ignore', 'pipe', 'pipe'] })
      children.push(child)
      const exited = new Promise(resolve => { child.on('exit', resolve) })
      let stderr = ''
      const line = await new Promise<string>((resolve, reject) => {
        child.stderr!.on('data', (d: Buffer) => {
          stderr += d.toString()
          const m = /^cidget serving .*$/m.exec(stderr)
          if (m !== null) resolve(m[0])
        })
        void exited.then(() => { reject(new Error(`serve exited: ${stderr}`)) })
      })
      return { child, line, exited }
    }
    const first = await start()
    const token = (await readFile(join(home, '.cidget', 'token'), 'utf8')).trim()
    expect(first.line).toContain(`#token=${token}`)
    expect((await stat(join(home, '.cidget'))).mode & 0o777).toBe(0o700)
    for (const f of ['state.db', 'state.db-wal', 'token']) expect((await stat(join(home, '.cidget', f))).mode & 0o777, f).toBe(0o600)
    first.child.kill('SIGTERM')
    await first.exited

    const second = await start()
    expect(second.line).not.toContain(token)
    expect(second.line).toMatch(/cidget token --server http:\/\/127\.0\.0\.1:\d+\/` prints its link/)
    const url = /cidget serving (\S+) /.exec(second.line)![1]!
    const printed = await runCli(['token'], { env: homeEnv })
    expect(printed).toMatchObject({ code: 0, stdout: `${token}\n` })
    const link = await runCli(['token', '--server', url], { env: homeEnv })
    expect(link.stdout).toBe(`${url}#token=${token}\n`)
    second.child.kill('SIGTERM')
    await second.exited

    // a token file others could have written is not used
    await chmod(join(home, '.cidget', 'token'), 0o666)
    const refused = await runCli(['token'], { env: homeEnv })
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/writable by everyone.*\[CIDGET_ERR_STATE\]/)
  })

  it('refuses --no-auth on a non-loopback host (exit 2)', async () => {
    w = await world({ size: 1 })
    const r = await runCli(['serve', '--no-auth', '--host', '0.0.0.0', '--port', '0'], { env: env() })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--no-auth .*loopback.*\[CIDGET_ERR_BAD_OPTION\]/)
  })

  it('survives SIGKILL mid-download; SIGTERM pauses as interrupted and exits 0; each restart resumes, a user pause stays', async () => {
    // 2 MiB at 1 MiB/s: about two seconds a download
    w = await world({ size: 2 * MiB, maxBytesPerSecond: MiB })
    const g = w.gateways[0]!.url
    let s = await serve()
    const token = s.token
    const first = await api<DownloadRecord>(s, 'POST', '/api/downloads', { target: w.cid, output: 'killed.bin', gateways: [g] })
    // something durable first: the restart must continue from it, not from 0
    const durable = (await until(s, first.id, r => r.currentSize >= 256 * KiB, 'partly durable')).currentSize
    s.child.kill('SIGKILL')
    expect((await s.exited).signal).toBe('SIGKILL')
    const killedAt = w.gateways[0]!.requests.length

    s = await serve()
    expect(s.token).toBe(token)
    const recovered = await until(s, first.id, statusIs('success', 'failed'), 'finished')
    expect(recovered).toMatchObject({ status: 'success', hash: w.sha, size: 2 * MiB })
    expect(await fileSha256(join(w.dir, 'downloads', 'killed.bin'))).toBe(w.sha)
    // what was durable before the kill was not fetched again (the root node aside)
    expect(gatewayBytes(killedAt)).toBeLessThanOrEqual(2 * MiB - durable + 4 * KiB)

    // a user pause stays paused across restarts; a shutdown's pause does not
    const mine = await api<DownloadRecord>(s, 'POST', '/api/downloads', { target: w.cid, output: 'mine.bin', gateways: [g], priority: 1 })
    const second = await api<DownloadRecord>(s, 'POST', '/api/downloads', { target: w.cid, output: 'stopped.bin', gateways: [g] })
    await until(s, mine.id, statusIs('in_progress', 'resuming'), 'running')
    expect(await api<DownloadRecord>(s, 'POST', `/api/downloads/${mine.id}/pause`)).toMatchObject({ status: 'paused', errorCode: null })
    await until(s, second.id, r => r.status === 'in_progress' && r.currentSize > 0, 'running')
    const stopping = performance.now()
    s.child.kill('SIGTERM')
    expect(await s.exited).toEqual({ code: 0, signal: null })
    expect(performance.now() - stopping).toBeLessThan(5_000)

    const local = await runCli(['status', String(second.id), '--json'], { env: env() })
    expect(lastRecord(local.stdout)).toMatchObject({ status: 'paused', errorCode: 'CIDGET_ERR_INTERRUPTED', leaseOwner: null })

    s = await serve()
    expect(await until(s, second.id, statusIs('success', 'failed'), 'finished')).toMatchObject({ status: 'success', hash: w.sha })
    expect(await fileSha256(join(w.dir, 'downloads', 'stopped.bin'))).toBe(w.sha)
    expect(await api<DownloadRecord>(s, 'GET', `/api/downloads/${mine.id}`)).toMatchObject({ status: 'paused' })
    // cancel and rm through the service, with the token of CIDGET_TOKEN
    const withToken = { env: { ...env(), CIDGET_TOKEN: s.token, CIDGET_STATE: join(w.dir, 'elsewhere.db') } }
    const cancelled = await runCli(['cancel', String(mine.id), '--server', s.url, '--json'], withToken)
    expect(cancelled.code, cancelled.stderr).toBe(0)
    expect(lastRecord(cancelled.stdout)).toMatchObject({ id: mine.id, status: 'cancelled' })
    const removed = await runCli(['rm', String(mine.id), '--server', s.url], withToken)
    expect(removed.code, removed.stderr).toBe(0)
    expect(removed.stderr).toBe(`removed download ${mine.id}\n`)
    expect((await request(`${s.url}/api/downloads/${mine.id}`, { headers: { authorization: `Bearer ${s.token}` } })).statusCode).toBe(404)
    s.child.kill('SIGINT')
    expect(await s.exited).toEqual({ code: 0, signal: null })
  })
})
