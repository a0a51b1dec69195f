/**
 * Trees: N gateways (`--gateways N`, each its own process, all serving the
 * same tree, each capped at `--rate R` if given) serve a directory built by
 * ipfs-unixfs-importer (`--trees 10000x4K,1000x1M`: COUNT files of SIZE,
 * K = KiB, M = MiB; 10,000 × 4 KiB is HAMT-sharded; 1000000x1K works too)
 * with 0 ms and with 50 ms added before each answer (`--latencies 0,50`: a
 * distant gateway). The tree's blocks are built once into a cache on disk
 * (`--cache DIR`, keyed by the tree and the seed: `bench/tree-blocks.ts`)
 * and every gateway process loads them from it.
 *
 * Clients: cidget verified mode with all N `-g` (a fresh `--state` each run;
 * the size of its SQLite file and WAL after the run is reported), aria2c
 * with one line per file holding its N mirror URLs (`-j16 -x4 -s4 -k1M`;
 * aria2 trusts the gateways, it checks nothing against the CIDs), one curl
 * of the whole tree as a CAR from the first gateway (`?format=car&dag-scope=all`:
 * the wire's floor, no files written) and the write floor
 * (`bench/tree-floor.mjs`: the same files from Node, 64 at a time, one fsync
 * each, no network). Every run writes into a fresh temporary folder, kept
 * until the tree's runs are over (ext4 pays for creating files where many
 * were removed in the last minutes: a run following a removal was up to
 * twice as slow); cidget's, aria2's and the floor's files are counted and
 * each one's SHA-256 checked. Reports medians: seconds, files/s, MB/s (and its ratio to the sum
 * of the caps), peak RSS, the requests all gateways saw, files/s as a
 * multiple of the write floor's in the same group, and the gateways' RSS.
 *
 *   npm run build && npx tsx bench/trees.ts [--trees 10000x4K,1000x1M] [--latencies 0,50] [--runs 3]
 *     [--gateways 1] [--rate 8M] [--clients cidget,curl,floor (and aria2)] [--cache /tmp/cidget-bench-tree-cache]
 *     [--quiet-wait 30] [--ref HEAD | --cli dist/bin/cidget.mjs]
 */
import { createHash } from 'node:crypto'
import { execFile, execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { open, readFile, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { parseArgs } from 'node:util'
import { seededBytes } from '../src/testing/index.js'
import {
  BENCH_DIR, MiB, ROOT, cliUnderTest, fmt, freshDir, machine, mbps, measure, median, otherCores, positiveInt,
  procMemory, saveResults, sha256File, startGatewayProcess, table, waitForQuiet
} from './lib.js'
import type { GatewayProcess, Measured } from './lib.js'
import type { TreeMeta } from './tree-blocks.js'

const CLIENTS = ['cidget', 'aria2', 'curl', 'floor'] as const
type Client = typeof CLIENTS[number]
/** Seed of the gateway's content; tree-floor.mjs and the expected hashes use the same. */
const SEED = 1

const { values } = parseArgs({
  options: {
    trees: { type: 'string', default: '10000x4K,1000x1M' },
    latencies: { type: 'string', default: '0,50' },
    runs: { type: 'string', default: '3' },
    gateways: { type: 'string', default: '1' },
    rate: { type: 'string' },
    clients: { type: 'string', default: 'cidget,curl,floor' },
    cache: { type: 'string', default: join(tmpdir(), 'cidget-bench-tree-cache') },
    'quiet-wait': { type: 'string', default: '30' },
    cli: { type: 'string' },
    ref: { type: 'string' }
  },
  strict: true
})

interface Tree { name: string, files: number, fileBytes: number }

function parseTrees (text: string): Tree[] {
  return text.split(',').map((t) => {
    const m = /^(\d+)x(\d+)([KM]?)$/i.exec(t.trim())
    const files = Number(m?.[1])
    const unit = (m?.[3] ?? '').toUpperCase()
    const fileBytes = Number(m?.[2]) * (unit === 'K' ? 1024 : unit === 'M' ? 1024 * 1024 : 1)
    if (m === null || files < 1 || fileBytes < 1) throw new Error(`--trees: expected COUNTxSIZE like 10000x4K or 1000x1M, got ${t}`)
    return { name: t.trim(), files, fileBytes }
  })
}

/** `--rate`: 8M = 8 MiB/s, 512K = 0.5 MiB/s, a bare number is MiB/s; returns MiB/s. */
function parseRate (text: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(text.trim())
  const unit = (m?.[2] ?? '').toUpperCase()
  const n = Number(m?.[1]) * (unit === 'K' ? 1 / 1024 : unit === 'G' ? 1024 : 1)
  if (m === null || !(n > 0)) throw new Error(`--rate: expected a per-gateway cap like 8M (MiB/s) or 512K, got ${text}`)
  return n
}

const trees = parseTrees(values.trees)
const latencies = values.latencies.split(',').map((l) => {
  const n = Number(l)
  if (!Number.isFinite(n) || n < 0) throw new Error(`--latencies: expected milliseconds like 0,50, got ${l}`)
  return n
})
const runs = positiveInt(values.runs, '--runs')
const gatewayCount = positiveInt(values.gateways, '--gateways')
const rateMiBps = values.rate === undefined ? undefined : parseRate(values.rate)
const capsMBps = rateMiBps === undefined ? Number.NaN : gatewayCount * rateMiBps * MiB / 1e6
const quietWaitMs = Number(values['quiet-wait']) * 1000
const clients = values.clients.split(',').map((c) => c.trim()) as Client[]
for (const c of clients) if (!CLIENTS.includes(c)) throw new Error(`--clients: unknown client ${c} (known: ${CLIENTS.join(', ')})`)
if (clients.includes('aria2')) {
  try {
    execFileSync('aria2c', ['--version'], { stdio: 'ignore' })
  } catch {
    throw new Error('--clients aria2: aria2c is not installed (apt-get install -y aria2)')
  }
}

const LABEL: Record<Client, string> = {
  cidget: `cidget get (verified)${gatewayCount > 1 ? `, ${gatewayCount} × -g` : ''}`,
  aria2: `aria2c -j16 -x4 -s4 -k1M, ${gatewayCount} mirror${gatewayCount > 1 ? 's' : ''} per file (no verification)`,
  curl: `curl, whole tree as one CAR${gatewayCount > 1 ? ' from the first gateway' : ''} (wire floor)`,
  floor: 'write floor: Node, 64 at a time, fsync each'
}

const cli = await cliUnderTest(values.cli, values.ref)

/** The paths of the tree's files, as gateway-server.ts names them. */
function filePaths (tree: Tree): string[] {
  return Array.from({ length: tree.files }, (_, i) => `f${i}.bin`)
}

/**
 * aria2's input file: one entry per file, its N mirror URLs tab-separated
 * (line i starts with mirror i mod N), then `dir=` and `out=` so that the
 * file lands at its path under `out`.
 */
async function writeAria2List (list: string, urls: string[], cid: string, tree: Tree, out: string): Promise<void> {
  const file = await open(list, 'w')
  try {
    let lines: string[] = []
    const paths = filePaths(tree)
    for (let i = 0; i < paths.length; i++) {
      const path = paths[i] as string
      const mirrors = urls.map((_, k) => `${urls[(i + k) % urls.length] as string}/ipfs/${cid}/${path}`)
      const slash = path.lastIndexOf('/')
      lines.push(mirrors.join('\t'), `  dir=${slash < 0 ? out : join(out, dirname(path))}`, `  out=${path.slice(slash + 1)}`)
      // written 10,000 entries at a time: a million entries' list is past V8's longest string
      if (lines.length >= 30_000 || i === paths.length - 1) {
        await file.write(lines.join('\n') + '\n')
        lines = []
      }
    }
  } finally {
    await file.close()
  }
}

async function command (client: Client, urls: string[], cid: string, tree: Tree, dir: string, out: string): Promise<[string, string[]]> {
  const first = urls[0] as string
  switch (client) {
    case 'cidget':
      return [process.execPath, [cli.main, 'get', cid, '-o', out, ...urls.flatMap((u) => ['-g', u]), '--mode', 'verified',
        '--state', join(dir, 'state.db'), '-q']]
    case 'aria2': {
      const list = join(dir, 'aria2.txt')
      await writeAria2List(list, urls, cid, tree, out)
      return ['aria2c', ['-j16', '-x4', '-s4', '-k1M', '--file-allocation=none', '--deferred-input=true', '-q', '-i', list]]
    }
    case 'curl': return ['curl', ['-s', '-f', '-o', out, `${first}/ipfs/${cid}?format=car&dag-scope=all`]]
    case 'floor': return [process.execPath, [join(BENCH_DIR, 'tree-floor.mjs'), out, String(tree.files), String(tree.fileBytes), String(SEED)]]
  }
}

/** The SHA-256 of each file of the tree, as the gateway and the floor generate it. */
function expectedHashes (tree: Tree): string[] {
  return Array.from({ length: tree.files }, (_, i) =>
    createHash('sha256').update(seededBytes(tree.fileBytes, SEED * 1e6 + i)).digest('hex'))
}

/** Every file there, no other, each with its expected bytes; a reason otherwise. */
async function checkTree (out: string, hashes: string[]): Promise<string | undefined> {
  if (!existsSync(out)) return 'no output'
  const names = await readdir(out)
  if (names.length !== hashes.length) return `${names.length} entries, expected ${hashes.length}`
  // 32 files at a time, small ones read whole: a million files are checked in a minute or two
  let next = 0
  let failure: string | undefined
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < hashes.length) {
      const i = next++
      const file = join(out, `f${i}.bin`)
      let hash: string
      try {
        hash = (await stat(file)).size > 64 * MiB ? await sha256File(file) : createHash('sha256').update(await readFile(file)).digest('hex')
      } catch {
        failure = `f${i}.bin missing`
        return
      }
      if (hash !== hashes[i]) failure = `f${i}.bin differs`
    }
  }
  await Promise.all(Array.from({ length: 32 }, worker))
  return failure
}

async function check (client: Client, m: Measured, out: string, tree: Tree, hashes: string[]): Promise<string | undefined> {
  if (m.exitCode !== 0) return `exit ${String(m.exitCode)}: ${m.stderr.trim().split('\n').slice(-3).join(' / ')}`
  // the CAR carries every byte of the files and their DAG: at least the files' bytes
  if (client === 'curl') return existsSync(out) && (await stat(out)).size >= tree.files * tree.fileBytes ? undefined : 'CAR too short'
  return await checkTree(out, hashes)
}

/** Bytes of cidget's SQLite state after the run: the database and its WAL. */
async function stateBytes (dir: string): Promise<number> {
  let total = 0
  for (const name of ['state.db', 'state.db-wal']) {
    const file = join(dir, name)
    if (existsSync(file)) total += (await stat(file)).size
  }
  return total
}

/** Builds the tree's block cache unless it is there (one importer run, in its own process). */
async function treeCache (tree: Tree): Promise<TreeMeta> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(BENCH_DIR, 'gateway-server.ts'),
    '--tree', `${tree.files}x${tree.fileBytes}`, '--seed', String(SEED), '--cache', values.cache, '--build-only'],
  { cwd: ROOT, maxBuffer: 1 << 20 })
  return JSON.parse(stdout) as TreeMeta
}

interface Sample extends Measured {
  client: Client
  tree: string
  latencyMs: number
  run: number
  gateways: number
  rateMiBps: number | null
  gatewayCpuSeconds: number
  requests: number
  /** Bytes of cidget's state (SQLite file and WAL) after the run. */
  stateBytes?: number
  failure?: string
  quietBefore: number
  otherCores: number
}

const samples: Sample[] = []
const sections: string[] = []
const gatewayMemory: Array<{ tree: string, latencyMs: number, loadMs: number, rssBytes: number[], peakRssBytes: number[] }> = []
const started = Date.now()
/** The runs' directories, removed once each tree's runs are over. */
const leftovers: string[] = []

async function runOne (client: Client, gws: GatewayProcess[], tree: Tree, latencyMs: number, run: number, hashes: string[]): Promise<void> {
  const { cid } = gws[0]?.info as GatewayProcess['info']
  const urls = gws.map((g) => g.info.urls[0] as string)
  const dir = await freshDir('trees')
  const out = join(dir, client === 'curl' ? 'tree.car' : 'out')
  const [cmd, args] = await command(client, urls, cid, tree, dir, out)
  const gatewaysCpu = (): number => gws.reduce((s, g) => s + g.cpuSeconds(), 0)
  const quietBefore = await waitForQuiet({ maxWaitMs: quietWaitMs, ownCpuSeconds: gatewaysCpu })
  await Promise.all(gws.map(async (g) => await g.stats())) // forget earlier requests
  const cpuBefore = gatewaysCpu()
  const m = await measure(cmd, args, { timeoutMs: 15 * 60_000 + tree.files * 2 })
  const gatewayCpuSeconds = gatewaysCpu() - cpuBefore
  const served = await Promise.all(gws.map(async (g) => await g.stats()))
  const requests = served.reduce((n, s) => n + s.requests, 0)
  const state = client === 'cidget' ? await stateBytes(dir) : undefined
  const failure = await check(client, m, out, tree, hashes)
  // kept until the tree's runs are over: ext4 skips the inodes freed in the last minute or more when it
  // creates files, at a cost that made one client's runs differ twofold when each followed a removal
  leftovers.push(dir)
  execFileSync('sync')
  const other = otherCores(m, gatewayCpuSeconds)
  samples.push({
    ...m, client, tree: tree.name, latencyMs, run, gateways: gatewayCount, rateMiBps: rateMiBps ?? null, gatewayCpuSeconds,
    requests, stateBytes: state, failure, quietBefore, otherCores: other
  })
  const bytes = tree.files * tree.fileBytes
  process.stderr.write(`  run ${run} ${LABEL[client]}: ${fmt(m.wallMs / 1000, 2)} s, ${fmt(tree.files / (m.wallMs / 1000), 0)} files/s, ` +
    `${fmt(mbps(bytes, m.wallMs))} MB/s, ${fmt(m.peakRssBytes / 1e6, 0)} MB peak RSS, client CPU ${fmt(m.cpuSeconds, 2)} s, ` +
    `${requests} requests${gws.length > 1 ? ` (${served.map((s) => s.requests).join('/')})` : ''}` +
    (state === undefined ? '' : `, state ${fmt(state / 1e6)} MB`) + `, other load ${fmt(other, 2)} cores` +
    (failure === undefined ? '' : `  FAILED: ${failure}`) + '\n')
}

function section (tree: Tree, latencyMs: number, meta: TreeMeta, memory: typeof gatewayMemory[number]): string {
  const bytes = tree.files * tree.fileBytes
  const of = (c: Client): Sample[] => samples.filter((s) => s.tree === tree.name && s.latencyMs === latencyMs && s.client === c)
  const ok = (c: Client): Sample[] => of(c).filter((s) => s.failure === undefined)
  const seconds = (c: Client): number => median(ok(c).map((s) => s.wallMs / 1000))
  const floorFilesPerSecond = tree.files / seconds('floor')
  const entries = tree.files + 1 // the files and the directory
  const rows = clients.map((c) => {
    const state = median(ok(c).map((s) => s.stateBytes ?? Number.NaN))
    return [
      LABEL[c],
      fmt(seconds(c), 2),
      fmt(tree.files / seconds(c), 0),
      fmt(bytes / 1e6 / seconds(c)),
      fmt(bytes / 1e6 / seconds(c) / capsMBps, 2),
      fmt(median(ok(c).map((s) => s.peakRssBytes / 1e6)), 0),
      fmt(median(ok(c).map((s) => s.cpuSeconds)), 2),
      c === 'floor' ? '–' : fmt(median(ok(c).map((s) => s.requests)), 0),
      fmt(tree.files / seconds(c) / floorFilesPerSecond, 2),
      fmt(state, 0),
      fmt(state / entries, 0),
      fmt(median(ok(c).map((s) => s.otherCores)), 2),
      `${ok(c).length}/${of(c).length}`
    ]
  })
  const gateways = gatewayCount === 1 ? 'one gateway' : `${gatewayCount} gateways (own processes)`
  const capped = rateMiBps === undefined ? '' : `, each capped at ${fmt(rateMiBps, 2)} MiB/s (sum of caps ${fmt(capsMBps)} MB/s)`
  const mb = (xs: number[]): string => xs.map((x) => fmt(x / 1e6, 0)).join('/')
  return `**${tree.files} × ${tree.fileBytes} bytes** (${fmt(bytes / 1e6)} MB${meta.sharded ? ', HAMT-sharded' : ''}, ${meta.blocks} blocks), ` +
    `${gateways}${capped}, **${latencyMs} ms** per answer, median of ${runs}; gateway RSS after the runs ${mb(memory.rssBytes)} MB ` +
    `(peak ${mb(memory.peakRssBytes)} MB), blocks loaded from the cache in ${memory.loadMs} ms (built in ${meta.importMs} ms)\n\n` + table(
    ['client', 's', 'files/s', 'MB/s', '× caps', 'peak RSS MB', 'client CPU s', 'requests', '× write floor (files/s)',
      'state bytes', 'state bytes per entry', 'other load (cores)', 'checked ok'],
    rows)
}

try {
  for (const tree of trees) {
    const hashes = expectedHashes(tree)
    const meta = await treeCache(tree)
    for (const latencyMs of latencies) {
      const gws = await Promise.all(Array.from({ length: gatewayCount }, async () => await startGatewayProcess({
        sizeMiB: 1, seed: SEED, tree: { files: tree.files, fileBytes: tree.fileBytes }, latencyMs, cacheDir: values.cache, rateMiBps
      })))
      const memory = { tree: tree.name, latencyMs, loadMs: Math.max(...gws.map((g) => g.info.importMs)), rssBytes: [] as number[], peakRssBytes: [] as number[] }
      try {
        for (const g of gws) if (g.info.cid !== meta.cid) throw new Error(`gateways disagree on the CID: ${g.info.cid} vs ${meta.cid}`)
        process.stderr.write(`trees: ${tree.name} ${meta.cid}${meta.sharded ? ' (HAMT-sharded)' : ''}, ${meta.blocks} blocks ` +
          `(built in ${meta.importMs} ms, loaded in ${memory.loadMs} ms), ${latencyMs} ms per answer` +
          `${rateMiBps === undefined ? '' : `, capped at ${rateMiBps} MiB/s each`} at ${gws.map((g) => g.info.urls[0] ?? '').join(' ')}\n`)
        for (let run = 1; run <= runs; run++) {
          for (const client of clients) await runOne(client, gws, tree, latencyMs, run, hashes)
        }
        for (const g of gws) {
          const mem = procMemory(g.info.pid)
          memory.rssBytes.push(mem.rssBytes)
          memory.peakRssBytes.push(mem.peakRssBytes)
        }
      } finally {
        await Promise.all(gws.map(async (g) => { await g.stop() }))
      }
      gatewayMemory.push(memory)
      sections.push(section(tree, latencyMs, meta, memory))
    }
    await removeLeftovers()
  }
} finally {
  await removeLeftovers()
  await cli.cleanup()
}

async function removeLeftovers (): Promise<void> {
  for (const dir of leftovers.splice(0)) await rm(dir, { recursive: true, force: true })
}

const notes = (clients.includes('aria2') ? 'aria2 trusts the gateways: it checks nothing against the CIDs (the files\' SHA-256 are checked here after the run). ' : '') +
  (clients.includes('cidget') ? '"state bytes": cidget\'s SQLite state file and its WAL after the run; "per entry": over the files and the directory. ' : '') +
  (rateMiBps === undefined ? '' : '"× caps": MB/s over the sum of the gateways\' caps. ') +
  `"requests": all gateways together.`
const report = `Trees, ${gatewayCount === 1 ? 'one gateway' : `${gatewayCount} gateways`} (own process${gatewayCount === 1 ? '' : 'es'}), ${machine()}; CLI: ${cli.describe}; ` +
  `${Math.round((Date.now() - started) / 1000)} s in all. ${notes}\n\n${sections.join('\n\n')}\n`
process.stdout.write(report)
process.stderr.write(`results: ${await saveResults('trees', { machine: machine(), cli: cli.describe, trees, latencies, gateways: gatewayCount, rateMiBps, gatewayMemory, samples })}\n`)
