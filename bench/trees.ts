/**
 * Trees: one gateway (own process) serves a directory built by
 * ipfs-unixfs-importer (`--trees 10000x4K,1000x1M`: COUNT files of SIZE,
 * K = KiB, M = MiB; 10,000 × 4 KiB is HAMT-sharded) with 0 ms and with 50 ms
 * added before each answer (`--latencies 0,50`: a distant gateway). Clients:
 * cidget verified mode (a fresh `--state` each run), one curl of the whole
 * tree as a CAR (`?format=car&dag-scope=all`: the wire's floor, no files
 * written) and the write floor (`bench/tree-floor.mjs`: the same files from
 * Node, 64 at a time, one fsync each, no network). Every run writes into a
 * fresh temporary folder; cidget's and the floor's files are counted and
 * each one's SHA-256 checked. Reports medians: seconds, files/s, MB/s, peak
 * RSS, the requests the gateway saw, and files/s as a multiple of the write
 * floor's in the same group.
 *
 *   npm run build && npx tsx bench/trees.ts [--trees 10000x4K,1000x1M] [--latencies 0,50] [--runs 3]
 *     [--clients cidget,curl,floor] [--quiet-wait 30] [--ref HEAD | --cli dist/bin/cidget.mjs]
 */
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { seededBytes } from '../src/testing/index.js'
import {
  BENCH_DIR, cliUnderTest, fmt, freshDir, machine, mbps, measure, median, otherCores, positiveInt,
  saveResults, sha256File, startGatewayProcess, table, waitForQuiet
} from './lib.js'
import type { GatewayInfo, Measured } from './lib.js'

const CLIENTS = ['cidget', 'curl', 'floor'] as const
type Client = typeof CLIENTS[number]
const LABEL: Record<Client, string> = {
  cidget: 'cidget get (verified)',
  curl: 'curl, whole tree as one CAR (wire floor)',
  floor: 'write floor: Node, 64 at a time, fsync each'
}
/** Seed of the gateway's content; tree-floor.mjs and the expected hashes use the same. */
const SEED = 1

const { values } = parseArgs({
  options: {
    trees: { type: 'string', default: '10000x4K,1000x1M' },
    latencies: { type: 'string', default: '0,50' },
    runs: { type: 'string', default: '3' },
    clients: { type: 'string', default: CLIENTS.join(',') },
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

const trees = parseTrees(values.trees)
const latencies = values.latencies.split(',').map((l) => {
  const n = Number(l)
  if (!Number.isFinite(n) || n < 0) throw new Error(`--latencies: expected milliseconds like 0,50, got ${l}`)
  return n
})
const runs = positiveInt(values.runs, '--runs')
const quietWaitMs = Number(values['quiet-wait']) * 1000
const clients = values.clients.split(',').map((c) => c.trim()) as Client[]
for (const c of clients) if (!CLIENTS.includes(c)) throw new Error(`--clients: unknown client ${c} (known: ${CLIENTS.join(', ')})`)

const cli = await cliUnderTest(values.cli, values.ref)

function command (client: Client, gw: GatewayInfo, tree: Tree, dir: string, out: string): [string, string[]] {
  const url = gw.urls[0] as string
  switch (client) {
    case 'cidget':
      return [process.execPath, [cli.main, 'get', gw.cid, '-o', out, '-g', url, '--mode', 'verified', '--state', join(dir, 'state.db'), '-q']]
    case 'curl': return ['curl', ['-s', '-f', '-o', out, `${url}/ipfs/${gw.cid}?format=car&dag-scope=all`]]
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
  for (let i = 0; i < hashes.length; i++) {
    const file = join(out, `f${i}.bin`)
    if (!existsSync(file)) return `f${i}.bin missing`
    if (await sha256File(file) !== hashes[i]) return `f${i}.bin differs`
  }
  return undefined
}

async function check (client: Client, m: Measured, out: string, tree: Tree, hashes: string[]): Promise<string | undefined> {
  if (m.exitCode !== 0) return `exit ${String(m.exitCode)}: ${m.stderr.trim().split('\n').slice(-3).join(' / ')}`
  // the CAR carries every byte of the files and their DAG: at least the files' bytes
  if (client === 'curl') return existsSync(out) && (await stat(out)).size >= tree.files * tree.fileBytes ? undefined : 'CAR too short'
  return await checkTree(out, hashes)
}

interface Sample extends Measured {
  client: Client
  tree: string
  latencyMs: number
  run: number
  gatewayCpuSeconds: number
  requests: number
  failure?: string
  quietBefore: number
  otherCores: number
}

const samples: Sample[] = []
const sections: string[] = []
const started = Date.now()

try {
  for (const tree of trees) {
    const hashes = expectedHashes(tree)
    const bytes = tree.files * tree.fileBytes
    for (const latencyMs of latencies) {
      const gw = await startGatewayProcess({ sizeMiB: 1, seed: SEED, tree: { files: tree.files, fileBytes: tree.fileBytes }, latencyMs })
      process.stderr.write(`trees: ${tree.name} ${gw.info.cid}${gw.info.sharded === true ? ' (HAMT-sharded)' : ''}, ` +
        `${latencyMs} ms per answer (import ${gw.info.importMs} ms) at ${gw.info.urls[0] ?? ''}\n`)
      try {
        for (let run = 1; run <= runs; run++) {
          for (const client of clients) {
            const dir = await freshDir('trees')
            const out = join(dir, client === 'curl' ? 'tree.car' : 'out')
            const [cmd, args] = command(client, gw.info, tree, dir, out)
            const quietBefore = await waitForQuiet({ maxWaitMs: quietWaitMs, ownCpuSeconds: gw.cpuSeconds })
            await gw.stats() // forget earlier requests
            const cpuBefore = gw.cpuSeconds()
            const m = await measure(cmd, args)
            const gatewayCpuSeconds = gw.cpuSeconds() - cpuBefore
            const served = await gw.stats()
            const failure = await check(client, m, out, tree, hashes)
            await rm(dir, { recursive: true, force: true })
            execFileSync('sync')
            const other = otherCores(m, gatewayCpuSeconds)
            samples.push({ ...m, client, tree: tree.name, latencyMs, run, gatewayCpuSeconds, requests: served.requests, failure, quietBefore, otherCores: other })
            process.stderr.write(`  run ${run} ${LABEL[client]}: ${fmt(m.wallMs / 1000, 2)} s, ${fmt(tree.files / (m.wallMs / 1000), 0)} files/s, ` +
              `${fmt(mbps(bytes, m.wallMs))} MB/s, ${fmt(m.peakRssBytes / 1e6, 0)} MB peak RSS, client CPU ${fmt(m.cpuSeconds, 2)} s, ` +
              `${served.requests} requests, other load ${fmt(other, 2)} cores` + (failure === undefined ? '' : `  FAILED: ${failure}`) + '\n')
          }
        }
      } finally {
        await gw.stop()
      }

      const of = (c: Client): Sample[] => samples.filter((s) => s.tree === tree.name && s.latencyMs === latencyMs && s.client === c)
      const ok = (c: Client): Sample[] => of(c).filter((s) => s.failure === undefined)
      const seconds = (c: Client): number => median(ok(c).map((s) => s.wallMs / 1000))
      const floorFilesPerSecond = tree.files / seconds('floor')
      const rows = clients.map((c) => [
        LABEL[c],
        fmt(seconds(c), 2),
        fmt(tree.files / seconds(c), 0),
        fmt(bytes / 1e6 / seconds(c)),
        fmt(median(ok(c).map((s) => s.peakRssBytes / 1e6)), 0),
        fmt(median(ok(c).map((s) => s.cpuSeconds)), 2),
        c === 'floor' ? '–' : fmt(median(ok(c).map((s) => s.requests)), 0),
        fmt(tree.files / seconds(c) / floorFilesPerSecond, 2),
        fmt(median(ok(c).map((s) => s.otherCores)), 2),
        `${ok(c).length}/${of(c).length}`
      ])
      sections.push(`**${tree.files} × ${tree.fileBytes} bytes** (${fmt(bytes / 1e6)} MB${gw.info.sharded === true ? ', HAMT-sharded' : ''}), ` +
        `one gateway, **${latencyMs} ms** per answer, median of ${runs}\n\n` + table(
        ['client', 's', 'files/s', 'MB/s', 'peak RSS MB', 'client CPU s', 'requests', '× write floor (files/s)', 'other load (cores)', 'checked ok'],
        rows))
    }
  }
} finally {
  await cli.cleanup()
}

const report = `Trees, one gateway (own process), ${machine()}; CLI: ${cli.describe}; ` +
  `${Math.round((Date.now() - started) / 1000)} s in all.\n\n${sections.join('\n\n')}\n`
process.stdout.write(report)
process.stderr.write(`results: ${await saveResults('trees', { machine: machine(), cli: cli.describe, trees, latencies, samples })}\n`)
