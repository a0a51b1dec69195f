/**
 * Throughput on one gateway: curl, cidget path mode, cidget verified mode,
 * `@helia/verified-fetch` and the floor of a verifying Node.js client
 * (`bench/floor.mjs`) download the same file from one test gateway that
 * runs in its own process. Each run writes into a fresh temporary folder;
 * every output's SHA-256 is checked. Reports the median MB/s (size / wall
 * time of the client process), the client's peak RSS and CPU time, the
 * gateway's CPU time, and ratios to curl.
 *
 *   npm run build && npx tsx bench/throughput.ts [--sizes 256,1024] [--runs 3]
 *     [--clients curl,path,verified,verified-fetch,floor] [--ref HEAD | --cli dist/bin/cidget.mjs] [--node24 PATH]
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  BENCH_DIR, DEFAULT_NODE24, cliUnderTest, fmt, freshDir, machine, mbps, measure, median,
  otherCores, parseSizes, positiveInt, saveResults, sha256File, startGatewayProcess, table, waitForQuiet
} from './lib.js'
import type { GatewayInfo, GatewayStats, Measured } from './lib.js'

const CLIENTS = ['curl', 'path', 'verified', 'verified-fetch', 'floor'] as const
type Client = typeof CLIENTS[number]

const LABEL: Record<Client, string> = {
  curl: 'curl',
  path: 'cidget path',
  verified: 'cidget verified',
  'verified-fetch': '@helia/verified-fetch (Node 24)',
  floor: 'floor: Node + undici, 2 × SHA-256, sync writes'
}

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '256,1024' },
    runs: { type: 'string', default: '3' },
    clients: { type: 'string', default: CLIENTS.join(',') },
    cli: { type: 'string' },
    ref: { type: 'string' },
    node24: { type: 'string', default: process.env.CIDGET_BENCH_NODE24 ?? DEFAULT_NODE24 },
    'quiet-wait': { type: 'string', default: '30' }
  },
  strict: true
})

const sizes = parseSizes(values.sizes, '--sizes')
const runs = positiveInt(values.runs, '--runs')
const quietWaitMs = Number(values['quiet-wait']) * 1000
const clients = values.clients.split(',').map((c) => c.trim()) as Client[]
for (const c of clients) if (!CLIENTS.includes(c)) throw new Error(`--clients: unknown client ${c} (known: ${CLIENTS.join(', ')})`)

const vfScript = join(BENCH_DIR, 'verified-fetch/fetch.mjs')
const vfReady = existsSync(values.node24) && existsSync(join(BENCH_DIR, 'verified-fetch/node_modules/@helia/verified-fetch'))
if (clients.includes('verified-fetch') && !vfReady) {
  process.stderr.write(`throughput: skipping @helia/verified-fetch: needs ${values.node24} and ` +
    '`npm install --prefix bench/verified-fetch` (run with that Node 24\'s npm)\n')
}
const active = clients.filter((c) => c !== 'verified-fetch' || vfReady)

const cli = await cliUnderTest(values.cli, values.ref)

function command (client: Client, gw: GatewayInfo, dir: string, out: string): [string, string[]] {
  const url = gw.urls[0] as string
  switch (client) {
    case 'curl': return ['curl', ['-s', '-o', out, `${url}/ipfs/${gw.cid}`]]
    case 'path':
    case 'verified':
      return [process.execPath, [cli.main, 'get', gw.cid, '-o', out, '-g', url, '--mode', client, '--state', join(dir, 'state.db'), '-q']]
    case 'verified-fetch': return [values.node24, [vfScript, url, gw.cid, out]]
    case 'floor': return [process.execPath, [join(BENCH_DIR, 'floor.mjs'), `${url}/ipfs/${gw.cid}`, out]]
  }
}

interface Sample extends Measured {
  client: Client
  sizeMiB: number
  run: number
  gatewayCpuSeconds: number
  hashOk: boolean
  served: GatewayStats
  /** Cores busy with other work before (after waiting for quiet) and during the run. */
  quietBefore: number
  otherCores: number
}

const samples: Sample[] = []
const sections: string[] = []
const started = Date.now()

for (const sizeMiB of sizes) {
  const gw = await startGatewayProcess({ sizeMiB })
  process.stderr.write(`throughput: ${sizeMiB} MiB ${gw.info.cid} (import ${gw.info.importMs} ms) at ${gw.info.urls[0] ?? ''}\n`)
  try {
    for (let run = 1; run <= runs; run++) {
      for (const client of active) {
        const dir = await freshDir('tp')
        const out = join(dir, 'out.bin')
        const [cmd, args] = command(client, gw.info, dir, out)
        const quietBefore = await waitForQuiet({ maxWaitMs: quietWaitMs, ownCpuSeconds: gw.cpuSeconds })
        await gw.stats() // forget earlier requests
        const cpuBefore = gw.cpuSeconds()
        const m = await measure(cmd, args)
        const gatewayCpuSeconds = gw.cpuSeconds() - cpuBefore
        const served = await gw.stats()
        const hashOk = m.exitCode === 0 && existsSync(out) && await sha256File(out) === gw.info.sha256
        await rm(dir, { recursive: true, force: true })
        execFileSync('sync')
        samples.push({ ...m, client, sizeMiB, run, gatewayCpuSeconds, hashOk, served, quietBefore, otherCores: otherCores(m, gatewayCpuSeconds) })
        process.stderr.write(`  run ${run} ${LABEL[client]}: ${fmt(mbps(gw.info.size, m.wallMs))} MB/s, ` +
          `${fmt(m.peakRssBytes / 1e6, 0)} MB peak RSS, client CPU ${fmt(m.cpuSeconds, 2)} s, gateway CPU ${fmt(gatewayCpuSeconds, 2)} s, ` +
          `${served.requests} requests, ${fmt(served.bytesSent / gw.info.size, 3)}× the size sent, other load ${fmt(otherCores(m, gatewayCpuSeconds), 2)} cores` +
          (hashOk ? '' : `  FAILED (exit ${String(m.exitCode)}): ${m.stderr.trim().split('\n').slice(-3).join(' / ')}`) + '\n')
      }
    }
  } finally {
    await gw.stop()
  }

  const of = (c: Client): Sample[] => samples.filter((s) => s.sizeMiB === sizeMiB && s.client === c && s.hashOk)
  const speed = (c: Client): number => median(of(c).map((s) => mbps(gw.info.size, s.wallMs)))
  const curl = speed('curl')
  const vf = speed('verified-fetch')
  const rows = active.map((c) => {
    const ok = of(c)
    const failed = samples.filter((s) => s.sizeMiB === sizeMiB && s.client === c && !s.hashOk).length
    const speeds = ok.map((s) => mbps(gw.info.size, s.wallMs))
    return [
      LABEL[c],
      fmt(speed(c)),
      speeds.length === 0 ? '–' : `${fmt(Math.min(...speeds))}–${fmt(Math.max(...speeds))}`,
      fmt(speed(c) / curl, 2),
      c === 'verified-fetch' ? '1' : fmt(speed(c) / vf, 1),
      fmt(median(ok.map((s) => s.peakRssBytes / 1e6)), 0),
      fmt(median(ok.map((s) => s.cpuSeconds)), 2),
      fmt(median(ok.map((s) => s.gatewayCpuSeconds)), 2),
      fmt(median(ok.map((s) => s.served.requests)), 0),
      fmt(median(ok.map((s) => s.otherCores)), 2),
      `${ok.length}/${ok.length + failed}`
    ]
  })
  sections.push(`**${sizeMiB} MiB** (${gw.info.size} bytes), median of ${runs}\n\n` + table(
    ['client', 'MB/s', 'range', '× curl', '× verified-fetch', 'peak RSS MB', 'client CPU s', 'gateway CPU s', 'requests', 'other load (cores)', 'SHA-256 ok'],
    rows))
}

await cli.cleanup()
const report = `Throughput, one gateway (own process), ${machine()}; CLI: ${cli.describe}; ` +
  `${Math.round((Date.now() - started) / 1000)} s in all.\n\n${sections.join('\n\n')}\n`
process.stdout.write(report)
process.stderr.write(`results: ${await saveResults('throughput', { machine: machine(), cli: cli.describe, samples })}\n`)
