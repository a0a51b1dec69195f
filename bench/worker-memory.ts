/**
 * A long-running worker's memory: one `cidget worker` started as users start
 * it (`node dist/bin/cidget.mjs worker --state … --dir …`: no V8 flags, no
 * NODE_OPTIONS, the default concurrency) drains `--downloads` small verified
 * downloads (default 10,000 files of 4 KiB, all distinct) served by one test
 * gateway in its own process, with the queue on SQLite (a file in a fresh
 * folder) and on PostgreSQL (a fresh database, dropped afterwards), on Node 20
 * (this node) and Node 24 (`--node24`).
 *
 * The queue is filled before the worker starts (`Downloader.enqueue`, in this
 * process). The worker's RSS (VmRSS from /proc/PID/status) is read as each of
 * its `finished` events arrives (`--json` on stdout), so that the figure "at
 * 1,000" is the RSS when the 1,000th download has ended. The table gives the
 * RSS at 1,000, at the last download and the difference (the target: within
 * 20 MB), the RSS at each tenth between, the worker's peak (VmHWM) and its
 * downloads per second. Every output is checked against its SHA-256 at the end.
 *
 *   npm run build && npx tsx bench/worker-memory.ts [--downloads 10000] [--from 1000] [--file-size 4096]
 *     [--stores sqlite,postgres] [--nodes 20,24] [--node24 PATH] [--node24-modules DIR]
 *     [--pg postgres://postgres@127.0.0.1:5432/postgres] [--cli dist/bin/cidget.mjs] [--node-options=--trace-gc] [--heap-snapshots DIR]
 *
 * Node 24 runs the CLI with native modules built for it: `--node24-modules`
 * is a `node_modules` installed with Node 24 (DEPENDENCIES.md: a copy of the
 * tree, `npm ci` with `npm_config_nodedir`); a copy of `dist/` is linked to it.
 * `--node-options` puts flags before the CLI's path, for diagnosis only (the
 * figures of record take none); node's own output on stdout goes to stderr.
 * `--heap-snapshots DIR` has the worker write a heap snapshot into DIR at the
 * `--from`th and the last download (SIGUSR2 with `--heapsnapshot-signal`);
 * taking one costs RSS, so such a run's RSS figures mean nothing.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { Downloader } from '../src/engine/downloader.js'
import { pgDatabase, BENCH_DIR, BIN, DEFAULT_NODE24, ROOT, cliUnderTest, fmt, freshDir, machine, positiveInt, procCpuSeconds, saveResults, table } from './lib.js'

const { values } = parseArgs({
  options: {
    downloads: { type: 'string', default: '10000' },
    from: { type: 'string', default: '1000' },
    'file-size': { type: 'string', default: '4096' },
    stores: { type: 'string', default: 'sqlite,postgres' },
    nodes: { type: 'string', default: '20,24' },
    node24: { type: 'string', default: DEFAULT_NODE24 },
    'node24-modules': { type: 'string', default: '/tmp/cidget-n24/node_modules' },
    pg: { type: 'string', default: process.env.CIDGET_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    cli: { type: 'string' },
    'node-options': { type: 'string', default: '' },
    'heap-snapshots': { type: 'string' }
  },
  strict: true
})
const downloads = positiveInt(values.downloads, '--downloads')
const from = positiveInt(values.from, '--from')
if (from >= downloads) throw new Error('--from must be below --downloads')
const fileSize = positiveInt(values['file-size'], '--file-size')
const stores = values.stores.split(',').map((s) => s.trim())
if (stores.some((s) => s !== 'sqlite' && s !== 'postgres')) throw new Error('--stores: sqlite and/or postgres')
const nodes = values.nodes.split(',').map((s) => s.trim())
if (nodes.some((n) => n !== '20' && n !== '24')) throw new Error('--nodes: 20 and/or 24')
const nodeOptions = values['node-options'].split(' ').filter((o) => o !== '')
/** Diagnosis: heap snapshots of the worker at `from` and at the end, written into this folder. */
const snapshotDir = values['heap-snapshots'] === undefined ? undefined : resolve(values['heap-snapshots'])
if (snapshotDir !== undefined) nodeOptions.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapshotDir}`)
/** The RSS is also reported at each tenth of the run. */
const marks = Array.from({ length: 10 }, (_, i) => Math.round((i + 1) * downloads / 10))

interface GatewayFiles { url: string, files: Array<{ cid: string, sha256: string }> }

/** The gateway: `bench/service.ts --gateway-process`, `downloads` distinct seeded files, gone when its stdin closes. */
async function startGateway (): Promise<GatewayFiles & { stop: () => void, pid: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(BENCH_DIR, 'service.ts'), '--gateway-process', '--count', String(downloads), '--file-size', String(fileSize)],
    { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
  const info = await new Promise<GatewayFiles>((resolve, reject) => {
    child.once('exit', (code) => { reject(new Error(`gateway exited (${String(code)}) before it was ready`)) })
    createInterface({ input: child.stdout }).once('line', (line) => { resolve(JSON.parse(line) as GatewayFiles) })
  })
  return { ...info, pid: child.pid as number, stop: () => { child.stdin.end() } }
}

function procStatus (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? Number.NaN : Number(m[1]) * 1024
  } catch {
    return Number.NaN
  }
}

/** The CLI for Node 24: a copy of the CLI's dist/ beside a node_modules built for Node 24. */
async function cliFor24 (main20: string): Promise<{ main: string, cleanup: () => Promise<void> }> {
  const modules = resolve(values['node24-modules'])
  if (!existsSync(join(modules, 'better-sqlite3-node22'))) throw new Error(`--node24-modules ${modules}: no better-sqlite3-node22 there (npm ci with Node 24, see DEPENDENCIES.md)`)
  const dir = await mkdtemp(join(tmpdir(), 'cidget-bench-cli24-'))
  const pkgRoot = resolve(main20, '../../..')
  await cp(join(pkgRoot, 'dist'), join(dir, 'dist'), { recursive: true })
  await cp(join(pkgRoot, 'package.json'), join(dir, 'package.json'))
  await symlink(modules, join(dir, 'node_modules'), 'dir')
  return { main: join(dir, BIN), cleanup: async () => { await rm(dir, { recursive: true, force: true }) } }
}

interface Run {
  node: string
  nodeVersion: string
  store: 'SQLite' | 'PostgreSQL'
  /** RSS (bytes) when the N-th download had finished, N = `from` and each of `marks`. */
  rssAt: Record<number, number>
  peak: number
  seconds: number
  cpuSeconds: number
  ok: boolean
  failed: number
}

async function run (nodeBin: string, nodeLabel: string, cli: string, store: 'sqlite' | 'postgres', gateway: GatewayFiles): Promise<Run> {
  const dir = await freshDir('worker-mem')
  const db = store === 'postgres' ? await pgDatabase(values.pg, 'cidget_bench_mem') : undefined
  const state = db?.url ?? join(dir, 'state.db')
  const out = join(dir, 'out')
  try {
    const dl = await Downloader.open({ state, recover: false, gateways: [gateway.url] })
    await dl.enqueue(gateway.files.map((f, i) => ({ target: f.cid, output: `out/f${i}` })), { dir })
    await dl.close()
    // as a user starts it: no flags for node, a HOME of its own (no ~/.cidget/config.json), no CIDGET_* or NODE_OPTIONS
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CIDGET_') && k !== 'NODE_OPTIONS') env[k] = v
    env.HOME = dir
    const t = performance.now()
    const child = spawn(nodeBin, [...nodeOptions, cli, 'worker', '--state', state, '--dir', dir, '--json', '--allow-local'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    const pid = child.pid as number
    let stderr = ''
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (d: string) => {
      if (nodeOptions.length > 0) process.stderr.write(d)
      else if (stderr.length < 20_000) stderr += d
    })
    const exited = new Promise<number | null>((resolve) => { child.once('exit', (code) => { resolve(code) }) })
    const rssAt: Record<number, number> = {}
    let finished = 0
    let failed = 0
    let cpuSeconds = Number.NaN
    let peak = Number.NaN
    await new Promise<void>((resolve, reject) => {
      void exited.then((code) => { reject(new Error(`worker exited (${String(code)}) after ${finished} downloads: ${stderr.trim().split('\n').slice(-5).join(' / ')}`)) })
      createInterface({ input: child.stdout }).on('line', (line) => {
        // node's own output (--trace-gc, say) is passed on
        if (!line.startsWith('{"worker"')) { process.stderr.write(line + '\n'); return }
        const e = JSON.parse(line) as { type: string, record?: { status: string } }
        if (e.type !== 'finished') return
        finished++
        if (e.record?.status !== 'success') failed++
        if (finished === from || marks.includes(finished)) {
          rssAt[finished] = procStatus(pid, 'VmRSS')
          if (snapshotDir !== undefined && (finished === from || finished === downloads)) child.kill('SIGUSR2')
          if (finished % 1000 === 0 || finished === from) process.stderr.write(`    ${finished}: ${fmt((rssAt[finished] ?? Number.NaN) / 1e6, 0)} MB\n`)
        }
        if (finished === downloads) {
          peak = procStatus(pid, 'VmHWM')
          cpuSeconds = procCpuSeconds(pid)
          resolve()
        }
      })
    })
    const seconds = (performance.now() - t) / 1000
    // a snapshot is written by the main thread, which then reads the next signal
    if (snapshotDir !== undefined) await new Promise((resolve) => setTimeout(resolve, 15_000))
    child.kill('SIGTERM')
    await exited
    let ok = failed === 0
    for (const [i, f] of gateway.files.entries()) {
      const file = join(out, `f${i}`)
      if (!existsSync(file) || createHash('sha256').update(await readFile(file)).digest('hex') !== f.sha256) ok = false
    }
    return {
      node: nodeLabel,
      nodeVersion: await nodeVersion(nodeBin),
      store: store === 'postgres' ? 'PostgreSQL' : 'SQLite',
      rssAt,
      peak,
      seconds,
      cpuSeconds,
      ok,
      failed
    }
  } finally {
    await db?.drop()
    await rm(dir, { recursive: true, force: true })
  }
}

async function nodeVersion (bin: string): Promise<string> {
  const child = spawn(bin, ['-v'], { stdio: ['ignore', 'pipe', 'ignore'] })
  let text = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d: string) => { text += d })
  await new Promise((resolve) => child.once('close', resolve))
  return text.trim()
}

const started = performance.now()
process.stderr.write(`worker memory: ${downloads} files of ${fileSize} B; building the gateway's content\n`)
const gateway = await startGateway()
const cli = await cliUnderTest(values.cli)
const cli24 = nodes.includes('24') ? await cliFor24(cli.main) : undefined
const runs: Run[] = []
try {
  for (const node of nodes) {
    for (const store of stores as Array<'sqlite' | 'postgres'>) {
      process.stderr.write(`  Node ${node}, ${store}\n`)
      const r = node === '24'
        ? await run(values.node24, node, (cli24 as { main: string }).main, store, gateway)
        : await run(process.execPath, node, cli.main, store, gateway)
      process.stderr.write(`  Node ${r.nodeVersion}, ${r.store}: ${fmt(r.seconds, 1)} s, RSS ${fmt((r.rssAt[from] ?? Number.NaN) / 1e6, 0)} → ${fmt((r.rssAt[downloads] ?? Number.NaN) / 1e6, 0)} MB` +
        `${r.ok ? '' : ` (FAILED: ${r.failed} not successful or wrong bytes)`}\n`)
      runs.push(r)
    }
  }
} finally {
  gateway.stop()
  await cli24?.cleanup()
  await cli.cleanup()
}

const n = (x: number): string => x.toLocaleString('en')
const mb = (bytes: number | undefined): string => fmt((bytes ?? Number.NaN) / 1e6, 0)
const outText = [
  `Worker memory: one \`cidget worker\` (no node flags, default concurrency), ${n(downloads)} verified downloads of ${n(fileSize)} B from one test gateway (own process); ` +
  `${machine()}; CLI: ${cli.describe}${nodeOptions.length > 0 ? `; node ${nodeOptions.join(' ')}` : ''}; ${fmt((performance.now() - started) / 1000, 0)} s in all.`,
  '',
  table(['Node', 'state', `RSS MB at ${n(from)}`, `RSS MB at ${n(downloads)}`, 'difference MB', 'within 20 MB', `RSS MB at each ${n(downloads / 10)}`, 'peak RSS MB', 'downloads/s', 'worker CPU s', 'SHA-256 ok'],
    runs.map((r) => {
      const diff = (r.rssAt[downloads] ?? Number.NaN) - (r.rssAt[from] ?? Number.NaN)
      return [r.nodeVersion, r.store, mb(r.rssAt[from]), mb(r.rssAt[downloads]), fmt(diff / 1e6, 0), diff <= 20e6 ? 'yes' : '**no**',
        marks.map((m) => mb(r.rssAt[m])).join(' '), mb(r.peak), fmt(downloads / r.seconds, 0), fmt(r.cpuSeconds, 1), r.ok ? 'yes' : 'NO']
    }))
].join('\n')
process.stdout.write(outText + '\n')
process.stderr.write(`results: ${await saveResults('worker-memory', { downloads, from, fileSize, nodeOptions, runs })}\n`)
await writeFile(join(BENCH_DIR, 'results', 'worker-memory-last.md'), outText + '\n')
