/**
 * The queue of a fleet: how fast downloads are queued and claimed on SQLite
 * and on PostgreSQL, and how many small downloads per second 1, 2 and 4
 * `cidget worker` processes get through.
 *
 * 1. Store throughput, at `--sizes` records (default 10,000 and 100,000):
 *    `Downloader.enqueue` of all of them in one call (one transaction), then
 *    a worker's cycle (`claimNext`, then `markDownloadSuccess`) until the
 *    queue is empty: half by one claimer, the rest by four at once (four
 *    store connections in this process).
 * 2. End to end: `--files` small files (`--file-size` bytes) served by a test
 *    gateway in its own process, queued on a fresh PostgreSQL database, then
 *    1, 2 and 4 worker processes (`--concurrency` each) started together;
 *    downloads per second from their start to the last `success` in the
 *    state. Every output is checked against its SHA-256.
 *
 *   npm run build && npx tsx bench/queue.ts [--sizes 10000,100000] [--files 1000] [--file-size 4096]
 *     [--concurrency 8] [--pg postgres://postgres@127.0.0.1:5432/postgres] [--cli dist/bin/cidget.mjs]
 *
 * PostgreSQL: a server where the user may create databases (each run makes
 * and drops its own, `cidget_bench_*`).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { Downloader, type QueueItem } from '../src/engine/downloader.js'
import { PostgresStore } from '../src/store/postgres.js'
import { SqliteStore } from '../src/store/sqlite.js'
import type { Store } from '../src/store/store.js'
import { pgDatabase, BENCH_DIR, ROOT, cliUnderTest, fmt, freshDir, machine, positiveInt, saveResults, table } from './lib.js'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10000,100000' },
    files: { type: 'string', default: '1000' },
    'file-size': { type: 'string', default: '4096' },
    concurrency: { type: 'string', default: '8' },
    workers: { type: 'string', default: '1,2,4' },
    pg: { type: 'string', default: process.env.CIDGET_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    cli: { type: 'string' }
  },
  strict: true
})
const sizes = values.sizes.split(',').map(s => positiveInt(s.trim(), '--sizes'))
const files = positiveInt(values.files, '--files')
const fileSize = positiveInt(values['file-size'], '--file-size')
const concurrency = positiveInt(values.concurrency, '--concurrency')
const workerCounts = values.workers.split(',').map(s => positiveInt(s.trim(), '--workers'))
const CID = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy' // any valid CID: the store never fetches

interface StoreRow { store: string, records: number, enqueuePerS: number, claimOnePerS: number, claimFourPerS: number }

async function storeThroughput (kind: 'sqlite' | 'postgres', n: number): Promise<StoreRow> {
  const dir = await freshDir('queue')
  const db = kind === 'postgres' ? await pgDatabase(values.pg, 'cidget_bench') : undefined
  const location = db?.url ?? join(dir, 'state.db')
  const open = async (): Promise<Store> => kind === 'postgres' ? await PostgresStore.open(location) : await SqliteStore.open(location)
  try {
    const items: QueueItem[] = Array.from({ length: n }, (_, i) => ({ target: CID, output: `f${i}`, priority: i % 3 }))
    const dl = await Downloader.open({ state: location, recover: false, gateways: ['http://127.0.0.1:9'] })
    let t = performance.now()
    await dl.enqueue(items, { dir })
    const enqueueMs = performance.now() - t
    await dl.close()
    // a worker's cycle: claim, then record the outcome (which takes it out of the claimable set);
    // one claimer takes half, then four at once take the rest
    const half = Math.floor(n / 2)
    const one = await open()
    t = performance.now()
    for (let i = 0; i < half; i++) {
      const rec = await one.claimNext('bench:1:one', 3_600_000)
      if (rec === undefined) throw new Error('queue ran dry')
      await one.markDownloadSuccess(rec.id, null, 0)
    }
    const oneMs = performance.now() - t
    await one.close()
    const four = await Promise.all([1, 2, 3, 4].map(async () => await open()))
    let claimed = 0
    t = performance.now()
    await Promise.all(four.map(async (s, k) => {
      for (let rec = await s.claimNext(`bench:1:four${k}`, 3_600_000); rec !== undefined; rec = await s.claimNext(`bench:1:four${k}`, 3_600_000)) {
        await s.markDownloadSuccess(rec.id, null, 0)
        claimed++
      }
    }))
    const fourMs = performance.now() - t
    for (const s of four) await s.close()
    if (claimed !== n - half) throw new Error(`four claimers took ${claimed}, not ${n - half}`)
    return { store: kind === 'postgres' ? 'PostgreSQL' : 'SQLite', records: n, enqueuePerS: n / (enqueueMs / 1000), claimOnePerS: half / (oneMs / 1000), claimFourPerS: claimed / (fourMs / 1000) }
  } finally {
    await db?.drop()
    await rm(dir, { recursive: true, force: true })
  }
}

interface FleetRow { workers: number, files: number, seconds: number, perS: number, ok: boolean }

async function fleet (cli: string, gateway: { url: string, files: Array<{ cid: string, sha256: string }> }, workers: number): Promise<FleetRow> {
  const dir = await freshDir('fleet')
  const db = await pgDatabase(values.pg, 'cidget_bench')
  const children: ChildProcess[] = []
  try {
    const dl = await Downloader.open({ state: db.url, recover: false, gateways: [gateway.url] })
    await dl.enqueue(gateway.files.map((f, i) => ({ target: f.cid, output: `f${i}` })), { dir })
    await dl.close()
    const t = performance.now()
    for (let w = 0; w < workers; w++) {
      children.push(spawn(process.execPath, [cli, 'worker', '--state', db.url, '--dir', dir, '--concurrency', String(concurrency), '--poll-ms', '100', '-q'], { stdio: 'ignore' }))
    }
    const store = await PostgresStore.open(db.url)
    let seconds: number
    try {
      for (;;) {
        const counts = await store.countByStatus()
        if (counts.success === gateway.files.length) break
        if (counts.failed > 0) throw new Error(`${counts.failed} downloads failed`)
        await new Promise(resolve => setTimeout(resolve, 20))
      }
      seconds = (performance.now() - t) / 1000
    } finally {
      await store.close()
    }
    let ok = true
    for (const [i, f] of gateway.files.entries()) {
      if (createHash('sha256').update(await readFile(join(dir, `f${i}`))).digest('hex') !== f.sha256) ok = false
    }
    return { workers, files: gateway.files.length, seconds, perS: gateway.files.length / seconds, ok }
  } finally {
    for (const c of children) c.kill('SIGTERM')
    await Promise.all(children.map(async c => await new Promise(resolve => { if (c.exitCode !== null) resolve(null); else c.on('close', resolve) })))
    await db.drop()
    await rm(dir, { recursive: true, force: true })
  }
}

const started = performance.now()
const storeRows: StoreRow[] = []
for (const n of sizes) {
  for (const kind of ['sqlite', 'postgres'] as const) {
    const row = await storeThroughput(kind, n)
    process.stderr.write(`  ${row.store} ${n}: enqueue ${fmt(row.enqueuePerS, 0)}/s, claim ${fmt(row.claimOnePerS, 0)}/s (one), ${fmt(row.claimFourPerS, 0)}/s (four)\n`)
    storeRows.push(row)
  }
}

const { main, describe, cleanup } = await cliUnderTest(values.cli)
const gwProcess = spawn(process.execPath, ['--import', 'tsx', join(BENCH_DIR, 'service.ts'), '--gateway-process', '--count', String(files), '--file-size', String(fileSize)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
const gateway = await new Promise<{ url: string, files: Array<{ cid: string, sha256: string }> }>((resolve) => {
  createInterface({ input: gwProcess.stdout! }).once('line', (line) => resolve(JSON.parse(line) as { url: string, files: Array<{ cid: string, sha256: string }> }))
})
const fleetRows: FleetRow[] = []
try {
  for (const w of workerCounts) {
    const row = await fleet(main, gateway, w)
    process.stderr.write(`  ${w} worker(s): ${row.files} files in ${fmt(row.seconds, 2)} s = ${fmt(row.perS, 0)}/s${row.ok ? '' : ' (WRONG BYTES)'}\n`)
    fleetRows.push(row)
  }
} finally {
  gwProcess.stdin!.end()
  await cleanup()
}

const out = [
  `Queue throughput, ${machine()}; CLI: ${describe}; ${fmt((performance.now() - started) / 1000, 0)} s in all.`,
  '',
  table(['store', 'records', 'enqueue (one transaction), records/s', 'claim + finish, one claimer, /s', 'claim + finish, four claimers at once, /s'],
    storeRows.map(r => [r.store, r.records.toLocaleString('en'), fmt(r.enqueuePerS, 0), fmt(r.claimOnePerS, 0), fmt(r.claimFourPerS, 0)])),
  '',
  `End to end on PostgreSQL: ${files} files of ${fileSize} bytes, one test gateway (own process), workers with --concurrency ${concurrency}.`,
  '',
  table(['workers', 'files', 'seconds', 'downloads/s', '× one worker', 'SHA-256 ok'],
    fleetRows.map(r => [String(r.workers), String(r.files), fmt(r.seconds, 2), fmt(r.perS, 0), fmt(r.perS / (fleetRows[0]?.perS ?? r.perS), 2), r.ok ? 'yes' : 'NO']))
].join('\n')
process.stdout.write(out + '\n')
await saveResults('queue', { storeRows, fleetRows, files, fileSize, concurrency })
