import { createHash } from 'node:crypto'
import { mkdtemp, rm, readFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { CID } from 'multiformats/cid'
import { sha256 as mhSha256 } from 'multiformats/hashes/sha2'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { MemoryBlocks, addFile, seededBytes, startTestGateway, type TestGateway } from '../src/testing/index.js'
import { Downloader, type DownloaderInit } from '../src/engine/downloader.js'
import type { DownloadRecord, DownloadStatus } from '../src/core/types.js'
import type { ProgressEvent } from '../src/core/events.js'

export const KiB = 1024
export const MiB = 1024 * 1024

/** A positive integer from the environment variable `name` (a test's knob), or `fallback` when it is unset or empty. */
export function envInt (name: string, fallback: number): number {
  const raw = process.env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`)
  return n
}

/**
 * `CI=true`: what some tests need (strace, mounting a tmpfs, a process that file permissions
 * apply to) is provided there, so they fail instead of skipping when it is missing.
 */
export const IN_CI = process.env.CI === 'true'

/**
 * Skips the running test for `why` (logged), or, under `CI=true`, fails it: call it where a test
 * finds that something it needs is missing, and return right after.
 */
export function skipUnlessCi (ctx: { skip: (note?: string) => void }, why: string): void {
  if (IN_CI) throw new Error(`Required under CI=true, but ${why}`)
  console.log(`skipping: ${why}`)
  ctx.skip(why)
}

/**
 * Rejects when `p` takes longer than `ms`: a hang fails the test with `what` instead of stalling
 * the run. For bounds that are the point of a test: make them generous (a loaded machine).
 */
export async function within<T> (ms: number, p: Promise<T>, what = 'still waiting'): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`${what} after ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export function sha256 (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

export async function fileSha256 (path: string): Promise<string> {
  return sha256(await readFile(path))
}

/** A clock that only sleeps move: backoff and Retry-After cost no real time, and every wait is recorded. */
export function fakeTime (): { now: () => number, sleep: (ms: number, signal: AbortSignal) => Promise<void>, sleeps: number[] } {
  let t = Date.parse('2026-01-01T00:00:00Z')
  const sleeps: number[] = []
  return {
    now: () => t,
    sleep: async (ms: number, signal: AbortSignal) => {
      if (signal.aborted) throw signal.reason
      sleeps.push(ms)
      t += ms
      await new Promise(resolve => setImmediate(resolve))
    },
    sleeps
  }
}

export interface World {
  blocks: MemoryBlocks
  data: Uint8Array
  sha: string
  cid: string
  gateways: TestGateway[]
  dir: string
  state: string
  time: ReturnType<typeof fakeTime>
  /** A Downloader on this world's state and gateways, with the fake clock and fast policies. */
  open: (init?: DownloaderInit) => Promise<Downloader>
  close: () => Promise<void>
}

/** Content of `size` seeded bytes, `n` gateways serving it, a temp dir and state file. */
export async function world (opts: { size: number, gateways?: number, seed?: number, maxBytesPerSecond?: number, chunkSize?: number }): Promise<World> {
  const blocks = new MemoryBlocks()
  const data = seededBytes(opts.size, opts.seed ?? 7)
  const cid = (await addFile(blocks, data)).toString()
  const gateways: TestGateway[] = []
  for (let i = 0; i < (opts.gateways ?? 1); i++) {
    gateways.push(await startTestGateway({
      blocks,
      ...(opts.maxBytesPerSecond === undefined ? {} : { maxBytesPerSecond: opts.maxBytesPerSecond }),
      ...(opts.chunkSize === undefined ? {} : { chunkSize: opts.chunkSize })
    }))
  }
  const dir = await mkdtemp(join(tmpdir(), 'cidget-test-'))
  const state = join(dir, 'state.db')
  const time = fakeTime()
  const opened: Downloader[] = []
  return {
    blocks,
    data,
    sha: sha256(data),
    cid,
    gateways,
    dir,
    state,
    time,
    open: async (init: DownloaderInit = {}) => {
      const dl = await Downloader.open({
        state,
        gateways: gateways.map(g => g.url),
        // no request leaves the machine: no public router is asked for names or providers
        routers: [],
        timeoutMs: 2_000,
        now: time.now,
        sleep: time.sleep,
        random: () => 0.5,
        syncIntervalBytes: 256 * KiB,
        ...init
      })
      opened.push(dl)
      return dl
    },
    close: async () => {
      for (const dl of opened) await dl.close().catch(() => {})
      for (const g of gateways) await g.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/** Resolves with the first progress event of download `id` that reaches `bytes`. */
export async function progressReaches (dl: Downloader, id: number | (() => number | undefined), bytes: number): Promise<ProgressEvent> {
  return await new Promise(resolve => {
    const on = (e: ProgressEvent): void => {
      const want = typeof id === 'function' ? id() : id
      if (e.id === want && e.bytes >= bytes) {
        dl.off('cidget:download:progress', on)
        resolve(e)
      }
    }
    dl.on('cidget:download:progress', on)
  })
}

/** Collects the status transitions of a Downloader. */
export function statusLog (dl: Downloader): Array<{ id: number, status: DownloadStatus }> {
  const log: Array<{ id: number, status: DownloadStatus }> = []
  dl.on('cidget:download:status', e => log.push({ id: e.id, status: e.status }))
  return log
}

/** The `cidget` command as installed: the bundle that package.json's `bin` names (built by `npm run build`). */
export const CLI = new URL('../dist/bin/cidget.mjs', import.meta.url).pathname

export interface CliResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** Runs the built CLI as a child process. */
/** Variables of the environment that would send a CLI child's requests elsewhere: a test sets them itself when it wants them. */
export const NETWORK_VARIABLES = ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY', 'no_proxy', 'NO_PROXY', 'IPFS_GATEWAY']

/**
 * The test process's environment without {@link NETWORK_VARIABLES}, with `env`
 * on top; no routers unless `env` names some (no test asks a public router).
 */
export function childEnv (env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env, CIDGET_ROUTERS: '' }
  for (const name of NETWORK_VARIABLES) delete base[name]
  return { ...base, ...env }
}

export async function runCli (args: string[], opts: { env?: NodeJS.ProcessEnv, cwd?: string } = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { env: childEnv(opts.env), cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  return await new Promise(resolve => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

export function lastRecord (stdout: string): DownloadRecord {
  const lines = stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1] ?? '{}') as DownloadRecord
}

/** The path-gateway requests a test gateway saw (path mode's downloads; the CID check's block requests left out). */
export function pathRequests (g: { requests: Array<import('../src/testing/index.js').RequestRecord> }): Array<import('../src/testing/index.js').RequestRecord> {
  return g.requests.filter(r => r.format === 'path')
}

/** A loopback URL where nothing listens (a port bound, then released): connections are refused. */
export async function closedUrl (): Promise<string> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>(resolve => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return `http://127.0.0.1:${address.port}`
}

/** Puts `bytes` into `blocks` under their CIDv1 (sha2-256) with `code`, and returns the CID. */
export async function putBlock (blocks: MemoryBlocks, bytes: Uint8Array, code: number): Promise<CID> {
  return blocks.put(CID.createV1(code, await mhSha256.digest(bytes)), bytes)
}

/** A UnixFS symlink node with `target`, hand-made (the importer writes no symlinks). */
export async function symlinkNode (blocks: MemoryBlocks, target: string): Promise<CID> {
  const fs = new UnixFS({ type: 'symlink', data: new TextEncoder().encode(target) })
  return await putBlock(blocks, dagPb.encode(dagPb.prepare({ Data: fs.marshal(), Links: [] })), dagPb.code)
}

/** A plain UnixFS directory of `entries` as given: in that order, duplicates and all. */
export async function directoryNode (blocks: MemoryBlocks, entries: Array<[name: string, cid: CID]>): Promise<CID> {
  const fs = new UnixFS({ type: 'directory' })
  const links = entries.map(([name, cid]) => ({ Name: name, Hash: cid, Tsize: 10 }))
  return await putBlock(blocks, dagPb.encode(dagPb.prepare({ Data: fs.marshal(), Links: links })), dagPb.code)
}

/** Every path below `root` (relative, sorted), not descending into links. */
export async function listTree (root: string, below = ''): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(join(root, below), { withFileTypes: true })) {
    const name = below === '' ? e.name : `${below}/${e.name}`
    out.push(name)
    if (e.isDirectory()) out.push(...await listTree(root, name))
  }
  return out.sort()
}

/** Test gateways serving `blocks`, a temporary directory, and Downloaders on them (closed by the cleanup). */
export interface GatewaySetup {
  blocks: MemoryBlocks
  gateways: TestGateway[]
  dir: string
  /** A Downloader on every gateway, with fast test defaults (hedging off, 1 ms back-off, 64 KiB checkpoints) and `init` over them. */
  open: (init?: DownloaderInit) => Promise<Downloader>
}

/**
 * Starts `n` test gateways serving `blocks` and makes a temporary directory
 * (named from `prefix`); `cleanup` is handed what closes them and every
 * Downloader opened, and removes the directory. `defaults` go under each
 * `open`'s own options.
 */
export async function gatewaySetup (blocks: MemoryBlocks, n: number, cleanup: (fn: () => Promise<void>) => void,
  opts: { prefix: string, defaults?: DownloaderInit }): Promise<GatewaySetup> {
  const gateways: TestGateway[] = []
  for (let i = 0; i < n; i++) gateways.push(await startTestGateway({ blocks }))
  const dir = await mkdtemp(join(tmpdir(), opts.prefix))
  const opened: Downloader[] = []
  cleanup(async () => {
    for (const d of opened) await d.close()
    for (const g of gateways) await g.close()
    await rm(dir, { recursive: true, force: true })
  })
  return {
    blocks,
    gateways,
    dir,
    open: async (init = {}) => {
      const dl = await Downloader.open({
        state: join(dir, 'state.db'),
        gateways: gateways.map(g => g.url),
        routers: [],
        hedgeAfterMs: 0,
        initialBackoffMs: 1,
        syncIntervalBytes: 64 * KiB,
        ...opts.defaults,
        ...init
      })
      opened.push(dl)
      return dl
    }
  }
}
