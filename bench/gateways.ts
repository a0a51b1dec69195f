/**
 * Several rate-capped gateways: four gateway processes (one gateway each,
 * same content) each capped at `--rate` MiB/s (one token bucket per gateway,
 * shared by all its connections). cidget verified mode with all four `-g`
 * against `aria2c -x4 -s4 -k1M` with the four path URLs as mirrors. Reports
 * the aggregate MB/s (size / wall time) of each, the sum of the caps and the
 * ratios, and curl on one gateway as a check that one cap is delivered;
 * every output's SHA-256 is checked. `--rates 32,32,32,4` caps each gateway
 * at its own rate instead (as many gateways as rates): gateways that are not
 * alike, where the slowest must not hold up the end.
 *
 *   npm run build && npx tsx bench/gateways.ts [--size 256] [--rate 32] [--count 4 | --rates 32,32,32,4] [--runs 3] [--quiet-wait 30] [--ref HEAD | --cli dist/bin/cidget.mjs]
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  MiB, cliUnderTest, fmt, freshDir, machine, mbps, measure, median, otherCores, positiveInt, positiveNumber,
  saveResults, sha256File, startGatewayProcess, table, waitForQuiet
} from './lib.js'
import type { GatewayProcess, Measured } from './lib.js'

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256' },
    rate: { type: 'string', default: '32' },
    count: { type: 'string', default: '4' },
    rates: { type: 'string' },
    runs: { type: 'string', default: '3' },
    'quiet-wait': { type: 'string', default: '30' },
    cli: { type: 'string' },
    ref: { type: 'string' }
  },
  strict: true
})

const sizeMiB = positiveNumber(values.size, '--size')
const rates = values.rates === undefined
  ? new Array<number>(positiveInt(values.count, '--count')).fill(positiveNumber(values.rate, '--rate'))
  : values.rates.split(',').map((r) => positiveNumber(r, '--rates'))
const count = rates.length
const even = rates.every((r) => r === rates[0])
const runs = positiveInt(values.runs, '--runs')
const quietWaitMs = Number(values['quiet-wait']) * 1000

const CLIENTS = ['verified', 'aria2', 'curl', 'curl-ranges'] as const
type Client = typeof CLIENTS[number]
const LABEL: Record<Client, string> = {
  verified: `cidget verified, ${count} × -g`,
  aria2: `aria2c -x4 -s4 -k1M, ${count} mirrors`,
  curl: 'curl, first gateway only (calibration: one cap)',
  'curl-ranges': `${count} curl in parallel, one range of 1/${count} per gateway (calibration: all caps)`
}

/** `sh -c` script: one curl per gateway for its share of the bytes, in parallel, then the parts joined. */
function rangesScript (urls: string[], cid: string, size: number, dir: string, out: string): string {
  const part = Math.ceil(size / urls.length)
  const q = (x: string): string => `'${x.replace(/'/g, "'\\''")}'`
  const parts = urls.map((u, i) => {
    const from = i * part
    const to = Math.min(size, from + part) - 1
    return `curl -s -r ${from}-${to} -o ${q(join(dir, `part${i}`))} ${q(`${u}/ipfs/${cid}`)} &`
  })
  return `${parts.join(' ')} wait && cat ${urls.map((_, i) => q(join(dir, `part${i}`))).join(' ')} > ${q(out)}`
}

const cli = await cliUnderTest(values.cli, values.ref)
const started = Date.now()
// one process per gateway: each has its own event loop (and so its own share of the 2 cores)
const gateways: GatewayProcess[] = await Promise.all(rates.map(async (rateMiBps) => await startGatewayProcess({ sizeMiB, rateMiBps })))

interface Sample extends Measured {
  client: Client
  run: number
  gatewayCpuSeconds: number
  hashOk: boolean
  /** Bytes each gateway sent, as a fraction of the file size. */
  perGateway: number[]
  requests: number
  quietBefore: number
  otherCores: number
}
const samples: Sample[] = []

try {
  const first = gateways[0] as GatewayProcess
  const { cid, sha256, size } = first.info
  for (const g of gateways) {
    if (g.info.cid !== cid) throw new Error(`gateways disagree on the CID: ${g.info.cid} vs ${cid}`)
  }
  const urls = gateways.map((g) => g.info.urls[0] as string)
  process.stderr.write(`gateways: ${sizeMiB} MiB ${cid}, capped at ${rates.join(', ')} MiB/s at ${urls.join(' ')}\n`)

  for (let run = 1; run <= runs; run++) {
    for (const client of CLIENTS) {
      const dir = await freshDir('gw')
      const out = join(dir, 'out.bin')
      const [cmd, args]: [string, string[]] = client === 'verified'
        ? [process.execPath, [cli.main, 'get', cid, '-o', out, ...urls.flatMap((u) => ['-g', u]), '--mode', 'verified', '--state', join(dir, 'state.db'), '-q']]
        : client === 'aria2'
          ? ['aria2c', ['-x4', '-s4', '-k1M', '--file-allocation=none', '-q', '-d', dir, '-o', 'out.bin', ...urls.map((u) => `${u}/ipfs/${cid}`)]]
          : client === 'curl'
            ? ['curl', ['-s', '-o', out, `${urls[0] as string}/ipfs/${cid}`]]
            : ['sh', ['-c', rangesScript(urls, cid, size, dir, out)]]
      const gatewaysCpu = (): number => gateways.reduce((s, g) => s + g.cpuSeconds(), 0)
      const quietBefore = await waitForQuiet({ maxWaitMs: quietWaitMs, ownCpuSeconds: gatewaysCpu })
      await Promise.all(gateways.map(async (g) => await g.stats())) // forget earlier requests
      const cpuBefore = gateways.reduce((s, g) => s + g.cpuSeconds(), 0)
      const m = await measure(cmd, args)
      const gatewayCpuSeconds = gateways.reduce((s, g) => s + g.cpuSeconds(), 0) - cpuBefore
      const served = await Promise.all(gateways.map(async (g) => await g.stats()))
      const perGateway = served.map((st) => st.bytesSent / size)
      const requests = served.reduce((n, st) => n + st.requests, 0)
      const hashOk = m.exitCode === 0 && existsSync(out) && await sha256File(out) === sha256
      await rm(dir, { recursive: true, force: true })
      execFileSync('sync')
      samples.push({ ...m, client, run, gatewayCpuSeconds, hashOk, perGateway, requests, quietBefore, otherCores: otherCores(m, gatewayCpuSeconds) })
      process.stderr.write(`  run ${run} ${LABEL[client]}: ${fmt(mbps(size, m.wallMs))} MB/s, ${fmt(m.peakRssBytes / 1e6, 0)} MB peak RSS, ` +
        `client CPU ${fmt(m.cpuSeconds, 2)} s, ${requests} requests, share of the file per gateway ${perGateway.map((x) => fmt(x, 2)).join('/')}, ` +
        `other load ${fmt(otherCores(m, gatewayCpuSeconds), 2)} cores` + (hashOk ? '' : `  FAILED (exit ${String(m.exitCode)}): ${m.stderr.trim().split('\n').slice(-3).join(' / ')}`) + '\n')
    }
  }

  const capsMBps = rates.reduce((a, b) => a + b, 0) * MiB / 1e6
  const speed = (c: Client): number => median(samples.filter((s) => s.client === c && s.hashOk).map((s) => mbps(size, s.wallMs)))
  const aria = speed('aria2')
  const rows = CLIENTS.map((c) => {
    const ok = samples.filter((s) => s.client === c && s.hashOk)
    const speeds = ok.map((s) => mbps(size, s.wallMs))
    return [
      LABEL[c],
      fmt(speed(c)),
      speeds.length === 0 ? '–' : `${fmt(Math.min(...speeds))}–${fmt(Math.max(...speeds))}`,
      fmt(speed(c) / capsMBps, 2),
      fmt(speed(c) / aria, 2),
      c === 'curl-ranges' ? '–' : fmt(median(ok.map((s) => s.peakRssBytes / 1e6)), 0),
      c === 'curl-ranges' ? '–' : fmt(median(ok.map((s) => s.cpuSeconds)), 2),
      fmt(median(ok.map((s) => s.requests)), 0),
      ok.length === 0 ? '–' : (ok[Math.floor(ok.length / 2)] as Sample).perGateway.map((x) => fmt(x, 2)).join(' / '),
      fmt(median(ok.map((s) => s.otherCores)), 2),
      `${ok.length}/${samples.filter((s) => s.client === c).length}`
    ]
  })
  const capped = even ? `${count} gateway processes × ${rates[0] as number} MiB/s` : `${count} gateway processes capped at ${rates.join(', ')} MiB/s`
  const report = `Gateways: ${capped} = sum of caps ${fmt(capsMBps)} MB/s; ` +
    `${sizeMiB} MiB; median of ${runs}; ${machine()}; CLI: ${cli.describe}; ${Math.round((Date.now() - started) / 1000)} s in all.\n\n` +
    table(['client', 'MB/s', 'range', '× sum of caps', '× aria2', 'peak RSS MB', 'client CPU s', 'requests', 'bytes per gateway (× size)', 'other load (cores)', 'SHA-256 ok'], rows) + '\n'
  process.stdout.write(report)
  process.stderr.write(`results: ${await saveResults('gateways', { machine: machine(), cli: cli.describe, sizeMiB, rates, count, samples })}\n`)
} finally {
  await Promise.all(gateways.map(async (g) => { await g.stop() }))
  await cli.cleanup()
}
