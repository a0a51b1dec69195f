/**
 * Bandwidth limits, on the real clock: `cidget get --limit-rate R` of a file
 * from an unlimited gateway (the rate it keeps, against R), and a service
 * (`cidget serve --limit-rate R`) whose limit is changed through the API
 * mid-download (`PUT /api/limit` to R2 once half the file is in: the rate
 * before and after, against R and R2). Every output is checked against its
 * SHA-256. A table, each figure a median of `--runs`.
 *
 *   npm run build && npx tsx bench/limits.ts [--size 8] [--rate 1M] [--rate2 4M] [--runs 3] [--cli dist/bin/cidget.mjs]
 */
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { parseRate } from '../src/gateways/limiter.js'
import type { DownloadRecord } from '../src/core/types.js'
import { MiB, cliUnderTest, fmt, freshDir, machine, measure, median, positiveInt, saveResults, startGatewayProcess, table } from './lib.js'

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '8' },
    rate: { type: 'string', default: '1M' },
    rate2: { type: 'string', default: '4M' },
    runs: { type: 'string', default: '3' },
    cli: { type: 'string' }
  }
})
const sizeMiB = positiveInt(values.size, '--size')
const runs = positiveInt(values.runs, '--runs')
const rate = parseRate(values.rate) ?? 0
const rate2 = parseRate(values.rate2) ?? 0
if (rate === 0 || rate2 === 0) throw new Error('--rate and --rate2 must be limits')

const cli = await cliUnderTest(values.cli)
const gw = await startGatewayProcess({ sizeMiB })
const size = gw.info.size
const url = gw.info.urls[0] as string

/** `cidget get --limit-rate`: the wall time, checked. */
async function limitedGet (): Promise<number> {
  const dir = await freshDir('limit')
  const out = join(dir, 'out.bin')
  const m = await measure(process.execPath, [cli.main, 'get', gw.info.cid, '-o', out, '-g', url, '--limit-rate', values.rate, '--state', join(dir, 'state.db'), '-q'])
  if (m.exitCode !== 0) throw new Error(`get exited ${String(m.exitCode)}: ${m.stderr}`)
  const sha = createHash('sha256').update(await readFile(out)).digest('hex')
  if (sha !== gw.info.sha256) throw new Error('wrong bytes')
  return m.wallMs
}

/** A service limited to `rate`, changed to `rate2` once half is in: the rates before and after. */
async function changedThroughApi (): Promise<{ before: number, after: number }> {
  const dir = await freshDir('limit-serve')
  const child = spawn(process.execPath, [cli.main, 'serve', '--port', '0', '--no-auth', '--dir', join(dir, 'out'), '--state', join(dir, 'state.db'), '-g', url, '--limit-rate', values.rate], { stdio: ['ignore', 'ignore', 'pipe'] })
  try {
    const base = await new Promise<string>((resolve, reject) => {
      child.once('exit', (code) => { reject(new Error(`serve exited ${String(code)}`)) })
      // the service says where it listens on stderr
      createInterface({ input: child.stderr }).on('line', (line) => {
        const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(line)
        if (m !== null) resolve(m[1] as string)
      })
    })
    const call = async <T>(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<T> => {
      const res = await request(base + path, { method, headers: { 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
      return await res.body.json() as T
    }
    const started = performance.now()
    const added = await call<DownloadRecord>('POST', '/api/downloads', { target: gw.info.cid, output: 'f.bin' })
    let rec = added
    let changedAt: { ms: number, bytes: number } | undefined
    while (rec.status !== 'success' && rec.status !== 'failed') {
      await new Promise((resolve) => setTimeout(resolve, 50))
      rec = await call<DownloadRecord>('GET', `/api/downloads/${added.id}`)
      if (changedAt === undefined && rec.currentSize >= size / 2) {
        changedAt = { ms: performance.now() - started, bytes: rec.currentSize }
        await call('PUT', '/api/limit', { limitRate: values.rate2 })
      }
    }
    if (rec.status !== 'success' || changedAt === undefined) throw new Error(`download ${rec.status}: ${rec.error ?? ''}`)
    const sha = createHash('sha256').update(await readFile(rec.output)).digest('hex')
    if (sha !== gw.info.sha256) throw new Error('wrong bytes')
    const total = performance.now() - started
    return { before: changedAt.bytes / (changedAt.ms / 1000), after: (size - changedAt.bytes) / ((total - changedAt.ms) / 1000) }
  } finally {
    child.kill('SIGTERM')
  }
}

const gets: number[] = []
const before: number[] = []
const after: number[] = []
for (let i = 0; i < runs; i++) {
  gets.push(await limitedGet())
  const c = await changedThroughApi()
  before.push(c.before)
  after.push(c.after)
}
await gw.stop()
await cli.cleanup()

const got = size / (median(gets) / 1000)
const rows = [
  [`get --limit-rate ${values.rate}`, fmt(rate / MiB, 2), fmt(got / MiB, 2), fmt(got / rate, 2)],
  [`serve --limit-rate ${values.rate}, before the change`, fmt(rate / MiB, 2), fmt(median(before) / MiB, 2), fmt(median(before) / rate, 2)],
  [`after PUT /api/limit ${values.rate2}`, fmt(rate2 / MiB, 2), fmt(median(after) / MiB, 2), fmt(median(after) / rate2, 2)]
]
process.stdout.write(`${machine()}; ${cli.describe}; ${sizeMiB} MiB file, one unlimited gateway, median of ${runs}\n\n` +
  table(['what', 'limit MiB/s', 'measured MiB/s', '× limit'], rows) + '\n')
await saveResults('limits', { sizeMiB, rate, rate2, runs, gets, before, after })
