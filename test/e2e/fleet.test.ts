/**
 * A fleet: worker processes (`cidget worker`) sharing one queue in a real
 * PostgreSQL database, downloading from a real local gateway, under a worker
 * killed with SIGKILL and under the database dropping their connections.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MemoryBlocks, addFile, seededBytes, startTestGateway, type TestGateway, type RequestRecord } from '../../src/testing/index.js'
import { Downloader } from '../../src/engine/downloader.js'
import { PostgresStore } from '../../src/store/postgres.js'
import type { DownloadRecord } from '../../src/core/types.js'
import { CLI, KiB, sha256 } from '../helpers.js'
import { postgresAvailable, useTestDatabases, withConnection, type TestDatabase } from '../store/pg.js'

const available = await postgresAvailable()

const COUNT = 300

/**
 * Leases of the processes. A process whose lease cannot be renewed in time stops its downloads one
 * heartbeat before the lease runs out, and another may then take them over; a process starved of
 * CPU for longer than that (four workers, PostgreSQL and the test on two busy cores) would be
 * stopped, or overlap a take-over at the gateway, without anything being wrong. So leases are
 * long (10 s, 9 s of slack) except where a take-over is the point: there 5 s (4.5 s of slack), which
 * is also how long the survivors wait for the dead worker's downloads.
 */
const LEASE = { CIDGET_LEASE_MS: '10000', CIDGET_HEARTBEAT_MS: '1000' }
const TAKE_OVER_LEASE = { CIDGET_LEASE_MS: '5000', CIDGET_HEARTBEAT_MS: '500' }

interface Content { cid: string, sha: string, name: string }

let blocks: MemoryBlocks
let contents: Content[]
let gateway: TestGateway

beforeAll(async () => {
  blocks = new MemoryBlocks()
  contents = []
  for (let i = 0; i < COUNT; i++) {
    // mostly one-block files, every tenth of a few leaves (a CAR run)
    const size = i % 10 === 0 ? 700 * KiB + i : 1 + ((i * 7919) % (120 * KiB))
    const data = seededBytes(size, 1000 + i)
    const cid = await addFile(blocks, data)
    contents.push({ cid: cid.toString(), sha: sha256(data), name: `f${String(i).padStart(3, '0')}.bin` })
  }
})

interface Worker {
  name: string
  child: ChildProcess
  events: Array<{ type: string, id?: number, record?: DownloadRecord }>
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

describe.skipIf(!available)('cidget worker: a fleet on one PostgreSQL queue', () => {
  const databases = useTestDatabases()
  let dir: string
  let db: TestDatabase
  let workers: Worker[] = []

  afterEach(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL')
    await Promise.all(workers.map(async w => await w.exited))
    workers = []
    await gateway?.close()
    await rm(dir, { recursive: true, force: true })
  })

  afterAll(async () => {
    await gateway?.close()
  })

  /** A fresh database, a gateway capped so that the run takes a few seconds, the 300 downloads queued. */
  async function setup (capBytesPerSecond: number): Promise<void> {
    dir = await mkdtemp(join(tmpdir(), 'cidget-fleet-'))
    db = await databases.create()
    gateway = await startTestGateway({ blocks, maxBytesPerSecond: capBytesPerSecond })
    const dl = await Downloader.open({ routers: [], state: db.url, gateways: [gateway.url], recover: false })
    try {
      const queued = await dl.enqueue(contents.map((c, i) => ({ target: c.cid, output: c.name, priority: i % 3 === 0 ? 1 : 0 })), { dir })
      expect(queued).toHaveLength(COUNT)
    } finally {
      await dl.close()
    }
  }

  function startWorker (name: string, lease: Record<string, string> = LEASE): Worker {
    const child = spawn(process.execPath, [CLI, 'worker', '--state', db.url, '--dir', dir, '--concurrency', '4', '--worker-id', name, '--poll-ms', '50', '--json', '--allow-local'], {
      env: {
        ...process.env,
        CIDGET_USER_AGENT: `cidget ${name}`,
        ...lease,
        CIDGET_TIMEOUT_MS: '2000',
        CIDGET_INITIAL_BACKOFF_MS: '20'
      },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const w: Worker = { name, child, events: [], exited: new Promise(resolve => child.on('close', (code, signal) => resolve({ code, signal }))) }
    let buffer = ''
    child.stdout!.on('data', (d: Buffer) => {
      buffer += d.toString()
      const lines = buffer.split('\n')
      buffer = lines.pop() ?? ''
      for (const l of lines) if (l.trim() !== '') w.events.push(JSON.parse(l) as Worker['events'][number])
    })
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
    void w.exited.then(({ code }) => { if (code !== 0 && code !== null) console.error(`${name} exited ${code}: ${stderr}`) })
    workers.push(w)
    return w
  }

  /** Resolves when the state says every download succeeded (workers report through the database only). */
  async function allSucceeded (timeoutMs = 60_000): Promise<DownloadRecord[]> {
    const store = await PostgresStore.open(db.url)
    try {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const counts = await store.countByStatus()
        if (counts.success === COUNT) return await store.listDownloads({ limit: COUNT })
        if (counts.failed > 0) throw new Error(`failed downloads: ${JSON.stringify(await store.getDownloadsByStatus('failed'))}`)
        if (Date.now() > deadline) throw new Error(`not done in time: ${JSON.stringify(counts)}`)
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    } finally {
      await store.close()
    }
  }

  /** The files are there with the right bytes, and no lease is left held. */
  async function checkOutcome (records: DownloadRecord[]): Promise<void> {
    expect(records).toHaveLength(COUNT)
    for (const r of records) {
      const c = contents.find(x => x.cid === r.cid)!
      expect(r.output).toBe(join(dir, c.name))
      expect(r.hash).toBe(c.sha)
      expect(sha256(await readFile(r.output))).toBe(c.sha)
      expect(r.leaseOwner).toBeNull()
    }
  }

  /**
   * From the gateway's own record: for every content, the requests of different
   * workers (told apart by their User-Agent) never overlap in time.
   */
  function checkNoDoubleWork (): { byWorker: Map<string, number> } {
    const byCid = new Map<string, RequestRecord[]>()
    for (const r of gateway.requests) {
      const cid = contents.find(c => r.path.startsWith(`/ipfs/${c.cid}`))?.cid ?? r.path
      byCid.set(cid, [...(byCid.get(cid) ?? []), r])
    }
    const byWorker = new Map<string, number>()
    for (const [cid, reqs] of byCid) {
      const spans = new Map<string, { from: number, to: number }>()
      for (const r of reqs) {
        const ua = r.userAgent ?? '?'
        byWorker.set(ua, (byWorker.get(ua) ?? 0) + 1)
        const s = spans.get(ua)
        const to = r.endedAt ?? Date.now()
        spans.set(ua, s === undefined ? { from: r.startedAt, to } : { from: Math.min(s.from, r.startedAt), to: Math.max(s.to, to) })
      }
      const list = [...spans.entries()].sort((a, b) => a[1].from - b[1].from)
      for (let i = 1; i < list.length; i++) {
        const [prevUa, prev] = list[i - 1]!
        const [ua, span] = list[i]!
        expect(span.from, `${cid}: ${ua} started while ${prevUa} still worked on it`).toBeGreaterThanOrEqual(prev.to)
      }
    }
    return { byWorker }
  }

  async function stopAll (): Promise<void> {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGTERM')
    for (const w of workers) {
      const { code, signal } = await w.exited
      if (signal !== 'SIGKILL') expect(code, `${w.name} exit code`).toBe(0)
    }
  }

  it('cidget serve on the PostgreSQL state pages through the whole queue, runs what is added through it, and leaves the queue to the workers', async () => {
    await setup(64 * 1024 * 1024)
    const child = spawn(process.execPath, [CLI, 'serve', '--state', db.url, '--port', '0', '--dir', dir, '--no-auth', '-g', gateway.url], {
      env: { ...process.env, HOME: dir, CIDGET_TOKEN: '', ...LEASE },
      stdio: ['ignore', 'ignore', 'pipe']
    })
    const exited = new Promise<{ code: number | null }>(resolve => child.on('close', code => resolve({ code })))
    workers.push({ name: 'serve', child, events: [], exited: exited.then(e => ({ ...e, signal: null })) })
    let stderr = ''
    const base = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString()
        const m = /cidget serving (http:\/\/127\.0\.0\.1:\d+)\//.exec(stderr)
        if (m !== null) resolve(m[1]!)
      })
      void exited.then(({ code }) => reject(new Error(`serve exited ${String(code)}: ${stderr}`)))
    })
    const get = async <T>(path: string): Promise<T> => await (await fetch(base + path)).json() as T
    // every queued download, page by page
    const seen: number[] = []
    for (let cursor: string | null = ''; cursor !== null;) {
      const page: { items: DownloadRecord[], nextCursor: string | null } = await get(`/api/downloads?limit=100${cursor === '' ? '' : `&cursor=${cursor}`}`)
      seen.push(...page.items.map(r => r.id))
      cursor = page.nextCursor
    }
    expect(seen).toHaveLength(COUNT)
    // a download added through the service runs in the service
    const extra = seededBytes(300 * KiB, 77)
    const extraCid = (await addFile(blocks, extra)).toString()
    const added = await (await fetch(base + '/api/downloads', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: extraCid, output: 'extra.bin' }) })).json() as DownloadRecord
    for (let r = added; r.status !== 'success'; r = await get<DownloadRecord>(`/api/downloads/${added.id}`)) {
      expect(['pending', 'in_progress', 'resuming']).toContain(r.status)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    expect(sha256(await readFile(join(dir, 'extra.bin')))).toBe(sha256(extra))
    // the queue itself was left alone: nothing claimed it
    const store = await PostgresStore.open(db.url)
    try {
      expect((await store.countByStatus()).pending).toBe(COUNT)
    } finally {
      await store.close()
    }
    child.kill('SIGTERM')
    expect((await exited).code).toBe(0)
  }, 60_000)

  it('four workers drain 300 downloads: every file right, none worked by two workers at once', async () => {
    await setup(24 * 1024 * 1024)
    for (let i = 0; i < 4; i++) startWorker(`w${i}`)
    const records = await allSucceeded()
    await stopAll()
    await checkOutcome(records)
    const { byWorker } = checkNoDoubleWork()
    // the queue was shared: every worker did some of it
    for (let i = 0; i < 4; i++) expect(byWorker.get(`cidget w${i}`) ?? 0, `requests of w${i}`).toBeGreaterThan(0)
    const claimed = workers.flatMap(w => w.events.filter(e => e.type === 'claimed').map(e => e.id))
    expect(new Set(claimed).size).toBe(COUNT)
    expect(claimed).toHaveLength(COUNT)
  }, 120_000)

  it('a worker killed with SIGKILL mid-run: its downloads are taken over after their leases lapse and complete', async () => {
    await setup(8 * 1024 * 1024)
    const victim = startWorker('victim', TAKE_OVER_LEASE)
    for (let i = 0; i < 3; i++) startWorker(`w${i}`, TAKE_OVER_LEASE)
    // once the victim holds downloads it has not finished
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        const claimed = victim.events.filter(e => e.type === 'claimed').length
        const finished = victim.events.filter(e => e.type === 'finished').length
        if (claimed - finished >= 2 && finished >= 3) { clearInterval(check); resolve() }
      }, 10)
    })
    victim.child.kill('SIGKILL')
    await victim.exited
    // what the dead worker held, by the state (its last events may not have reached its stdout)
    const store = await PostgresStore.open(db.url)
    const orphaned = (await store.listDownloads({ limit: COUNT })).filter(r => r.leaseOwner?.endsWith(':victim') === true).map(r => r.id)
    await store.close()
    expect(orphaned.length).toBeGreaterThanOrEqual(1)
    const records = await allSucceeded()
    await stopAll()
    await checkOutcome(records)
    checkNoDoubleWork()
    // each orphan was claimed again by a survivor and finished there
    for (const id of orphaned) {
      const by = workers.filter(w => w !== victim && w.events.some(e => e.type === 'finished' && e.record?.id === id))
      expect(by, `download ${id}`).toHaveLength(1)
    }
  }, 120_000)

  it('the database drops every worker connection mid-run (pg_terminate_backend): the workers recover, nothing is lost or done twice', async () => {
    await setup(8 * 1024 * 1024)
    for (let i = 0; i < 4; i++) startWorker(`w${i}`)
    const name = new URL(db.url).pathname.slice(1)
    let terminated = 0
    for (let round = 0; round < 3; round++) {
      await new Promise(resolve => setTimeout(resolve, 700))
      terminated += await withConnection(db.url, async (c) => {
        const res = await c.query('SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()) t', [name])
        return (res.rows[0] as { n: number }).n
      })
    }
    expect(terminated).toBeGreaterThan(0)
    const records = await allSucceeded()
    await stopAll()
    await checkOutcome(records)
    checkNoDoubleWork()
    // every download was finished by exactly one worker
    const finished = workers.flatMap(w => w.events.filter(e => e.type === 'finished' && e.record?.status === 'success').map(e => e.record!.id))
    expect(new Set(finished).size).toBe(COUNT)
    expect(finished).toHaveLength(COUNT)
  }, 120_000)
})
