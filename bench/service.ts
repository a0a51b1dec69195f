/**
 * The service under load: `cidget serve --concurrency 16` in its own process,
 * a test gateway with `--count` small files (4 KiB by default) in another,
 * and this process as the clients: `--clients` WebSocket clients on
 * `/api/events`, and the API calls that queue every file at once. Prints
 * downloads per second (first POST to the last `success` event), the POST
 * latency, the event latency (each message's server `at` against the time a
 * client received it; same machine, same clock) and the server's RSS (sampled
 * from /proc every 50 ms, and its peak, VmHWM). Every output is checked
 * against its SHA-256.
 *
 *   npm run build && npx tsx bench/service.ts [--count 1000] [--file-size 4096] [--concurrency 16] [--clients 50] [--quiet-wait 30] [--cli dist/bin/cidget.mjs]
 *
 * With `--gateway-process` it is the gateway instead (started by the benchmark itself).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { WebSocket } from 'ws'
import { MemoryBlocks, addFile, seededBytes, startTestGateway } from '../src/testing/index.js'
import type { ServiceEvent } from '../src/server/events.js'
import type { StatusEvent } from '../src/core/events.js'
import type { DownloadRecord } from '../src/core/types.js'
import { BENCH_DIR, ROOT, cliUnderTest, fmt, freshDir, machine, positiveInt, procCpuSeconds, saveResults, systemBusySeconds, table, waitForQuiet } from './lib.js'

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    'file-size': { type: 'string', default: '4096' },
    concurrency: { type: 'string', default: '16' },
    clients: { type: 'string', default: '50' },
    'quiet-wait': { type: 'string', default: '30' },
    cli: { type: 'string' },
    'gateway-process': { type: 'boolean', default: false }
  },
  strict: true
})
const count = positiveInt(values.count, '--count')
const fileSize = positiveInt(values['file-size'], '--file-size')

if (values['gateway-process']) {
  // the gateway: `count` distinct seeded files, one line of JSON when ready, gone when stdin closes
  const blocks = new MemoryBlocks()
  const files: Array<{ cid: string, sha256: string }> = []
  for (let i = 0; i < count; i++) {
    const data = seededBytes(fileSize, i + 1)
    files.push({ cid: (await addFile(blocks, data)).toString(), sha256: createHash('sha256').update(data).digest('hex') })
  }
  const gw = await startTestGateway({ blocks })
  process.stdout.write(JSON.stringify({ url: gw.url, files }) + '\n')
  process.stdin.on('end', () => { void gw.close().then(() => process.exit(0)) })
  process.stdin.resume()
} else {
  await main()
}

function percentile (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))] as number
}

/** A child's first stdout line (JSON), or its first stderr match. */
async function firstLine (child: ChildProcess, from: 'stdout' | 'stderr', re?: RegExp): Promise<string> {
  const stream = from === 'stdout' ? child.stdout : child.stderr
  if (stream === null) throw new Error('no pipe')
  const lines = createInterface({ input: stream })
  return await new Promise((resolve, reject) => {
    child.once('exit', (code) => { reject(new Error(`child exited (${String(code)}) before it was ready`)) })
    lines.on('line', (line) => {
      if (from === 'stderr') process.stderr.write(`  server: ${line}\n`)
      if (re === undefined || re.test(line)) resolve(line)
    })
  })
}

function rssBytes (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? Number.NaN : Number(m[1]) * 1024
  } catch {
    return Number.NaN
  }
}

async function main (): Promise<void> {
  const concurrency = positiveInt(values.concurrency, '--concurrency')
  const clients = positiveInt(values.clients, '--clients')
  const cli = await cliUnderTest(values.cli)
  const dir = await freshDir('service')
  const token = 'bench-' + createHash('sha256').update(String(Math.random())).digest('hex').slice(0, 24)

  process.stderr.write(`service: ${count} files of ${fileSize} B, concurrency ${concurrency}, ${clients} WebSocket clients\n`)
  const gateway = spawn(process.execPath, ['--import', 'tsx', join(BENCH_DIR, 'service.ts'), '--gateway-process', '--count', String(count), '--file-size', String(fileSize)],
    { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
  const { url: gatewayUrl, files } = JSON.parse(await firstLine(gateway, 'stdout')) as { url: string, files: Array<{ cid: string, sha256: string }> }

  const server = spawn(process.execPath, [cli.main, 'serve', '--port', '0', '--dir', join(dir, 'downloads'), '--state', join(dir, 'state.db'),
    '--concurrency', String(concurrency), '--token', token, '-g', gatewayUrl], { cwd: ROOT, env: { ...process.env, HOME: dir }, stdio: ['ignore', 'ignore', 'pipe'] })
  const serverExited = new Promise<number | null>((resolve) => { server.once('exit', (code) => { resolve(code) }) })
  const line = await firstLine(server, 'stderr', /^cidget serving /)
  const base = /(http:\/\/\S+?)\/ /.exec(line)?.[1]
  const pid = server.pid
  if (base === undefined || pid === undefined) throw new Error(`unexpected serve line: ${line}`)
  const wsBase = base.replace(/^http/, 'ws')

  try {
    await waitForQuiet({ maxWaitMs: Number(values['quiet-wait']) * 1000 })
    const rssIdle = rssBytes(pid, 'VmRSS')

    // the clients: every message's latency; the first one also counts the finished downloads
    const latencies: number[] = []
    let messages = 0
    let finished = 0
    let failed = 0
    let allDone!: () => void
    const done = new Promise<void>((resolve) => { allDone = resolve })
    const sockets: WebSocket[] = []
    for (let i = 0; i < clients; i++) {
      const ws = new WebSocket(`${wsBase}/api/events?token=${token}`)
      const first = i === 0
      ws.on('message', (data) => {
        const now = Date.now()
        const e = JSON.parse(String(data)) as ServiceEvent
        latencies.push(now - e.at)
        messages++
        if (first && e.type === 'status') {
          const s = e.data as StatusEvent
          if (s.status === 'success' || s.status === 'failed') {
            if (s.status === 'failed') failed++
            if (++finished === count) allDone()
          }
        }
      })
      await new Promise<void>((resolve, reject) => { ws.once('open', () => { resolve() }); ws.once('error', reject) })
      sockets.push(ws)
    }
    const rssConnected = rssBytes(pid, 'VmRSS')

    let rssPeak = 0
    const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssBytes(pid, 'VmRSS')) }, 50)
    const cpu0 = procCpuSeconds(pid)
    const gatewayCpu0 = procCpuSeconds(gateway.pid ?? 0)
    const ownCpu0 = process.cpuUsage()
    const busy0 = systemBusySeconds()
    const started = performance.now()
    // queue them all, 32 requests in flight
    const postMs: number[] = []
    const ids: number[] = []
    let next = 0
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < count) {
        const i = next++
        const t = performance.now()
        const res = await request(`${base}/api/downloads`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ target: files[i]!.cid, output: `${i}.bin` })
        })
        const rec = await res.body.json() as DownloadRecord
        if (res.statusCode !== 201) throw new Error(`POST ${i}: ${res.statusCode} ${JSON.stringify(rec)}`)
        postMs.push(performance.now() - t)
        ids[i] = rec.id
      }
    }))
    const queuedMs = performance.now() - started
    await done
    const elapsedMs = performance.now() - started
    const cpuSeconds = procCpuSeconds(pid) - cpu0
    const gatewayCpuSeconds = procCpuSeconds(gateway.pid ?? 0) - gatewayCpu0
    const own = process.cpuUsage(ownCpu0)
    const clientCpuSeconds = (own.user + own.system) / 1e6
    // cores busy with work other than the server, the gateway and these clients (other test suites on this machine)
    const otherLoad = Math.max(0, systemBusySeconds() - busy0 - cpuSeconds - gatewayCpuSeconds - clientCpuSeconds) / (elapsedMs / 1000)
    clearInterval(sampler)
    const rssAfter = rssBytes(pid, 'VmRSS')
    const rssHwm = rssBytes(pid, 'VmHWM')
    for (const ws of sockets) ws.close()

    let wrong = 0
    for (let i = 0; i < count; i++) {
      const bytes = await readFile(join(dir, 'downloads', `${i}.bin`)).catch(() => undefined)
      if (bytes === undefined || createHash('sha256').update(bytes).digest('hex') !== files[i]!.sha256) wrong++
    }

    const result = {
      machine: machine(),
      cli: cli.describe,
      count,
      fileSize,
      concurrency,
      clients,
      failed,
      wrongOutputs: wrong,
      elapsedMs,
      queuedMs,
      downloadsPerSecond: count / (elapsedMs / 1000),
      postMs: { p50: percentile(postMs, 50), p99: percentile(postMs, 99) },
      messages,
      eventLatencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.reduce((m, x) => Math.max(m, x), 0) },
      serverCpuSeconds: cpuSeconds,
      gatewayCpuSeconds,
      clientCpuSeconds,
      otherLoadCores: otherLoad,
      rss: { idle: rssIdle, connected: rssConnected, peak: Math.max(rssPeak, rssAfter), after: rssAfter, hwm: rssHwm }
    }
    const file = await saveResults('service', result)
    const mb = (b: number): string => fmt(b / 1e6, 0)
    process.stdout.write(`\n${result.machine}; ${cli.describe}\n\n` + table(
      ['downloads', 'concurrency', 'WS clients', 'downloads/s', 'POST p50 / p99 (ms)', 'event latency p50 / p99 (ms)', 'events received', 'CPU s: server / gateway / clients', 'other load (cores)', `server RSS idle / ${clients} clients / peak (MB)`, 'failed / wrong'],
      [[`${count} × ${fileSize} B`, String(concurrency), String(clients), fmt(result.downloadsPerSecond, 0),
        `${fmt(result.postMs.p50)} / ${fmt(result.postMs.p99)}`, `${fmt(result.eventLatencyMs.p50, 0)} / ${fmt(result.eventLatencyMs.p99, 0)}`,
        String(messages), `${fmt(cpuSeconds)} / ${fmt(gatewayCpuSeconds)} / ${fmt(clientCpuSeconds)}`, fmt(otherLoad, 2), `${mb(rssIdle)} / ${mb(rssConnected)} / ${mb(Math.max(result.rss.peak, rssHwm))}`, `${failed} / ${wrong}`]]
    ) + `\n\nsaved ${file}\n`)
    if (failed > 0 || wrong > 0) process.exitCode = 1
  } finally {
    server.kill('SIGTERM')
    await serverExited
    gateway.stdin?.end()
    await cli.cleanup()
    await rm(dir, { recursive: true, force: true })
  }
}
