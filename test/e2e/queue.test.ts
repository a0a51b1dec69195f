/**
 * Queues as a user fills and reads them: `cidget add --from FILE` into a
 * SQLite file and into PostgreSQL (all or nothing, bad lines named by number,
 * outputs confined to --dir), `--from` on a running service, and
 * `cidget list --limit/--after` paging through the queue.
 */
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { runCli, world, CLI, KiB, type CliResult, type World } from '../helpers.js'
import { openStore } from '../../src/store/index.js'
import type { DownloadRecord } from '../../src/core/types.js'
import { postgresAvailable, useTestDatabases } from '../store/pg.js'

const COUNT = 2000
const BAD_LINE = 1234

let tmp: string
beforeAll(async () => { tmp = await mkdtemp(join(tmpdir(), 'cidget-queue-')) })
afterAll(async () => { await rm(tmp, { recursive: true, force: true }) })

/** A fresh directory of its own under the file's temp dir. */
let dirs = 0
async function freshDir (): Promise<string> {
  const d = join(tmp, `case-${++dirs}`)
  await mkdir(join(d, 'out'), { recursive: true })
  return d
}

/** No config file, no service, no state from the environment: only what the test passes. */
function env (home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { HOME: home, CIDGET_STATE: '', CIDGET_SERVER: '', CIDGET_TOKEN: '', ...extra }
}

/** A distinct raw-leaf CID for each number. */
async function cidOf (i: number): Promise<string> {
  return CID.createV1(0x55, await sha256Hasher.digest(new TextEncoder().encode(`queued item ${i}`))).toString()
}

/** What a queued download must look like, its output relative to the queue's directory. */
interface Expected {
  target: string
  cid: string
  output: string
  priority: number
  expectedSha256: string | null
  mode: 'verified' | 'car'
  gateways?: string[]
}

/**
 * A list of COUNT downloads in every form a line may take (bare CIDs,
 * ipfs:// and /ipfs/ targets, JSON objects with output, sha256, mode,
 * priority and gateways), with comments, blank lines, indentation and CRLF
 * line ends between them.
 */
async function queueFile (): Promise<{ lines: string[], expected: Expected[] }> {
  const lines: string[] = ['# a queue of test downloads', '']
  const expected: Expected[] = []
  for (let i = 0; i < COUNT; i++) {
    if (i % 400 === 0) lines.push(`# block ${i / 400}`)
    if (i % 97 === 0) lines.push('   ')
    const cid = await cidOf(i)
    switch (i % 5) {
      case 0:
        lines.push(cid)
        expected.push({ target: cid, cid, output: cid, priority: 0, expectedSha256: null, mode: 'verified' })
        break
      case 1:
        lines.push(`  ipfs://${cid}\r`)
        expected.push({ target: `ipfs://${cid}`, cid, output: cid, priority: 0, expectedSha256: null, mode: 'verified' })
        break
      case 2: {
        const sha = i.toString(16).padStart(64, 'f')
        lines.push(JSON.stringify({ target: cid, output: `sub/${i}.bin`, priority: i % 7, sha256: sha.toUpperCase() }))
        expected.push({ target: cid, cid, output: `sub/${i}.bin`, priority: i % 7, expectedSha256: sha, mode: 'verified' })
        break
      }
      case 3:
        lines.push(JSON.stringify({ target: `/ipfs/${cid}`, output: `d${i % 10}/`, mode: 'car', priority: -3 }) + '\r')
        expected.push({ target: `/ipfs/${cid}`, cid, output: `d${i % 10}/${cid}.car`, priority: -3, expectedSha256: null, mode: 'car' })
        break
      default:
        lines.push(JSON.stringify({ target: cid, gateways: ['https://gw.example/'], priority: 1_000_000 }))
        expected.push({ target: cid, cid, output: cid, priority: 1_000_000, expectedSha256: null, mode: 'verified', gateways: ['https://gw.example'] })
    }
  }
  lines.push('# end', '')
  return { lines, expected }
}

/** The list with line BAD_LINE (1-based) replaced; that line holds a download. */
function withLine (lines: string[], text: string): string {
  const copy = [...lines]
  expect(copy[BAD_LINE - 1]?.trim().startsWith('#')).toBe(false)
  expect(copy[BAD_LINE - 1]?.trim()).not.toBe('')
  copy[BAD_LINE - 1] = text
  return copy.join('\n')
}

/** Every download in the state, read through the store (not the CLI). */
async function rowsOf (location: string): Promise<DownloadRecord[]> {
  const store = await openStore(location)
  try {
    const rows: DownloadRecord[] = []
    for (;;) {
      const page = await store.listDownloads({ afterId: rows[rows.length - 1]?.id ?? 0, limit: 1000 })
      if (page.length === 0) return rows
      rows.push(...page)
    }
  } finally {
    await store.close()
  }
}

function expectQueued (rows: DownloadRecord[], expected: Expected[], dir: string): void {
  expect(rows).toHaveLength(expected.length)
  for (const [i, want] of expected.entries()) {
    const row = rows[i]!
    expect({
      target: row.target, cid: row.cid, output: row.output, priority: row.priority, expectedSha256: row.expectedSha256, mode: row.mode, status: row.status
    }, `item ${i}`).toEqual({
      target: want.target, cid: want.cid, output: join(dir, want.output), priority: want.priority, expectedSha256: want.expectedSha256, mode: want.mode, status: 'pending'
    })
    if (want.gateways !== undefined) expect(row.gateways).toEqual(want.gateways)
    if (i > 0) expect(row.id).toBeGreaterThan(rows[i - 1]!.id)
  }
}

function expectUsageError (r: CliResult, code: string, message: RegExp): void {
  expect(r.code, r.stderr).toBe(2)
  expect(r.stderr).toMatch(message)
  expect(r.stderr).toContain(`[${code}]`)
  expect(r.stdout).toBe('')
}

/** Pages through `cidget list` in table form, following the "… more:" line each page ends with. */
async function pageByHints (state: string, home: string, limit: number, extra: string[] = []): Promise<{ ids: number[], pages: number }> {
  const ids: number[] = []
  let pages = 0
  let after: string | undefined
  for (;;) {
    const r = await runCli(['list', '--state', state, '--limit', String(limit), ...extra, ...(after === undefined ? [] : ['--after', after])], { env: env(home) })
    expect(r.code, r.stderr).toBe(0)
    pages++
    const shown = r.stdout.split('\n').slice(1).map(l => /^(\d+)\s/.exec(l)?.[1]).filter((id): id is string => id !== undefined).map(Number)
    expect(shown.length).toBeLessThanOrEqual(limit)
    ids.push(...shown)
    const hint = /^… more: cidget list(.*) --after (\d+) --limit (\d+)$/m.exec(r.stderr)
    if (hint === null) return { ids, pages }
    expect(hint[1]).toBe(extra.length === 0 ? '' : ' ' + extra.join(' '))
    expect(Number(hint[2])).toBe(shown[shown.length - 1])
    expect(Number(hint[3])).toBe(limit)
    after = hint[2]
  }
}

/** Pages through `cidget list --json --limit --after` until a page comes back short. */
async function pageJson (state: string, home: string, limit: number): Promise<{ ids: number[], pages: number }> {
  const ids: number[] = []
  let pages = 0
  for (;;) {
    const r = await runCli(['list', '--state', state, '--json', '--limit', String(limit), '--after', String(ids[ids.length - 1] ?? 0)], { env: env(home) })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toBe('')
    pages++
    const page = r.stdout.split('\n').filter(l => l !== '').map(l => (JSON.parse(l) as DownloadRecord).id)
    ids.push(...page)
    if (page.length < limit) return { ids, pages }
  }
}

describe('cidget add --from into a SQLite state', () => {
  it(`queues ${COUNT} downloads of mixed lines in one go, relative to the current directory; cidget list pages through them exactly once`, async () => {
    const home = await freshDir()
    const state = join(home, 'state.db')
    const { lines, expected } = await queueFile()
    await writeFile(join(home, 'queue.txt'), lines.join('\n'))
    const started = Date.now()
    const r = await runCli(['add', '--from', join(home, 'queue.txt'), '--state', state], { env: env(home), cwd: join(home, 'out') })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toBe(`queued ${COUNT} downloads (ids 1–${COUNT}) in ${state}\n`)
    expect(Date.now() - started).toBeLessThan(20_000)
    expectQueued(await rowsOf(state), expected, await realpath(join(home, 'out')))

    // the table, following the "… more" line: each id once, in order; a full last page ends without one
    const byHints = await pageByHints(state, home, 250)
    expect(byHints.pages).toBe(COUNT / 250)
    expect(byHints.ids).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1))
    // JSON pages: no hint, a short last page
    const byJson = await pageJson(state, home, 700)
    expect(byJson.pages).toBe(3)
    expect(byJson.ids).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1))
    // the hint keeps the status filter
    const pending = await pageByHints(state, home, 150, ['--status', 'pending'])
    expect(pending.ids).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1))
    const past = await runCli(['list', '--state', state, '--after', String(COUNT)], { env: env(home) })
    expect(past.stdout).toBe('no downloads\n')
    expect(past.stderr).toBe('')
    const tail = await runCli(['list', '--state', state, '--after', String(COUNT - 10), '--json'], { env: env(home) })
    expect(tail.stdout.trim().split('\n').map(l => (JSON.parse(l) as DownloadRecord).id)).toEqual(Array.from({ length: 10 }, (_, i) => COUNT - 9 + i))
    const badAfter = await runCli(['list', '--state', state, '--after', 'x'], { env: env(home) })
    expect(badAfter.code).toBe(2)
  })

  it('reads the list from standard input (--from -) with --dir, --json, and the command\'s --mode and --priority for lines without them', async () => {
    const home = await freshDir()
    const state = join(home, 'state.db')
    const [a, b] = [await cidOf(1), await cidOf(2)]
    const text = `${a}\n{"target": "${b}", "output": "x/b.bin", "priority": 9}\n`
    const child = spawn(process.execPath, [CLI, 'add', '--from', '-', '--state', state, '--dir', join(home, 'out'), '--mode', 'path', '--priority', '4', '--json'],
      { env: { ...process.env, ...env(home) }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.stdin.end(text)
    const code = await new Promise<number | null>(resolve => child.on('close', resolve))
    expect(code, stderr).toBe(0)
    expect(stderr).toBe('')
    const printed = stdout.trim().split('\n').map(l => JSON.parse(l) as DownloadRecord)
    expect(printed.map(p => ({ output: p.output, mode: p.mode, priority: p.priority, status: p.status }))).toEqual([
      { output: join(home, 'out', a), mode: 'path', priority: 4, status: 'pending' },
      { output: join(home, 'out', 'x', 'b.bin'), mode: 'path', priority: 9, status: 'pending' }
    ])
    expect((await rowsOf(state)).map(r => r.id)).toEqual(printed.map(p => p.id))
  })

  it('queues one target with --state (same checks, one download)', async () => {
    const home = await freshDir()
    const state = join(home, 'state.db')
    const cid = await cidOf(7)
    const one = await runCli(['add', cid, '--state', state, '--dir', join(home, 'out'), '-o', 'one.bin', '--priority', '3', '--sha256', 'ab'.repeat(32)], { env: env(home) })
    expect(one.code, one.stderr).toBe(0)
    expect(one.stderr).toBe(`queued download 1: ${cid} → ${join(home, 'out', 'one.bin')} (${state})\n`)
    expect(await rowsOf(state)).toMatchObject([{ id: 1, output: join(home, 'out', 'one.bin'), priority: 3, expectedSha256: 'ab'.repeat(32), status: 'pending' }])
    // its errors carry no item number
    const outside = await runCli(['add', cid, '--state', state, '--dir', join(home, 'out'), '-o', '../one.bin'], { env: env(home) })
    expectUsageError(outside, 'CIDGET_ERR_OUTSIDE_DIR', /^cidget: Output "\.\.\/one\.bin" is outside the directory /)
    const badSha = await runCli(['add', cid, '--state', state, '--sha256', 'abc'], { env: env(home) })
    expectUsageError(badSha, 'CIDGET_ERR_BAD_OPTION', /^cidget: --sha256 must be 64 hex digits/)
    expect(await rowsOf(state)).toHaveLength(1)
  })

  it.each([
    ['a target that is not one', 'bafy-not-a-cid', 'CIDGET_ERR_BAD_TARGET', /Invalid target "bafy-not-a-cid"/],
    ['invalid JSON', '{"target": "bafy…",', 'CIDGET_ERR_BAD_OPTION', /not valid JSON/],
    ['a priority that is not an integer', '{"target": "@CID", "priority": 1.5}', 'CIDGET_ERR_BAD_OPTION', /priority must be an integer/],
    ['an unknown field', '{"target": "@CID", "colour": "red"}', 'CIDGET_ERR_BAD_OPTION', /unknown field "colour"/],
    ['a bad sha256', '{"target": "@CID", "sha256": "12"}', 'CIDGET_ERR_BAD_OPTION', /sha256 must be 64 hex digits/],
    ['a bad mode', '{"target": "@CID", "mode": "fast"}', 'CIDGET_ERR_BAD_OPTION', /mode must be verified, path or car/],
    ['a bad gateway', '{"target": "@CID", "gateways": ["ftp://x"]}', 'CIDGET_ERR_BAD_OPTION', /must be http or https/],
    ['an output with ..', '{"target": "@CID", "output": "a/../../escape.bin"}', 'CIDGET_ERR_OUTSIDE_DIR', /Output "a\/\.\.\/\.\.\/escape\.bin" is outside the directory .*: it leaves the directory/],
    ['an absolute output', '{"target": "@CID", "output": "/etc/passwd"}', 'CIDGET_ERR_OUTSIDE_DIR', /is outside the directory/],
    ['an output through a symlink that leaves --dir', '{"target": "@CID", "output": "link/x.bin"}', 'CIDGET_ERR_OUTSIDE_DIR', /Output "link\/x\.bin" is outside the directory .*symlink/]
  ])(`one bad line (line ${BAD_LINE}: %s) queues nothing and names the line`, async (_what, text, code, message) => {
    const home = await freshDir()
    const state = join(home, 'state.db')
    await mkdir(join(home, 'elsewhere'))
    await symlink(join(home, 'elsewhere'), join(home, 'out', 'link'))
    const { lines } = await queueFile()
    await writeFile(join(home, 'queue.txt'), withLine(lines, text.replace('@CID', await cidOf(-1))))
    const r = await runCli(['add', '--from', join(home, 'queue.txt'), '--state', state, '--dir', join(home, 'out')], { env: env(home) })
    expectUsageError(r, code, new RegExp(`^cidget: ${join(home, 'queue.txt').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} line ${BAD_LINE}\\b`))
    expect(r.stderr).toMatch(message)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(await rowsOf(state)).toEqual([])
  })

  it('refuses conflicting or missing options before reading anything (exit 2)', async () => {
    const home = await freshDir()
    const state = join(home, 'state.db')
    const cid = await cidOf(3)
    await writeFile(join(home, 'q.txt'), cid + '\n')
    const cases: Array<[string[], RegExp]> = [
      [['add', '--state', state], /Give a target, or --from FILE/],
      [['add', cid, '--from', join(home, 'q.txt'), '--state', state], /Give a target or --from FILE, not both/],
      [['add', '--from', join(home, 'q.txt'), '--state', state, '-o', 'x'], /with --from give "output"/],
      [['add', '--from', join(home, 'q.txt'), '--state', state, '--server', 'http://127.0.0.1:1'], /--state and --server exclude each other/],
      [['add', '--from', join(home, 'q.txt'), '--state', state, '--dir', join(home, 'missing')], /--dir .*missing is not an existing directory/],
      [['add', '--from', join(home, 'q.txt'), '--server', 'http://127.0.0.1:1', '--dir', home], /--dir is for queuing into a state/],
      [['add', '--from', join(home, 'nope.txt'), '--state', state], /Cannot read --from .*nope\.txt/]
    ]
    for (const [args, message] of cases) {
      const r = await runCli(args, { env: env(home) })
      expectUsageError(r, 'CIDGET_ERR_BAD_OPTION', message)
    }
    const empty = await runCli(['add', '--from', '-', '--state', state], { env: env(home) })
    expect(empty.code, empty.stderr).toBe(0)
    expect(empty.stderr).toBe('nothing to queue: standard input lists no targets\n')
    expect(await rowsOf(state)).toEqual([])
  })
})

const pgAvailable = await postgresAvailable()

describe.skipIf(!pgAvailable)('cidget add --from into a PostgreSQL state', () => {
  const databases = useTestDatabases()

  it(`queues ${COUNT} downloads with --state postgres://…, refuses a bad line and a .. output with nothing queued, and pages with list --after`, async () => {
    const db = await databases.create()
    const home = await freshDir()
    const out = join(home, 'out')
    const { lines, expected } = await queueFile()

    await writeFile(join(home, 'bad.txt'), withLine(lines, 'not-a-cid'))
    const bad = await runCli(['add', '--from', join(home, 'bad.txt'), '--state', db.url, '--dir', out], { env: env(home) })
    expectUsageError(bad, 'CIDGET_ERR_BAD_TARGET', new RegExp(`bad\\.txt line ${BAD_LINE}: Invalid target "not-a-cid"`))
    await writeFile(join(home, 'outside.txt'), withLine(lines, JSON.stringify({ target: await cidOf(-1), output: '../escape.bin' })))
    const outside = await runCli(['add', '--from', join(home, 'outside.txt'), '--state', db.url, '--dir', out], { env: env(home) })
    expectUsageError(outside, 'CIDGET_ERR_OUTSIDE_DIR', new RegExp(`outside\\.txt line ${BAD_LINE} \\(.*\\): Output "\\.\\./escape\\.bin" is outside`))
    expect(await rowsOf(db.url)).toEqual([])

    await writeFile(join(home, 'queue.txt'), lines.join('\n'))
    const r = await runCli(['add', '--from', join(home, 'queue.txt'), '--state', db.url, '--dir', out], { env: env(home) })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(new RegExp(`^queued ${COUNT} downloads \\(ids 1–${COUNT}\\) in postgres`))
    expectQueued(await rowsOf(db.url), expected, out)

    const byJson = await pageJson(db.url, home, 500)
    expect(byJson.pages).toBe(5)
    expect(byJson.ids).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1))
    const byHints = await pageByHints(db.url, home, 600)
    expect(byHints.pages).toBe(4)
    expect(byHints.ids).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1))
  })

  it('queues into a PostgreSQL CIDGET_STATE without --state when no service is named; a service named wins', async () => {
    const db = await databases.create()
    const home = await freshDir()
    const cid = await cidOf(11)
    const r = await runCli(['add', cid, '-o', 'pg.bin', '--json'], { env: env(home, { CIDGET_STATE: db.url }), cwd: join(home, 'out') })
    expect(r.code, r.stderr).toBe(0)
    const rec = JSON.parse(r.stdout) as DownloadRecord
    expect(rec).toMatchObject({ id: 1, status: 'pending', output: join(await realpath(join(home, 'out')), 'pg.bin') })
    expect((await rowsOf(db.url)).map(x => x.id)).toEqual([1])
    // CIDGET_SERVER set: the service is asked (here, nobody listens)
    const remote = await runCli(['add', cid, '-o', 'pg2.bin'], { env: env(home, { CIDGET_STATE: db.url, CIDGET_SERVER: 'http://127.0.0.1:1' }) })
    expect(remote.code).toBe(1)
    expect(remote.stderr).toMatch(/Cannot reach the cidget service at http:\/\/127\.0\.0\.1:1.*\[CIDGET_ERR_NETWORK\]/)
    expect(await rowsOf(db.url)).toHaveLength(1)
  })
})

describe('cidget add --from on a running service', () => {
  let w: World | undefined
  const children: ChildProcess[] = []
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await w?.close()
    w = undefined
  })

  it('posts the lines in order and stops at the first the service refuses, saying how many were queued; list --server pages with --after', async () => {
    w = await world({ size: 4 * KiB })
    const serveEnv = { ...process.env, HOME: w.dir, CIDGET_STATE: w.state, CIDGET_TOKEN: '', CIDGET_SERVER: '' }
    const downloads = join(w.dir, 'downloads')
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--dir', downloads, '-g', w.gateways[0]!.url], { env: serveEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    const url = await new Promise<string>((resolve, reject) => {
      let stderr = ''
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString()
        const m = /^cidget serving (http:\/\/127\.0\.0\.1:\d+)\//m.exec(stderr)
        if (m !== null) resolve(m[1]!)
      })
      child.on('exit', code => { reject(new Error(`serve exited (${String(code)}): ${stderr}`)) })
    })
    const cli = async (args: string[]): Promise<CliResult> => await runCli(args, { env: { HOME: w!.dir, CIDGET_STATE: w!.state, CIDGET_TOKEN: '', CIDGET_SERVER: '' } })

    // line 4 names a file that exists: only the service can tell
    await writeFile(join(downloads, 'exists.bin'), 'mine')
    await writeFile(join(w.dir, 'q.txt'), [
      '# three good lines, then one the service refuses',
      JSON.stringify({ target: w.cid, output: 'r/one.bin' }),
      JSON.stringify({ target: w.cid, output: 'r/two.bin', priority: 2 }),
      JSON.stringify({ target: w.cid, output: 'exists.bin' }),
      JSON.stringify({ target: w.cid, output: 'r/never.bin' })
    ].join('\n'))
    const partial = await cli(['add', '--from', join(w.dir, 'q.txt'), '--server', url, '--json'])
    expect(partial.code).toBe(2)
    expect(partial.stderr).toMatch(/q\.txt line 4 \(".*"\): .*already exists.*; 2 of 4 were queued before it \(ids 1–2\); the lines after it were not sent \[CIDGET_ERR_OUTPUT_EXISTS\]/)
    expect(partial.stdout.trim().split('\n').map(l => (JSON.parse(l) as DownloadRecord).output)).toEqual([join(downloads, 'r', 'one.bin'), join(downloads, 'r', 'two.bin')])

    // a bad line is found before anything is sent
    await writeFile(join(w.dir, 'bad.txt'), `${w.cid}\n{"target": "${w.cid}", "output": "../x"}\n`)
    const bad = await cli(['add', '--from', join(w.dir, 'bad.txt'), '--server', url])
    expectUsageError(bad, 'CIDGET_ERR_OUTSIDE_DIR', /bad\.txt line 2 \(".*"\): Output "\.\.\/x" is outside the service's --dir/)

    await writeFile(join(w.dir, 'good.txt'), ['three.bin', 'four.bin', 'five.bin'].map(o => JSON.stringify({ target: w!.cid, output: `r/${o}` })).join('\n'))
    const good = await cli(['add', '--from', join(w.dir, 'good.txt'), '--server', url])
    expect(good.code, good.stderr).toBe(0)
    expect(good.stderr).toBe(`queued 3 downloads (ids 3–5) on ${url}\n`)

    const all = await cli(['list', '--server', url, '--json'])
    expect(all.stdout.trim().split('\n').map(l => (JSON.parse(l) as DownloadRecord).id)).toEqual([1, 2, 3, 4, 5])
    const page = await cli(['list', '--server', url, '--after', '1', '--limit', '2'])
    expect(page.code, page.stderr).toBe(0)
    expect(page.stdout.split('\n').slice(1).map(l => /^(\d+)\s/.exec(l)?.[1]).filter(x => x !== undefined)).toEqual(['2', '3'])
    expect(page.stderr).toBe('… more: cidget list --after 3 --limit 2\n')
    const last = await cli(['list', '--server', url, '--after', '3', '--limit', '2', '--json'])
    expect(last.stdout.trim().split('\n').map(l => (JSON.parse(l) as DownloadRecord).id)).toEqual([4, 5])
    expect(last.stderr).toBe('')
  })
})
