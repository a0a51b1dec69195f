/**
 * Memory check: the peak RSS of `cidget get --mode verified` (the node
 * process, VmHWM via /usr/bin/time) at several file sizes from one unlimited
 * gateway in its own process. Bounded memory means the peak does not grow
 * with the file size. Also reports MB/s; every output's SHA-256 is checked.
 *
 *   npm run build && npx tsx bench/memory.ts [--sizes 256,1024,4096] [--runs 1] [--mode verified] [--quiet-wait 30] [--ref HEAD | --cli dist/bin/cidget.mjs] [--node-options=--max-semi-space-size=2]
 *
 * `--node-options` puts flags for node before the CLI's path (space-separated),
 * as `NODE_OPTIONS` would: the cost of the young generation's size, say.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  cliUnderTest, fmt, freshDir, machine, mbps, measure, median, otherCores, parseSizes, positiveInt, saveResults,
  sha256File, startGatewayProcess, table, waitForQuiet
} from './lib.js'
import type { Measured } from './lib.js'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '256,1024,4096' },
    runs: { type: 'string', default: '1' },
    mode: { type: 'string', default: 'verified' },
    'quiet-wait': { type: 'string', default: '30' },
    cli: { type: 'string' },
    ref: { type: 'string' },
    'node-options': { type: 'string', default: '' }
  },
  strict: true
})
const sizes = parseSizes(values.sizes, '--sizes')
const runs = positiveInt(values.runs, '--runs')
const quietWaitMs = Number(values['quiet-wait']) * 1000
if (values.mode !== 'verified' && values.mode !== 'path') throw new Error('--mode must be verified or path')
const nodeOptions = values['node-options'].split(' ').filter((o) => o !== '')
if (nodeOptions.some((o) => !o.startsWith('-'))) throw new Error('--node-options takes flags for node, each starting with -')

const cli = await cliUnderTest(values.cli, values.ref)
const started = Date.now()
interface Sample extends Measured { sizeMiB: number, run: number, hashOk: boolean, bytes: number, otherCores: number }
const samples: Sample[] = []

for (const sizeMiB of sizes) {
  const gw = await startGatewayProcess({ sizeMiB })
  const { cid, sha256, size, urls } = gw.info
  process.stderr.write(`memory: ${sizeMiB} MiB ${cid} (import ${gw.info.importMs} ms)\n`)
  try {
    for (let run = 1; run <= runs; run++) {
      const dir = await freshDir('mem')
      const out = join(dir, 'out.bin')
      await waitForQuiet({ maxWaitMs: quietWaitMs, ownCpuSeconds: gw.cpuSeconds })
      const cpuBefore = gw.cpuSeconds()
      const m = await measure(process.execPath, [...nodeOptions, cli.main, 'get', cid, '-o', out, '-g', urls[0] as string, '--mode', values.mode, '--state', join(dir, 'state.db'), '-q'])
      const other = otherCores(m, gw.cpuSeconds() - cpuBefore)
      const hashOk = m.exitCode === 0 && existsSync(out) && await sha256File(out) === sha256
      await rm(dir, { recursive: true, force: true })
      execFileSync('sync')
      samples.push({ ...m, sizeMiB, run, hashOk, bytes: size, otherCores: other })
      process.stderr.write(`  run ${run}: ${fmt(mbps(size, m.wallMs))} MB/s, ${fmt(m.peakRssBytes / 1e6, 0)} MB peak RSS, other load ${fmt(other, 2)} cores` +
        (hashOk ? '' : `  FAILED (exit ${String(m.exitCode)}): ${m.stderr.trim().split('\n').slice(-3).join(' / ')}`) + '\n')
    }
  } finally {
    await gw.stop()
  }
}

const rows = sizes.map((sizeMiB) => {
  const ok = samples.filter((s) => s.sizeMiB === sizeMiB && s.hashOk)
  return [
    `${sizeMiB} MiB`,
    fmt(median(ok.map((s) => s.peakRssBytes / 1e6)), 0),
    ok.length === 0 ? '–' : `${fmt(Math.min(...ok.map((s) => s.peakRssBytes / 1e6)), 0)}–${fmt(Math.max(...ok.map((s) => s.peakRssBytes / 1e6)), 0)}`,
    fmt(median(ok.map((s) => mbps(s.bytes, s.wallMs)))),
    fmt(median(ok.map((s) => s.cpuSeconds)), 2),
    fmt(median(ok.map((s) => s.otherCores)), 2),
    `${ok.length}/${samples.filter((s) => s.sizeMiB === sizeMiB).length}`
  ]
})
process.stdout.write(`Memory, cidget ${values.mode}${nodeOptions.length === 0 ? '' : ` (node ${nodeOptions.join(' ')})`}, one unlimited gateway (own process), median of ${runs}; ${machine()}; ` +
  `CLI: ${cli.describe}; ${Math.round((Date.now() - started) / 1000)} s in all.\n\n` +
  table(['size', 'peak RSS MB', 'range', 'MB/s', 'client CPU s', 'other load (cores)', 'SHA-256 ok'], rows) + '\n')
process.stderr.write(`results: ${await saveResults('memory', { machine: machine(), cli: cli.describe, mode: values.mode, nodeOptions, samples })}\n`)
await cli.cleanup()
