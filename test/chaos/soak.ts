/**
 * The chaos soak: many downloads, several misbehaving gateways, a downloader
 * that is SIGKILLed at random, and a disk that fills up and empties again, for
 * a given time; then the faults stop and every download must end well.
 *
 * ```sh
 * npm run chaos -- --seconds 300 --seed 1234      # build, then soak for 5 minutes on seed 1234
 * npx tsx test/chaos/soak.ts --seconds 60          # no build; a random seed, printed
 * ```
 *
 * One soak:
 * - builds content from the seed (files from 1 byte to 64 MiB in several DAG
 *   shapes, and directories, one of them HAMT-sharded) into a MemoryBlocks
 *   served by 3 to 5 test gateways on 127.0.0.1 in this process;
 * - mounts a small tmpfs as the one output directory (as root; otherwise a
 *   plain directory, and the disk-full part is skipped with the reason printed);
 * - queues downloads in waves (`cidget add --state … --from`), each file in
 *   verified or path mode (or both), each directory in verified mode; a wave
 *   whose downloads are all settled is checked and deleted, and the next one is
 *   queued, so the downloader stays busy for the whole soak;
 * - runs `cidget resume --all` as a child process, SIGKILLs it at random
 *   moments and starts it again, and now and then also runs `cidget get` on
 *   one unfinished file download (a second process on the same state), killed
 *   at random too;
 * - changes the fault rules of every gateway at random moments (reset, stall,
 *   flip, wrong-block, 429/503 with Retry-After, 500, refuse, throttle, and
 *   latency, ignored ranges, bad Content-Range, 416, no Content-Length); one
 *   gateway, drawn from the seed, never corrupts, so every download can end well;
 * - fills the tmpfs (a filler file that leaves little space) and frees it at
 *   random moments;
 * - watches the output directory all along: a file at a final output path must
 *   always hold the right bytes.
 *
 * After `--seconds`, the faults stop, space is given back, and `cidget resume
 * --all` runs (without kills) until nothing is left to do or a bound of
 * rounds. Then: every download is `success` with the right bytes (SHA-256 per
 * file, every file of a directory), or (`--allow-failures`, the default for the
 * script) `failed`/`paused` with a coded error that the injected faults
 * explain; no final output holds wrong bytes; no lease is held by a dead
 * process; nothing was written outside the output directory; no process
 * exited in an unexpected way. The summary gives downloads by status, faults
 * by kind, kills, disk-full episodes, bytes the gateways sent against the
 * content's size, the wall time and the seed. Any violation makes the exit
 * code 1, and its message names the seed.
 *
 * Every random choice comes from the seed (one independent stream per concern:
 * content, waves, kills, faults, disk), so a seed replays the same content,
 * waves and schedules; the interleaving with the processes still depends on
 * the machine's timing.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { lstat, mkdir, mkdtemp, open, readdir, rm, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced, trickle } from 'ipfs-unixfs-importer/layout'
import { MemoryBlocks, addDirectory, addFile, seededBytes, seededRandom, startTestGateway } from '../../src/testing/index.js'
import type { Fault, FaultRule, ImporterOptions, RequestFormat, RequestRecord, TestGateway } from '../../src/testing/index.js'
import { ERROR_CODES, type ErrorKind } from '../../src/core/errors.js'
import { SqliteStore } from '../../src/store/sqlite.js'
import { parseOwnerId } from '../../src/store/owner.js'
import type { DownloadRecord, DownloadStatus, Mode } from '../../src/core/types.js'

const KiB = 1024
const MiB = 1024 * 1024
const PARTIAL = '.cidget-partial'
const FILLER = '.chaos-filler'

/** The built CLI (the bundle package.json's `bin` names) that runs as the downloading process. */
export const CLI = fileURLToPath(new URL('../../dist/bin/cidget.mjs', import.meta.url))

/** Settings of the downloading processes: short timeouts and backoffs, budgets that faults do not exhaust. */
const CHILD_ENV: Record<string, string> = {
  CIDGET_TIMEOUT_MS: '1000',
  CIDGET_INITIAL_BACKOFF_MS: '50',
  CIDGET_MAX_BACKOFF_MS: '500',
  CIDGET_MAX_RETRY_AFTER_MS: '500',
  CIDGET_MAX_RESUME_ATTEMPTS: '100000',
  CIDGET_MAX_RETRY_ATTEMPTS: '100',
  CIDGET_MAX_CORRUPTION_SWITCHES: '1000',
  CIDGET_LEASE_MS: '3000',
  CIDGET_HEARTBEAT_MS: '500',
  CIDGET_SYNC_INTERVAL_BYTES: String(1 * MiB),
  CIDGET_SYNC_INTERVAL_MS: '250',
  CIDGET_CONCURRENCY: '4'
}

/** Error kinds and codes that the injected faults explain when a download gives up. */
const FAULT_KINDS = new Set<ErrorKind>(['timeout', 'network', 'stream', 'http', 'range'])
const FAULT_CODES = new Set<string>([
  'CIDGET_ERR_ATTEMPTS_EXHAUSTED', 'CIDGET_ERR_LENGTH_MISMATCH', 'CIDGET_ERR_HASH_MISMATCH', 'CIDGET_ERR_BLOCK_INVALID'
])
/** Codes a download may be paused with at the end (all of them mean "continue me"). */
const PAUSE_CODES = new Set<string>(['CIDGET_ERR_DISK_FULL', 'CIDGET_ERR_INTERRUPTED'])
/** Statuses a download is settled in: nothing will pick it up again by itself. */
const SETTLED: readonly DownloadStatus[] = ['success', 'failed', 'cancelled']
const UNFINISHED: readonly DownloadStatus[] = ['pending', 'paused', 'in_progress', 'resuming']

// ---------------------------------------------------------------------------
// randomness


/** A seeded random stream with the draws the soak needs. */
export class Rng {
  readonly next: () => number

  constructor (seed: number) {
    this.next = seededRandom(seed)
  }

  /** An independent stream for one concern, derived from the soak's seed and a label (FNV-1a). */
  static derive (seed: number, label: string): Rng {
    let h = (2166136261 ^ seed) >>> 0
    for (const ch of label) h = Math.imul(h ^ (ch.codePointAt(0) ?? 0), 16777619) >>> 0
    return new Rng(h)
  }

  /** An integer in [lo, hi]. */
  int (lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }

  uniform (lo: number, hi: number): number {
    return lo + this.next() * (hi - lo)
  }

  chance (p: number): boolean {
    return this.next() < p
  }

  pick<T> (items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)]
    if (item === undefined) throw new Error('pick from an empty list')
    return item
  }

  /** An integer in [lo, hi], uniform in log scale: as many 1–10 B sizes as 1–10 MiB ones. */
  logInt (lo: number, hi: number): number {
    const v = Math.exp(this.uniform(Math.log(lo), Math.log(hi + 1)))
    return Math.min(hi, Math.max(lo, Math.floor(v)))
  }

  /** Exponentially distributed with this mean. */
  exp (mean: number): number {
    return -mean * Math.log(1 - this.next())
  }

  weighted<T> (items: ReadonlyArray<readonly [T, number]>): T {
    const total = items.reduce((s, [, w]) => s + w, 0)
    let r = this.next() * total
    for (const [item, w] of items) {
      r -= w
      if (r < 0) return item
    }
    const last = items[items.length - 1]
    if (last === undefined) throw new Error('weighted pick from an empty list')
    return last[0]
  }

  shuffle<T> (items: readonly T[]): T[] {
    const out = [...items]
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1))
      const a = out[i] as T
      out[i] = out[j] as T
      out[j] = a
    }
    return out
  }
}

// ---------------------------------------------------------------------------
// content

interface ExpectedFile { type: 'file', size: number, sha256: string }
interface ExpectedDir { type: 'dir' }
type Expected = ExpectedFile | ExpectedDir

/** A piece of content: a file, or a directory with every entry it must have. */
export interface Item {
  key: string
  kind: 'file' | 'dir'
  /** Base of its output names. */
  name: string
  cid: string
  /** Bytes of content (a directory: the sum of its files). */
  bytes: number
  /** How it was imported (for the summary and for replaying a failure). */
  shape: string
  /** A file: its SHA-256. */
  sha256?: string
  /** A directory: every entry, by relative path. */
  entries?: Map<string, Expected>
}

function sha256 (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

const SHAPES: ReadonlyArray<readonly [string, ImporterOptions]> = [
  ['256 KiB chunks, raw leaves', {}],
  ['64 KiB chunks', { chunker: fixedSize({ chunkSize: 64 * KiB }) }],
  ['1 MiB chunks', { chunker: fixedSize({ chunkSize: MiB }) }],
  ['dag-pb leaves', { rawLeaves: false }],
  ['CIDv0', { cidVersion: 0, rawLeaves: false }],
  ['11 links per node', { layout: balanced({ maxChildrenPerNode: 11 }), chunker: fixedSize({ chunkSize: 16 * KiB }) }],
  ['trickle', { layout: trickle(), chunker: fixedSize({ chunkSize: 32 * KiB }) }]
]

/** The largest file for a soak of this length: 64 MiB from 4 minutes on. */
function largestFile (seconds: number): number {
  if (seconds >= 240) return 64 * MiB
  return Math.round(Math.min(32 * MiB, Math.max(2 * MiB, seconds / 60 * 12 * MiB)))
}

/** The soak's content, all drawn from `rng`: many small files, a few large ones, and some directories. */
async function buildContent (blocks: MemoryBlocks, rng: Rng, seconds: number): Promise<Item[]> {
  const items: Item[] = []
  const largest = largestFile(seconds)
  const sizes: number[] = [1, largest]
  for (let i = rng.int(1, 2); i > 0; i--) sizes.push(rng.logInt(Math.floor(largest / 8), Math.floor(largest / 2)))
  for (let i = rng.int(2, 4); i > 0; i--) sizes.push(rng.logInt(256 * KiB, 4 * MiB))
  for (let i = rng.int(8, 14); i > 0; i--) sizes.push(rng.logInt(1, MiB))
  for (const [n, size] of sizes.entries()) {
    const [shape, opts] = size >= 32 * MiB ? SHAPES[0] as typeof SHAPES[number] : rng.pick(SHAPES)
    const data = seededBytes(size, rng.int(1, 0x7fffffff))
    const cid = (await addFile(blocks, data, opts)).toString()
    const key = `f${String(n).padStart(2, '0')}`
    items.push({ key, kind: 'file', name: `${key}-${size}.bin`, cid, bytes: size, shape, sha256: sha256(data) })
  }
  const dirs = rng.int(2, 3)
  for (let d = 0; d < dirs; d++) {
    const sharded = d === 0
    const entries: Array<{ path: string, content?: Uint8Array }> = []
    const names = ['data.bin', 'read me.txt', 'ünïcode.txt', 'x', '.hidden', 'a-b_c.d']
    const count = sharded ? rng.int(20, 40) : rng.int(3, 9)
    for (let i = 0; i < count; i++) {
      const sub = !sharded && rng.chance(0.4) ? `${rng.pick(['sub', 'deep/er', 'z'])}/` : ''
      const size = rng.chance(0.1) ? 0 : rng.logInt(1, sharded ? 8 * KiB : 768 * KiB)
      entries.push({ path: `${sub}${i}-${rng.pick(names)}`, content: seededBytes(size, rng.int(1, 0x7fffffff)) })
    }
    if (rng.chance(0.6)) entries.push({ path: 'empty' })
    const [shape, opts] = rng.pick(SHAPES.slice(0, 4))
    const cid = (await addDirectory(blocks, entries, sharded ? { ...opts, shardSplitThresholdBytes: 1 } : opts)).toString()
    const expected = new Map<string, Expected>()
    let bytes = 0
    for (const e of entries) {
      const parts = e.path.split('/')
      for (let i = 1; i < parts.length; i++) expected.set(parts.slice(0, i).join('/'), { type: 'dir' })
      if (e.content === undefined) expected.set(e.path, { type: 'dir' })
      else {
        expected.set(e.path, { type: 'file', size: e.content.length, sha256: sha256(e.content) })
        bytes += e.content.length
      }
    }
    const key = `d${d}`
    items.push({ key, kind: 'dir', name: `${key}${sharded ? '-sharded' : ''}`, cid, bytes, shape: sharded ? `${shape}, HAMT-sharded` : shape, entries: expected })
  }
  return items
}

// ---------------------------------------------------------------------------
// faults

/** A fault kind as the summary counts it (status faults by their status). */
type FaultKind = string

/** One random fault; `honest` gateways never corrupt. */
function randomFault (rng: Rng, honest: boolean): Fault {
  const kinds: Array<readonly [string, number]> = [
    ['reset', 3], ['stall', 1.5], ['status-429', 1.2], ['status-503', 1.2], ['status-500', 1.2],
    ['refuse', 1.2], ['throttle', 1.5], ['latency', 0.8], ['ignore-range', 0.5], ['bad-content-range', 0.5],
    ['range-not-satisfiable', 0.4], ['no-length', 0.4]
  ]
  if (!honest) kinds.push(['flip', 1.5], ['wrong-block', 1.5])
  const kind = rng.weighted(kinds)
  switch (kind) {
    case 'reset': return { type: 'reset', afterBytes: rng.chance(0.2) ? 0 : rng.logInt(1, 2 * MiB) }
    case 'stall': return { type: 'stall', afterBytes: rng.chance(0.2) ? 0 : rng.logInt(1, 2 * MiB) }
    case 'status-429': return { type: 'status', status: 429, retryAfter: rng.int(0, 2) }
    case 'status-503': return { type: 'status', status: 503, retryAfter: rng.int(0, 2) }
    case 'status-500': return { type: 'status', status: 500 }
    case 'refuse': return { type: 'refuse' }
    case 'throttle': return { type: 'throttle', bytesPerSecond: rng.logInt(64 * KiB, 4 * MiB) }
    case 'latency': return { type: 'latency', ms: rng.int(20, 600) }
    case 'ignore-range': return { type: 'ignore-range' }
    case 'bad-content-range': return { type: 'bad-content-range' }
    case 'range-not-satisfiable': return { type: 'range-not-satisfiable' }
    case 'no-length': return { type: 'no-length' }
    case 'flip': return rng.chance(0.7) ? { type: 'flip' } : { type: 'flip', atByte: rng.logInt(1, 512 * KiB) }
    default: return { type: 'wrong-block' }
  }
}

/** A gateway's rules for a while: none (calm), or one to three random ones. */
function randomRules (rng: Rng, honest: boolean): FaultRule[] {
  if (rng.chance(0.2)) return []
  const rules: FaultRule[] = []
  for (let n = rng.int(1, 3); n > 0; n--) {
    const fault = randomFault(rng, honest)
    const rule: FaultRule = { fault, probability: rng.uniform(0.05, 0.5), seed: rng.int(1, 0x7fffffff) }
    if (rng.chance(0.5)) rule.match = { format: rng.pick<RequestFormat>(['raw', 'car', 'path']) }
    rules.push(rule)
  }
  return rules
}

function faultKind (r: RequestRecord): FaultKind | null {
  if (r.fault === null) return null
  return r.fault === 'status' ? `status ${r.status}` : r.fault
}

// ---------------------------------------------------------------------------
// processes

interface Proc {
  label: string
  child: ChildProcess
  pid: number
  startedAt: number
  killedByUs: boolean
  stdout: string
  stderr: string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    if (signal?.aborted === true) { resolve(); return }
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, Math.max(0, ms))
    signal?.addEventListener('abort', done, { once: true })
  })
}

function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Every path below `dir` (relative, '/'-separated), directories marked with a trailing '/'. */
async function listTree (dir: string, skip: (rel: string) => boolean = () => false): Promise<string[]> {
  const out: string[] = []
  const walk = async (abs: string, rel: string): Promise<void> => {
    let entries
    try {
      entries = await readdir(abs, { withFileTypes: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    for (const e of entries) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`
      if (skip(r)) continue
      if (e.isDirectory()) {
        out.push(r + '/')
        await walk(join(abs, e.name), r)
      } else {
        out.push(e.isSymbolicLink() ? `${r} -> (symlink)` : r)
      }
    }
  }
  await walk(dir, '')
  return out.sort()
}

function formatBytes (n: number): string {
  if (n < KiB) return `${n} B`
  if (n < MiB) return `${(n / KiB).toFixed(1)} KiB`
  if (n < 1024 * MiB) return `${(n / MiB).toFixed(1)} MiB`
  return `${(n / 1024 / MiB).toFixed(2)} GiB`
}

// ---------------------------------------------------------------------------
// the soak

export interface SoakOptions {
  /** Length of the chaos phase. */
  seconds: number
  seed: number
  /** Gateways (3 to 5). @default drawn from the seed */
  gateways?: number
  /** Only `success` is acceptable at the end (the short form in `npm test`). @default false */
  requireAllSuccess?: boolean
  /** Keep the temporary directory (and the tmpfs mounted) for inspection. @default false */
  keep?: boolean
  /** Progress lines; the summary is returned, not logged. @default none */
  log?: (line: string) => void
  /** Most `resume --all` rounds after the chaos. @default 5 */
  finalRounds?: number
}

export interface SoakResult {
  seed: number
  seconds: number
  violations: string[]
  statuses: Record<string, number>
  faults: Record<string, number>
  kills: number
  diskFullEpisodes: number
  bytesSent: number
  contentBytes: number
  wallMs: number
  summary: string
}

interface Download {
  wave: number
  item: Item
  mode: Mode
  /** Output path relative to the output directory. */
  rel: string
  abs: string
  id: number
}

interface Wave {
  n: number
  downloads: Download[]
  checked: boolean
  bytes: number
}

/** Runs one soak and resolves with its result; never throws for a violation (see `violations`). */
export async function runSoak (opts: SoakOptions): Promise<SoakResult> {
  const wallStart = performance.now()
  const { seed, seconds } = opts
  const log = opts.log ?? (() => {})
  const requireAllSuccess = opts.requireAllSuccess ?? false
  const finalRounds = opts.finalRounds ?? 5
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`)
  if (!Number.isSafeInteger(seed)) throw new Error(`the seed must be an integer, got ${seed}`)

  const rngContent = Rng.derive(seed, 'content')
  const rngWaves = Rng.derive(seed, 'waves')
  const rngKills = Rng.derive(seed, 'kills')
  const rngSide = Rng.derive(seed, 'side')
  const rngDisk = Rng.derive(seed, 'disk')
  const rngSetup = Rng.derive(seed, 'setup')

  const violations: string[] = []
  const violate = (msg: string): void => {
    violations.push(msg)
    log(`VIOLATION: ${msg}`)
  }
  const t0 = Date.now()
  const at = (): string => `t=${((Date.now() - t0) / 1000).toFixed(1)}s`

  const root = await mkdtemp(join(tmpdir(), 'cidget-chaos-'))
  const out = join(root, 'out')
  const stateDir = join(root, 'state')
  const home = join(root, 'home')
  const cwd = join(root, 'cwd')
  const soakDir = join(root, 'soak')
  for (const d of [out, stateDir, home, cwd, soakDir]) await mkdir(d)
  const state = join(stateDir, 'state.db')

  const gateways: TestGateway[] = []
  const procs = new Set<Proc>()
  let mounted = false
  let store: SqliteStore | undefined
  const stop = new AbortController()

  // tallies
  const faults = new Map<FaultKind, number>()
  let bytesSent = 0
  let kills = 0
  let started = 0
  let diskFullEpisodes = 0
  const diskFullSeen = new Set<number>()
  const processErrors = new Map<string, number>()
  const waves: Wave[] = []
  const byId = new Map<number, Download>()
  let records = new Map<number, DownloadRecord>()
  const sideByWave = new Map<number, number>()
  let contentBytes = 0
  let finalRoundsRun = 0
  let chaosEndedAt = 0
  let noDiskReason: string | undefined
  let honest = 0
  let items: Item[] = []
  let tmpfsSize = 0
  let finalPathChecks = 0

  const childEnv = (): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CIDGET_')) env[k] = v
    return { ...env, ...CHILD_ENV, HOME: home, CIDGET_GATEWAYS: gateways.map(g => g.url).join(',') }
  }

  const spawnCli = (label: string, args: string[]): Proc => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    child.once('error', (err) => violate(`${label}: ${err.message}`))
    if (child.pid === undefined) throw new Error(`could not start ${label}`)
    started++
    const proc: Proc = {
      label,
      child,
      pid: child.pid,
      startedAt: Date.now(),
      killedByUs: false,
      stdout: '',
      stderr: '',
      exited: new Promise(resolve => child.once('close', (code, signal) => resolve({ code, signal })))
    }
    child.stdout?.on('data', (d: Buffer) => { proc.stdout += d.toString() })
    child.stderr?.on('data', (d: Buffer) => {
      proc.stderr += d.toString()
      if (proc.stderr.length > 64 * KiB) proc.stderr = proc.stderr.slice(-32 * KiB)
    })
    procs.add(proc)
    void proc.exited.then(() => procs.delete(proc))
    return proc
  }

  const kill = (proc: Proc): void => {
    if (procs.has(proc) && proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.killedByUs = true
      kills++
      proc.child.kill('SIGKILL')
    }
  }

  /** Judges how a process ended: SIGKILL by us is fine; so are exit codes 0/1/3 with coded errors only. */
  const judgeExit = (proc: Proc, code: number | null, signal: NodeJS.Signals | null, allowed: readonly string[] = []): void => {
    if (proc.killedByUs) return
    const tail = proc.stderr.trim().split('\n').slice(-5).join(' | ')
    if (signal !== null) {
      violate(`${proc.label} (pid ${proc.pid}) died of ${signal} (${at()}): ${tail}`)
      return
    }
    for (const line of proc.stderr.split('\n')) {
      const l = line.trim()
      if (l === '' || l === 'nothing to resume' || l.startsWith('cidget: pausing')) continue
      const m = /\[(CIDGET_ERR_[A-Z_]+)\]$/.exec(l)
      if (m === null) {
        violate(`${proc.label} (pid ${proc.pid}) wrote an uncoded line to stderr (${at()}): ${l.slice(0, 300)}`)
        continue
      }
      const c = m[1] as string
      const key = `${proc.label.split(' ')[0] ?? proc.label}: ${c}`
      processErrors.set(key, (processErrors.get(key) ?? 0) + 1)
      if (!allowed.includes(c)) violate(`${proc.label} (pid ${proc.pid}) failed with ${c} (${at()}): ${l.slice(0, 300)}`)
    }
    if (code !== 0 && code !== 1 && code !== 3) violate(`${proc.label} (pid ${proc.pid}) exited with code ${String(code)} (${at()}): ${tail}`)
  }

  /** Runs the CLI to its end (killing it after `timeoutMs`). */
  const runToEnd = async (label: string, args: string[], timeoutMs: number): Promise<{ proc: Proc, code: number | null, signal: NodeJS.Signals | null, timedOut: boolean }> => {
    const proc = spawnCli(label, args)
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      proc.child.kill('SIGKILL')
    }, timeoutMs)
    const { code, signal } = await proc.exited
    clearTimeout(timer)
    return { proc, code, signal, timedOut }
  }

  const refresh = async (): Promise<void> => {
    if (store === undefined) return
    const next = new Map<number, DownloadRecord>()
    let afterId = 0
    for (;;) {
      const page = await store.listDownloads({ afterId, limit: 500 })
      if (page.length === 0) break
      for (const r of page) next.set(r.id, r)
      afterId = (page[page.length - 1] as DownloadRecord).id
    }
    for (const r of next.values()) {
      const before = records.get(r.id)
      if (r.status === 'paused' && r.errorCode === 'CIDGET_ERR_DISK_FULL' && !(before?.status === 'paused' && before.errorCode === 'CIDGET_ERR_DISK_FULL')) diskFullSeen.add(r.id)
    }
    records = next
  }

  // --- checks -----------------------------------------------------------------

  /** Verified files at final paths: path → identity of the version checked. */
  const verifiedAt = new Map<string, string>()

  /** Checks one file at a final path against what it must hold (once per version of the file). */
  const checkFinalFile = async (abs: string, expected: Expected | undefined, what: string): Promise<void> => {
    let st
    try {
      st = await lstat(abs)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    const ident = `${st.ino}:${st.size}:${st.mtimeMs}:${st.isDirectory() ? 'd' : st.isFile() ? 'f' : 'o'}`
    if (verifiedAt.get(abs) === ident) return
    if (expected === undefined) {
      violate(`${what}: unexpected entry ${abs} at a final path (${at()})`)
    } else if (expected.type === 'dir') {
      if (!st.isDirectory()) violate(`${what}: ${abs} should be a directory (${at()})`)
    } else if (!st.isFile()) {
      violate(`${what}: ${abs} should be a regular file (${at()})`)
    } else if (st.size !== expected.size) {
      violate(`${what}: ${abs} at its final path has ${st.size} bytes, not ${expected.size} (${at()})`)
    } else {
      const h = await sha256File(abs).catch((err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : Promise.reject(err))
      if (h === undefined) return
      if (h !== expected.sha256) violate(`${what}: ${abs} at its final path has wrong bytes (sha256 ${h}, want ${expected.sha256}) (${at()})`)
    }
    verifiedAt.set(abs, ident)
    finalPathChecks++
  }

  /** Checks whatever sits at a download's final path (nothing is fine). */
  const checkOutput = async (d: Download): Promise<boolean> => {
    const what = `download ${d.id} (${d.item.key}, ${d.mode}, wave ${d.wave})`
    let st
    try {
      st = await lstat(d.abs)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
    if (d.item.kind === 'file') {
      await checkFinalFile(d.abs, { type: 'file', size: d.item.bytes, sha256: d.item.sha256 ?? '' }, what)
      return true
    }
    if (!st.isDirectory()) {
      violate(`${what}: ${d.abs} should be a directory (${at()})`)
      return true
    }
    const entries = d.item.entries ?? new Map<string, Expected>()
    const found = await listTree(d.abs)
    const seen = new Set<string>()
    for (const f of found) {
      const rel = f.endsWith('/') ? f.slice(0, -1) : f
      seen.add(rel)
      await checkFinalFile(join(d.abs, rel), entries.get(rel), what)
    }
    for (const rel of entries.keys()) {
      if (!seen.has(rel)) violate(`${what}: ${join(d.abs, rel)} is missing from the finished directory (${at()})`)
    }
    return true
  }

  /** The full check of a settled wave (or, at the end, of every wave still on disk). */
  const checkWave = async (wave: Wave, final: boolean): Promise<void> => {
    const expectedNames = new Set<string>()
    for (const d of wave.downloads) {
      const name = d.rel.slice(`w${wave.n}/`.length)
      expectedNames.add(name)
      expectedNames.add(name + PARTIAL)
      const what = `download ${d.id} (${d.item.key} ${d.item.kind} of ${formatBytes(d.item.bytes)}, ${d.item.shape}, ${d.mode}, wave ${wave.n})`
      const rec = records.get(d.id)
      if (rec === undefined) {
        violate(`${what}: no record in the state`)
        continue
      }
      const present = await checkOutput(d)
      const partial = await lstat(d.abs + PARTIAL).then(() => true, () => false)
      if (rec.status === 'success') {
        if (!present) violate(`${what}: success but ${d.abs} is missing`)
        if (partial) violate(`${what}: success but its partial ${d.abs}${PARTIAL} is left behind`)
        if (d.item.kind === 'file' && rec.hash !== d.item.sha256) violate(`${what}: success with hash ${String(rec.hash)}, want ${String(d.item.sha256)}`)
        if (rec.size !== d.item.bytes && d.item.kind === 'file') violate(`${what}: success with size ${String(rec.size)}, want ${d.item.bytes}`)
      } else if (rec.status === 'failed' || rec.status === 'paused') {
        const code = rec.errorCode
        if (code === null || !(code in ERROR_CODES)) {
          violate(`${what}: ${rec.status} without a known error code (errorCode ${String(code)}, error ${JSON.stringify(rec.error)})`)
        } else if (requireAllSuccess) {
          violate(`${what}: ended ${rec.status} with ${code}: ${rec.error ?? ''}`)
        } else {
          const kind = ERROR_CODES[code as keyof typeof ERROR_CODES].kind
          const explained = rec.status === 'paused' ? PAUSE_CODES.has(code) : FAULT_KINDS.has(kind) || FAULT_CODES.has(code)
          if (!explained) violate(`${what}: ended ${rec.status} with ${code}, which the injected faults do not explain: ${rec.error ?? ''}`)
          else log(`note: ${what} ended ${rec.status} with ${code}: ${rec.error ?? ''}`)
        }
      } else if (final || !UNFINISHED.includes(rec.status)) {
        violate(`${what}: left ${rec.status}${rec.errorCode === null ? '' : ` (${rec.errorCode})`}`)
      }
    }
    for (const name of await readdir(join(out, `w${wave.n}`)).catch(() => [] as string[])) {
      if (!expectedNames.has(name)) violate(`wave ${wave.n}: unexpected entry ${join(out, `w${wave.n}`, name)}`)
    }
    wave.checked = true
  }

  /** Watches final paths: every file at one must hold the right bytes at any moment. */
  const scan = async (): Promise<void> => {
    for (const wave of waves) {
      if (wave.checked) continue
      for (const d of wave.downloads) {
        if (d.id !== 0) await checkOutput(d)
      }
    }
  }

  // --- set-up ---------------------------------------------------------------------

  const summaryLines: string[] = []
  try {
    const gatewayCount = opts.gateways ?? rngSetup.int(3, 5)
    if (gatewayCount < 1) throw new Error('at least one gateway is needed')
    const blocks = new MemoryBlocks()
    const buildStart = performance.now()
    items = await buildContent(blocks, rngContent, seconds)
    const poolBytes = items.reduce((s, i) => s + i.bytes, 0)
    log(`seed ${seed}: content of ${items.length} items (${formatBytes(poolBytes)}) built in ${((performance.now() - buildStart) / 1000).toFixed(1)} s`)
    for (let i = 0; i < gatewayCount; i++) {
      const g = await startTestGateway({ blocks })
      g.on('response', (r) => {
        bytesSent += r.bytesSent
        const k = faultKind(r)
        if (k !== null) faults.set(k, (faults.get(k) ?? 0) + 1)
      })
      gateways.push(g)
    }
    honest = rngSetup.int(0, gatewayCount - 1)

    // the output directory: a small tmpfs (two waves at most live on it)
    const waveBudget = Math.max(8 * MiB, poolBytes)
    const fileCount = items.reduce((s, i) => s + (i.entries?.size ?? 1), 0)
    tmpfsSize = Math.ceil((2 * waveBudget + fileCount * 2 * 8 * KiB + 16 * MiB) / MiB) * MiB
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsSize}`, 'tmpfs', out], { stdio: 'pipe' })
      mounted = true
    } catch (err) {
      noDiskReason = `cannot mount a tmpfs on ${out} (${((err as Error).message.split('\n')[0] ?? '').trim()}); using a plain directory, disk-full episodes skipped`
      log(noDiskReason)
    }
    const before = await listTree(root, rel => rel.startsWith('out/') || rel.startsWith('state/') || rel.startsWith('soak/'))
    log(`seed ${seed}: ${gatewayCount} gateways (${gateways.map(g => g.url).join(', ')}; gateway ${honest} never corrupts), output ${out}${mounted ? ` (tmpfs of ${formatBytes(tmpfsSize)})` : ''}`)

    // --- waves ------------------------------------------------------------------

    const queueWave = async (): Promise<void> => {
      const n = waves.length + 1
      const picks: Array<{ item: Item, mode: Mode }> = []
      let bytes = 0
      for (const item of rngWaves.shuffle(items)) {
        if (!rngWaves.chance(0.55)) continue
        const modes: Mode[] = item.kind === 'dir'
          ? ['verified']
          : rngWaves.chance(0.2) ? ['verified', 'path'] : [rngWaves.pick<Mode>(['verified', 'path'])]
        for (const mode of modes) {
          if (bytes + item.bytes > waveBudget && picks.length > 0) continue
          picks.push({ item, mode })
          bytes += item.bytes
        }
      }
      if (picks.length === 0) picks.push({ item: rngWaves.pick(items), mode: 'verified' })
      const wave: Wave = { n, downloads: [], checked: false, bytes: 0 }
      const lines: string[] = []
      for (const { item, mode } of picks) {
        const rel = `w${n}/${item.kind === 'file' ? `${item.key}-${mode}-${item.name}` : item.name}`
        wave.downloads.push({ wave: n, item, mode, rel, abs: join(out, rel), id: 0 })
        wave.bytes += item.bytes
        lines.push(JSON.stringify({ target: item.cid, output: rel, mode, gateways: rngWaves.shuffle(gateways.map(g => g.url)) }))
      }
      const list = join(soakDir, `wave-${n}.jsonl`)
      await writeFile(list, lines.join('\n') + '\n')
      const r = await runToEnd(`add (wave ${n})`, ['add', '--state', state, '--dir', out, '--from', list, '--json'], 60_000)
      if (r.code !== 0) {
        violate(`cidget add (wave ${n}) exited ${String(r.code ?? r.signal)}${r.timedOut ? ' (timed out)' : ''}: ${r.proc.stderr.trim().slice(0, 500)}`)
        return
      }
      const queued = r.proc.stdout.trim().split('\n').filter(l => l !== '').map(l => JSON.parse(l) as DownloadRecord)
      for (const d of wave.downloads) {
        const rec = queued.find(q => q.output === d.abs)
        if (rec === undefined) {
          violate(`cidget add (wave ${n}) did not report a record for ${d.abs}`)
          continue
        }
        d.id = rec.id
        byId.set(rec.id, d)
      }
      contentBytes += wave.bytes
      waves.push(wave)
      store ??= SqliteStore.open(state)
      log(`${at()} wave ${n}: ${wave.downloads.length} downloads, ${formatBytes(wave.bytes)} (ids ${wave.downloads[0]?.id ?? '?'}–${wave.downloads[wave.downloads.length - 1]?.id ?? '?'})`)
    }

    const liveWaves = (): Wave[] => waves.filter(w => !w.checked)
    const statusOf = (d: Download): DownloadStatus | undefined => records.get(d.id)?.status
    const unsettled = (w: Wave): number => w.downloads.filter(d => { const s = statusOf(d); return s === undefined || !SETTLED.includes(s) }).length

    await queueWave()
    await refresh()

    // --- the chaos loops ----------------------------------------------------------

    const deadline = Date.now() + seconds * 1000
    const signal = stop.signal

    /** `resume --all`, killed at random moments and started again. */
    const workerLoop = async (): Promise<void> => {
      let quickExits = 0
      while (!signal.aborted) {
        const work = [...records.values()].some(r => r.status === 'pending' || r.status === 'paused' ||
          ((r.status === 'in_progress' || r.status === 'resuming') && (r.leaseOwner === null || !pidAlive(parseOwnerId(r.leaseOwner)?.pid ?? -1))))
        if (!work) {
          await sleep(200, signal)
          continue
        }
        const proc = spawnCli('resume --all', ['resume', '--all', '--state', state, '--json'])
        // a third of the kills come early (opening the state, recovering, the first requests), the rest at any time
        const life = rngKills.chance(0.3) ? rngKills.uniform(0, 600) : rngKills.uniform(600, 4000)
        const timer = setTimeout(() => kill(proc), life)
        const onStop = (): void => kill(proc)
        signal.addEventListener('abort', onStop, { once: true })
        const { code, signal: sig } = await proc.exited
        clearTimeout(timer)
        signal.removeEventListener('abort', onStop)
        judgeExit(proc, code, sig)
        const lived = Date.now() - proc.startedAt
        quickExits = !proc.killedByUs && lived < 1500 ? quickExits + 1 : 0
        await sleep(rngKills.uniform(20, 300) + Math.min(quickExits, 5) * 300, signal)
      }
    }

    /** Now and then, `cidget get` on one unfinished file download: a second process on the same state. */
    const sideLoop = async (): Promise<void> => {
      while (!signal.aborted) {
        await sleep(rngSide.exp(4000), signal)
        if (signal.aborted) break
        const candidates = liveWaves().flatMap(w => w.downloads)
          .filter(d => d.item.kind === 'file' && d.id !== 0 && (statusOf(d) === 'pending' || statusOf(d) === 'paused'))
        if (candidates.length === 0) continue
        const d = rngSide.pick(candidates)
        const proc = spawnCli(`get ${d.id}`, ['get', d.item.cid, '-o', d.abs, '--mode', d.mode, '--state', state, '--json',
          ...rngSide.shuffle(gateways.map(g => g.url)).flatMap(u => ['-g', u])])
        sideByWave.set(d.wave, (sideByWave.get(d.wave) ?? 0) + 1)
        const timer = rngSide.chance(0.6) ? setTimeout(() => kill(proc), rngSide.uniform(50, 4000)) : undefined
        const onStop = (): void => kill(proc)
        signal.addEventListener('abort', onStop, { once: true })
        void proc.exited.then(({ code, signal: sig }) => {
          if (timer !== undefined) clearTimeout(timer)
          signal.removeEventListener('abort', onStop)
          sideByWave.set(d.wave, (sideByWave.get(d.wave) ?? 1) - 1)
          // another process holding the download is the expected way for `get` to give up
          judgeExit(proc, code, sig, ['CIDGET_ERR_LEASE_HELD'])
        })
      }
    }

    /** New rules on each gateway at random moments. */
    const faultLoop = async (g: TestGateway, i: number): Promise<void> => {
      const rng = Rng.derive(seed, `faults-${i}`)
      while (!signal.aborted) {
        g.setFaults(randomRules(rng, i === honest))
        // a bandwidth cap half of the time: transfers take long enough for kills and full disks to land mid-body
        g.setMaxBytesPerSecond(rng.chance(0.5) ? rng.logInt(MiB, 16 * MiB) : undefined)
        await sleep(Math.min(8000, Math.max(300, rng.exp(2500))), signal)
      }
      g.clearFaults()
      g.setMaxBytesPerSecond(undefined)
    }

    /** Fills the tmpfs up (leaving little space) and frees it at random moments. */
    const diskLoop = async (): Promise<void> => {
      if (!mounted) return
      const filler = join(out, FILLER)
      const zeros = Buffer.alloc(MiB)
      while (!signal.aborted) {
        await sleep(rngDisk.exp(8000), signal)
        if (signal.aborted) break
        const leave = rngDisk.pick([0, 4 * KiB, 64 * KiB, 512 * KiB, 2 * MiB])
        const hold = rngDisk.uniform(500, 5000)
        const s = await statfs(out)
        let left = Number(s.bavail) * Number(s.bsize) - leave
        const fh = await open(filler, 'w')
        try {
          while (left > 0) {
            const n = Math.min(left, zeros.length)
            await fh.write(zeros, 0, n)
            left -= n
          }
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
        } finally {
          await fh.close()
        }
        diskFullEpisodes++
        log(`${at()} disk full (leaving ${formatBytes(leave)}) for ${(hold / 1000).toFixed(1)} s`)
        await sleep(hold, signal)
        await rm(filler, { force: true })
      }
      await rm(filler, { force: true })
    }

    /** Polls the state, watches final paths, checks settled waves and queues new ones. */
    const monitorLoop = async (): Promise<void> => {
      while (!signal.aborted) {
        await sleep(500, signal)
        await refresh()
        await scan()
        for (const w of liveWaves()) {
          if (unsettled(w) === 0 && (sideByWave.get(w.n) ?? 0) === 0 && !signal.aborted) {
            await checkWave(w, false)
            await rm(join(out, `w${w.n}`), { recursive: true, force: true })
            for (const d of w.downloads) for (const k of [...verifiedAt.keys()]) if (k === d.abs || k.startsWith(d.abs + '/')) verifiedAt.delete(k)
            log(`${at()} wave ${w.n} settled and checked: ${w.downloads.filter(d => statusOf(d) === 'success').length}/${w.downloads.length} success`)
          }
        }
        const live = liveWaves()
        const openCount = live.reduce((s, w) => s + unsettled(w), 0)
        const total = live.reduce((s, w) => s + w.downloads.length, 0)
        if (Date.now() < deadline - 1000 && live.length < 2 && openCount <= total * 0.3 && !signal.aborted) await queueWave()
        for (const g of gateways) g.requests.length = 0
      }
    }

    log(`${at()} chaos for ${seconds} s`)
    const loops = [workerLoop(), sideLoop(), diskLoop(), monitorLoop(), ...gateways.map(async (g, i) => await faultLoop(g, i))]
    const loopsDone = Promise.allSettled(loops)
    await Promise.race([sleep(deadline - Date.now()), loopsDone])
    stop.abort()
    const settled = await loopsDone
    for (const s of settled) if (s.status === 'rejected') violate(`the soak itself failed: ${String((s.reason as Error)?.stack ?? s.reason)}`)
    chaosEndedAt = Date.now()

    // --- the end: no faults, space back, resume --all until nothing is left ---------

    for (const g of gateways) {
      g.clearFaults()
      g.setMaxBytesPerSecond(undefined)
    }
    await Promise.all([...procs].map(async p => { kill(p); await p.exited }))
    await rm(join(out, FILLER), { force: true })
    await refresh()
    log(`${at()} faults stopped; final rounds`)
    for (let round = 1; round <= finalRounds; round++) {
      await refresh()
      if (![...records.values()].some(r => UNFINISHED.includes(r.status))) break
      finalRoundsRun = round
      const left = [...records.values()].filter(r => UNFINISHED.includes(r.status)).reduce((s, r) => s + (byId.get(r.id)?.item.bytes ?? 0), 0)
      const r = await runToEnd(`final resume --all (round ${round})`, ['resume', '--all', '--state', state, '--json'], 60_000 + left / (2 * MiB) * 1000)
      if (r.timedOut) violate(`final resume --all (round ${round}) did not end within its time (${at()}); stderr: ${r.proc.stderr.trim().slice(-500)}`)
      else judgeExit(r.proc, r.code, r.signal)
    }

    // --- checks ---------------------------------------------------------------------

    const list = await runToEnd('list --json', ['list', '--json', '--state', state], 60_000)
    judgeExit(list.proc, list.code, list.signal)
    records = new Map(list.proc.stdout.trim().split('\n').filter(l => l !== '').map(l => JSON.parse(l) as DownloadRecord).map(r => [r.id, r]))
    for (const w of liveWaves()) await checkWave(w, true)
    for (const r of records.values()) {
      if (!byId.has(r.id)) violate(`download ${r.id} (${r.target} → ${r.output}) is in the state but the soak never queued it`)
      if (r.leaseOwner !== null) {
        const pid = parseOwnerId(r.leaseOwner)?.pid
        if (pid === undefined || !pidAlive(pid)) violate(`download ${r.id} (${r.status}) holds a lease of a dead process: ${r.leaseOwner}`)
      }
    }
    const after = await listTree(root, rel => rel.startsWith('out/') || rel.startsWith('state/') || rel.startsWith('soak/'))
    const added = after.filter(p => !before.includes(p))
    const removed = before.filter(p => !after.includes(p))
    if (added.length > 0 || removed.length > 0) violate(`outside the output directory: added ${JSON.stringify(added)}, removed ${JSON.stringify(removed)}`)
    for (const name of await readdir(stateDir)) {
      if (!/^state\.db(-wal|-shm|-journal)?$/.test(name)) violate(`unexpected file next to the state: ${join(stateDir, name)}`)
    }
    for (const name of await readdir(out)) {
      if (!/^w\d+$/.test(name) && name !== 'lost+found') violate(`unexpected entry in the output directory: ${join(out, name)}`)
    }
    for (const p of procs) violate(`${p.label} (pid ${p.pid}) still runs after the soak`)
  } finally {
    stop.abort()
    for (const p of procs) {
      p.killedByUs = true
      p.child.kill('SIGKILL')
    }
    await Promise.all([...procs].map(async p => await p.exited))
    for (const g of gateways) await g.close()
    await store?.close().catch(() => {})
    if (opts.keep !== true) {
      if (mounted) {
        try {
          execFileSync('umount', [out], { stdio: 'pipe' })
        } catch {
          execFileSync('umount', ['-l', out], { stdio: 'pipe' })
        }
      }
      await rm(root, { recursive: true, force: true })
    }
  }

  // --- summary ----------------------------------------------------------------------

  const statuses: Record<string, number> = {}
  const failures = new Map<string, number>()
  for (const d of byId.values()) {
    const r = records.get(d.id)
    const s = r?.status ?? 'missing'
    statuses[s] = (statuses[s] ?? 0) + 1
    if (r !== undefined && r.status !== 'success') failures.set(`${r.status} ${String(r.errorCode)}`, (failures.get(`${r.status} ${String(r.errorCode)}`) ?? 0) + 1)
  }
  const faultCounts = Object.fromEntries([...faults.entries()].sort((a, b) => b[1] - a[1]))
  const wallMs = performance.now() - wallStart
  const files = items.filter(i => i.kind === 'file')
  const dirs = items.filter(i => i.kind === 'dir')
  const downloads = [...byId.values()]
  const replay = `npm run chaos -- --seconds ${seconds} --seed ${seed}${requireAllSuccess ? ' --require-all-success' : ''}`
  summaryLines.push(
    `chaos soak: seed ${seed}, ${seconds} s of chaos, ${gateways.length} gateways (gateway ${honest} never corrupts)`,
    `content: ${files.length} files (${formatBytes(Math.min(...files.map(f => f.bytes)))} to ${formatBytes(Math.max(...files.map(f => f.bytes)))}), ` +
      `${dirs.length} directories (${dirs.reduce((s, d) => s + [...(d.entries?.values() ?? [])].filter(e => e.type === 'file').length, 0)} files), ${formatBytes(items.reduce((s, i) => s + i.bytes, 0))}`,
    `downloads: ${downloads.length} in ${waves.length} waves (verified ${downloads.filter(d => d.mode === 'verified').length}, path ${downloads.filter(d => d.mode === 'path').length})`,
    `final status: ${Object.entries(statuses).map(([k, v]) => `${k} ${v}`).join(', ')}${failures.size > 0 ? ` (${[...failures.entries()].map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}`,
    `faults injected: ${Object.entries(faultCounts).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
    `processes: ${started} started, ${kills} SIGKILLed${processErrors.size > 0 ? `; coded errors: ${[...processErrors.entries()].map(([k, v]) => `${k} ×${v}`).join(', ')}` : ''}`,
    noDiskReason === undefined
      ? `disk-full episodes: ${diskFullEpisodes} (tmpfs of ${formatBytes(tmpfsSize)}; downloads seen paused with CIDGET_ERR_DISK_FULL: ${diskFullSeen.size})`
      : `disk-full episodes: skipped: ${noDiskReason}`,
    `final paths: ${finalPathChecks} files and directories checked as they appeared`,
    `gateway bytes sent: ${formatBytes(bytesSent)} for ${formatBytes(contentBytes)} of content (waste ratio ${(contentBytes === 0 ? 0 : bytesSent / contentBytes).toFixed(2)})`,
    `wall time: ${(wallMs / 1000).toFixed(1)} s (final rounds: ${finalRoundsRun}, ${((Date.now() - (chaosEndedAt || Date.now())) / 1000).toFixed(1)} s after the chaos)`,
    violations.length === 0 ? 'violations: none' : `violations (${violations.length}):\n${violations.map(v => `  - ${v}`).join('\n')}`,
    `seed: ${seed} (replay: ${replay})`
  )
  return {
    seed,
    seconds,
    violations: violations.map(v => `${v} [seed ${seed}]`),
    statuses,
    faults: faultCounts,
    kills,
    diskFullEpisodes,
    bytesSent,
    contentBytes,
    wallMs,
    summary: summaryLines.join('\n')
  }
}

// ---------------------------------------------------------------------------
// the script

function parseArgs (argv: string[]): SoakOptions {
  const o: SoakOptions = { seconds: 60, seed: ((Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0) % 0x7fffffff || 1 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = (): number => {
      const v = Number(argv[++i])
      if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${String(a)} needs a non-negative integer, got ${String(argv[i])}`)
      return v
    }
    if (a === '--seconds') o.seconds = value()
    else if (a === '--seed') o.seed = value()
    else if (a === '--gateways') o.gateways = value()
    else if (a === '--rounds') o.finalRounds = value()
    else if (a === '--require-all-success') o.requireAllSuccess = true
    else if (a === '--keep') o.keep = true
    else if (a === '--quiet') o.log = () => {}
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: tsx test/chaos/soak.ts [--seconds N] [--seed S] [--gateways 3-5] [--rounds N] [--require-all-success] [--keep] [--quiet]\n')
      process.exit(0)
    } else throw new Error(`unknown argument ${String(a)}`)
  }
  if (o.gateways !== undefined && (o.gateways < 1 || o.gateways > 16)) throw new Error('--gateways must be 1 to 16')
  return o
}

async function main (): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  const start = Date.now()
  opts.log ??= (line: string) => { process.stdout.write(`[${((Date.now() - start) / 1000).toFixed(1).padStart(6)}s] ${line}\n`) }
  process.stdout.write(`chaos soak: seed ${opts.seed}, ${opts.seconds} s\n`)
  const result = await runSoak(opts)
  process.stdout.write('\n' + result.summary + '\n')
  if (result.violations.length > 0) {
    process.stdout.write(`\nFAILED: ${result.violations.length} violation(s), seed ${result.seed}\n`)
    process.exitCode = 1
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`chaos soak: ${(err as Error)?.stack ?? String(err)}\n`)
    process.exitCode = 2
  })
}
