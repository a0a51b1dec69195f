import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, chmodSync, constants as fsConstants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Database } from '../../src/store/driver.js'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { CidgetError, isCidgetError } from '../../src/core/errors.js'
import type { ErrorCode } from '../../src/core/errors.js'
import type { NewDownload } from '../../src/core/types.js'
import {
  LATEST_SCHEMA_VERSION, MIGRATIONS, SqliteStore, isOwnerDead, makeOwnerId, openStore, parseOwnerId
} from '../../src/store/index.js'
import type { Store } from '../../src/store/index.js'
import { storeContract } from './contract.js'
import { skipUnlessCi } from '../helpers.js'

const root = mkdtempSync(join(tmpdir(), 'cidget-store-'))
afterAll(() => {
  // Restore permissions a test may have removed, so the temp tree can be deleted.
  try {
    chmodSync(join(root, 'ro'), 0o755)
  } catch {
    // not created
  }
  rmSync(root, { recursive: true, force: true })
})

let counter = 0
function tempFile (): string {
  return join(root, `state-${process.pid}-${++counter}.db`)
}

const open: Store[] = []
afterEach(async () => {
  for (const s of open.splice(0)) await s.close()
})
function track<S extends Store> (s: S): S {
  open.push(s)
  return s
}

function download (over: Partial<NewDownload> = {}): NewDownload {
  return {
    cid: 'bafkqaaa',
    path: '',
    target: 'bafkqaaa',
    output: '/tmp/out.bin',
    mode: 'path',
    gateways: ['https://ipfs.io'],
    ...over
  }
}

/** Runs `fn` and returns the CidgetError it throws (failing the test otherwise). */
function thrown (fn: () => unknown): CidgetError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(CidgetError)
    return err as CidgetError
  }
  throw new Error('expected a CidgetError, nothing was thrown')
}

function expectStateError (fn: () => unknown, path: string, reason: RegExp): void {
  const err = thrown(fn)
  const code: ErrorCode = 'CIDGET_ERR_STATE'
  expect(err.code).toBe(code)
  expect(err.message).toContain(path)
  expect(err.message).toMatch(reason)
  expect(err.message).not.toContain('\n')
}

/** Whether this process writes through file permissions (root, with CAP_DAC_OVERRIDE): probed, not guessed from the uid. */
function permissionsIgnored (): boolean {
  const dir = mkdtempSync(join(root, 'probe-'))
  chmodSync(dir, 0o555)
  try {
    accessSync(dir, fsConstants.W_OK)
    return true
  } catch {
    return false
  } finally {
    chmodSync(dir, 0o755)
    rmSync(dir, { recursive: true })
  }
}
const PERMISSIONS_IGNORED = permissionsIgnored()
const PROJECT = fileURLToPath(new URL('../..', import.meta.url))

/**
 * The error `SqliteStore.open(file)` throws, in a process that file permissions apply to: this
 * one, or, where this one writes through them (root), a child without the capabilities that
 * override them (setpriv from util-linux drops them from its bounding set). The child is root
 * still, so it reads the project wherever it is, but it meets the modes of the files it owns.
 */
function openRefusal (file: string): { code: unknown, message: string } {
  if (!PERMISSIONS_IGNORED) {
    const err = thrown(() => SqliteStore.open(file))
    return { code: err.code, message: err.message }
  }
  const script = `import(process.argv[1]).then(({ SqliteStore }) => {
    try { SqliteStore.open(process.argv[2]).close(); console.log(JSON.stringify({ code: null, message: 'opened' })) }
    catch (err) { console.log(JSON.stringify({ code: err.code ?? null, message: String(err.message) })) }
  })`
  const child = spawnSync('setpriv', ['--bounding-set=-dac_override,-dac_read_search', '--', process.execPath, '--import', 'tsx', '-e', script,
    pathToFileURL(join(PROJECT, 'src/store/sqlite.ts')).href, file], { cwd: PROJECT, encoding: 'utf8', timeout: 30_000 })
  if (child.error !== undefined || child.status !== 0) {
    throw new Error(`the unprivileged child failed: ${child.error?.message ?? `exit ${String(child.status)}`} ${child.stderr ?? ''}`)
  }
  return JSON.parse(child.stdout) as { code: unknown, message: string }
}

/** Why the read-only cases cannot run here, or undefined when they can. */
function readOnlyProblem (): string | undefined {
  if (!PERMISSIONS_IGNORED) return undefined
  const r = spawnSync('setpriv', ['--bounding-set=-dac_override,-dac_read_search', '--', 'true'], { encoding: 'utf8' })
  if (r.error !== undefined) return `this process ignores file permissions (root) and setpriv is not available (${r.error.message})`
  if (r.status !== 0) return `this process ignores file permissions (root) and setpriv cannot drop the capabilities: ${r.stderr.trim()}`
  return undefined
}

function expectOpenRefused (file: string, reason: RegExp): void {
  const err = openRefusal(file)
  expect(err.code).toBe('CIDGET_ERR_STATE')
  expect(err.message).toContain(file)
  expect(err.message).toMatch(reason)
  expect(err.message).not.toContain('\n')
}

storeContract('SqliteStore (temp file)', async ({ isOwnerDead }) => SqliteStore.open(tempFile(), { isOwnerDead }))
storeContract('SqliteStore (:memory:)', async ({ isOwnerDead }) => SqliteStore.open(':memory:', { isOwnerDead }))

describe('SqliteStore on a file', () => {
  it('uses WAL, synchronous NORMAL, foreign keys, the busy timeout and SQLite\'s own page cache (2,000 KiB, not better-sqlite3\'s 16,000)', () => {
    const file = tempFile()
    const store = track(SqliteStore.open(file, { busyTimeoutMs: 1234 }))
    expect(store.location).toBe(file)
    expect(store.settings()).toEqual({ journalMode: 'wal', synchronous: 'NORMAL', foreignKeys: true, busyTimeoutMs: 1234, pageCacheKiB: 2000 })
    expect(track(SqliteStore.open(tempFile())).settings().busyTimeoutMs).toBe(5000)
    // WAL is recorded in the file itself: a fresh connection sees it.
    const db = new Database(file)
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    } finally {
      db.close()
    }
  })

  it('resolves a relative path to an absolute location', () => {
    const absolute = tempFile()
    const store = track(SqliteStore.open(relative(process.cwd(), absolute)))
    expect(store.location).toBe(absolute)
  })

  it('records every migration once, and reopening is idempotent', async () => {
    const file = tempFile()
    const first = SqliteStore.open(file, { now: () => 42 })
    const { id } = await first.createDownload(download(), 1)
    await first.close()
    const second = track(SqliteStore.open(file, { now: () => 43 }))
    expect((await second.getDownload(id))?.cid).toBe('bafkqaaa')

    const db = new Database(file, { readonly: true })
    try {
      const rows = db.prepare('SELECT version, name, "appliedAt" FROM schema_migrations ORDER BY version').all()
      expect(rows).toEqual(MIGRATIONS.map(m => ({ version: m.version, name: m.name, appliedAt: 42 })))
      const indexes = db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ipfs_downloads'")
        .all().map(r => (r as { name: string }).name)
      expect(indexes).toEqual(expect.arrayContaining([
        'idx_ipfs_downloads_status', 'idx_ipfs_downloads_cid_path_output', 'idx_ipfs_downloads_output',
        'idx_ipfs_downloads_queue', 'idx_ipfs_downloads_claim', 'idx_ipfs_downloads_lease_owner'
      ]))
    } finally {
      db.close()
    }
  })

  it('migrates a database left at an older version', async () => {
    const file = tempFile()
    // Build a version-1 database by hand, as an older cidget would have left it.
    const db = new Database(file)
    db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "appliedAt" BIGINT NOT NULL)')
    db.exec(MIGRATIONS[0]!.sql)
    db.prepare('INSERT INTO schema_migrations VALUES (1, ?, 1)').run(MIGRATIONS[0]!.name)
    db.close()

    const store = track(SqliteStore.open(file, { now: () => 7 }))
    await store.createDownload(download())
    const check = new Database(file, { readonly: true })
    try {
      expect(check.prepare('SELECT version, "appliedAt" FROM schema_migrations ORDER BY version').all())
        .toEqual([{ version: 1, appliedAt: 1 }, ...MIGRATIONS.slice(1).map(m => ({ version: m.version, appliedAt: 7 }))])
    } finally {
      check.close()
    }
  })

  it('migration versions run 1, 2, … without gaps', () => {
    expect(MIGRATIONS.map(m => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1))
    expect(LATEST_SCHEMA_VERSION).toBe(MIGRATIONS.length)
  })

  it('refuses a database whose schema is newer than the code', async () => {
    const file = tempFile()
    await SqliteStore.open(file).close()
    const db = new Database(file)
    db.prepare('INSERT INTO schema_migrations VALUES (?, ?, 0)').run(LATEST_SCHEMA_VERSION + 1, 'from the future')
    db.close()
    expectStateError(() => SqliteStore.open(file), file, new RegExp(`schema version ${LATEST_SCHEMA_VERSION + 1} is newer`))
  })

  it('refuses a missing directory', () => {
    const file = join(root, 'does-not-exist', 'state.db')
    expectStateError(() => SqliteStore.open(file), file, /directory .*does-not-exist does not exist/)
  })

  it('refuses a file that is not a SQLite database', () => {
    const file = join(root, 'not-a-db.txt')
    writeFileSync(file, 'this is plain text, not a SQLite database, and it is long enough to have a header\n'.repeat(20))
    expectStateError(() => SqliteStore.open(file), file, /not a SQLite database/)
  })

  it('refuses a SQLite database that another program owns, and leaves it unchanged', () => {
    const file = tempFile()
    const db = new Database(file)
    db.exec('CREATE TABLE contacts (name TEXT)')
    db.close()
    expectStateError(() => SqliteStore.open(file), file, /SQLite database of another program \(tables: contacts\)/)
    const check = new Database(file, { readonly: true })
    try {
      expect(check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all()).toEqual(['contacts'])
    } finally {
      check.close()
    }
  })

  it('refuses a path whose parent is a regular file (fails even for root)', () => {
    const parent = join(root, 'a-file')
    writeFileSync(parent, 'x')
    expectStateError(() => SqliteStore.open(join(parent, 'state.db')), join(parent, 'state.db'), /is not a directory/)
    expectStateError(() => SqliteStore.open(join(parent, 'sub', 'state.db')), join(parent, 'sub', 'state.db'),
      /not a directory/)
  })

  it('refuses a directory as the database file', () => {
    expectStateError(() => SqliteStore.open(root), root, /not a regular file/)
  })

  // Root writes through permissions: as root, these run in a child without that privilege.
  it('refuses a read-only directory', (ctx) => {
    const problem = readOnlyProblem()
    if (problem !== undefined) {
      skipUnlessCi(ctx, problem)
      return
    }
    const dir = join(root, 'ro')
    mkdirSync(dir)
    chmodSync(dir, 0o555)
    const file = join(dir, 'state.db')
    expectOpenRefused(file, /directory .* is not writable/)
  })

  it('refuses a read-only database file', async (ctx) => {
    const problem = readOnlyProblem()
    if (problem !== undefined) {
      skipUnlessCi(ctx, problem)
      return
    }
    const file = tempFile()
    await SqliteStore.open(file).close()
    chmodSync(file, 0o444)
    expectOpenRefused(file, /not readable and writable/)
  })

  it('two stores on one file: only one holds a lease at a time', async () => {
    const file = tempFile()
    const a = track(SqliteStore.open(file))
    const b = track(SqliteStore.open(file))
    const { id } = await a.createDownload(download(), 1)
    const ownerA = makeOwnerId()
    const ownerB = makeOwnerId()
    const now = Date.now()
    const results = await Promise.all([a.claimLease(id, ownerA, 30_000, now), b.claimLease(id, ownerB, 30_000, now)])
    expect(results).toEqual([true, false])
    expect((await b.getDownload(id))?.leaseOwner).toBe(ownerA)
    // Our own process is alive, so ownerA is not taken over before expiry…
    expect(await b.claimLease(id, ownerB, 30_000, now + 1)).toBe(false)
    // …but is after.
    expect(await b.claimLease(id, ownerB, 30_000, now + 30_001)).toBe(true)
    expect(await a.renewLease(id, ownerA, 30_000, now + 30_002)).toBe(false)
  })

  it('processes that open one new file at the same moment all succeed', async () => {
    // each child waits for a common start time, then opens (and so creates, switches to WAL and migrates) the file
    const store = new URL('../../dist/store/sqlite.js', import.meta.url).href
    const script = `const { SqliteStore } = await import(${JSON.stringify(store)})
      const startAt = Number(process.argv[2]); while (Date.now() < startAt) {}
      try { SqliteStore.open(process.argv[1]).close(); console.log('ok') } catch (err) { console.log(err.message) }`
    const outcomes: string[] = []
    for (let round = 0; round < 12; round++) {
      const file = tempFile()
      const startAt = Date.now() + 300
      outcomes.push(...await Promise.all(Array.from({ length: 3 }, async () => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script, file, String(startAt)], { stdio: ['ignore', 'pipe', 'inherit'] })
        let out = ''
        child.stdout.on('data', (d: Buffer) => { out += d.toString() })
        await once(child, 'close')
        return out.trim()
      })))
    }
    expect(outcomes.filter(o => o !== 'ok')).toEqual([])
    expect(outcomes).toHaveLength(36)
  })

  it('a write lock held by another connection makes a claim wait for the busy timeout', async () => {
    const file = tempFile()
    const store = track(SqliteStore.open(file, { busyTimeoutMs: 50 }))
    const { id } = await store.createDownload(download(), 1)
    const other = new Database(file)
    try {
      other.exec('BEGIN IMMEDIATE')
      // The lock outlives the busy timeout: the claim waits that long, then fails cleanly.
      const started = Date.now()
      const err = await store.claimLease(id, 'h:1:t', 1000, 5).then(() => undefined, (e: unknown) => e)
      const waited = Date.now() - started
      expect(isCidgetError(err, 'CIDGET_ERR_STATE')).toBe(true)
      expect((err as Error).message).toMatch(/claimLease failed: database is locked/)
      expect(waited).toBeGreaterThanOrEqual(40)
      expect(waited).toBeLessThan(2000)
      other.exec('ROLLBACK')
      expect(await store.claimLease(id, 'h:1:t', 1000, 5)).toBe(true)
    } finally {
      other.close()
    }
  })

  it('close is idempotent and later calls fail with CIDGET_ERR_STATE', async () => {
    const store = SqliteStore.open(tempFile())
    await store.close()
    await store.close()
    const err = await store.getDownload(1).then(() => undefined, (e: unknown) => e)
    expect(isCidgetError(err, 'CIDGET_ERR_STATE')).toBe(true)
  })

  it('refuses updateDownload fields that are not patchable', async () => {
    const store = track(SqliteStore.open(':memory:'))
    const { id } = await store.createDownload(download(), 1)
    // @ts-expect-error leaseOwner is changed through the lease calls only
    const err = await store.updateDownload(id, { leaseOwner: 'x' }).then(() => undefined, (e: unknown) => e)
    expect(isCidgetError(err, 'CIDGET_ERR_BAD_OPTION')).toBe(true)
    expect((await store.getDownload(id))?.leaseOwner).toBeNull()
  })

  it('a corrupt gateways column is reported, not returned', async () => {
    const file = tempFile()
    const store = track(SqliteStore.open(file))
    const { id } = await store.createDownload(download(), 1)
    const db = new Database(file)
    db.prepare('UPDATE ipfs_downloads SET gateways = ? WHERE id = ?').run('not json', id)
    db.close()
    const err = await store.getDownload(id).then(() => undefined, (e: unknown) => e)
    expect(isCidgetError(err, 'CIDGET_ERR_STATE')).toBe(true)
    expect((err as Error).message).toContain(`Download ${id}`)
  })
})

describe('openStore', () => {
  it('opens a SQLite file', async () => {
    const file = tempFile()
    const store = track(await openStore(file))
    expect(store).toBeInstanceOf(SqliteStore)
    expect(store.location).toBe(file)
  })

  it('opens PostgreSQL for postgres:// and postgresql:// URLs (here a port nobody listens on)', async () => {
    for (const scheme of ['postgres', 'postgresql', 'POSTGRES']) {
      const err = await openStore(`${scheme}://u:secret@127.0.0.1:1/db`, { connectTimeoutMs: 2000 })
        .then(() => undefined, (e: unknown) => e)
      expect(isCidgetError(err, 'CIDGET_ERR_STATE_UNAVAILABLE'), String(err)).toBe(true)
      expect((err as CidgetError).retryable).toBe(true)
      expect((err as Error).message).toContain('@127.0.0.1:1/db')
      expect((err as Error).message).not.toContain('secret')
    }
  })
})

describe('lease owners', () => {
  it('makeOwnerId is host:pid:token and unique', () => {
    const a = makeOwnerId()
    const b = makeOwnerId()
    expect(a).not.toBe(b)
    expect(parseOwnerId(a)).toEqual({ host: hostname(), pid: process.pid, token: expect.stringMatching(/^[0-9a-f]+$/) })
  })

  it('parses from the right, and refuses malformed ids', () => {
    expect(parseOwnerId('fe80::1:123:abc')).toEqual({ host: 'fe80::1', pid: 123, token: 'abc' })
    for (const bad of ['', 'host', 'host:1', ':1:t', 'host:x:t', 'host:-1:t', 'host:0:t', 'host:1.5:t', 'host::t',
      'host:99999999999:t']) {
      expect(parseOwnerId(bad), bad).toBeUndefined()
    }
  })

  it('this process is alive', () => {
    expect(isOwnerDead(makeOwnerId())).toBe(false)
  })

  it('a child process that has exited is dead', async () => {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
    const pid = child.pid
    expect(pid).toBeTypeOf('number')
    await once(child, 'exit')
    expect(isOwnerDead(`${hostname()}:${pid}:feed`)).toBe(true)
    // The same pid on another host is not ours to judge.
    expect(isOwnerDead(`another-${hostname()}:${pid}:feed`)).toBe(false)
  })

  it('malformed owners and pid 0 are never dead', () => {
    expect(isOwnerDead('garbage')).toBe(false)
    expect(isOwnerDead(`${hostname()}:0:t`)).toBe(false)
  })

  it('an existing process of another user is alive (EPERM when not root)', () => {
    // pid 1 exists on every Unix; as non-root, kill(1, 0) fails with EPERM, which means alive.
    expect(isOwnerDead(`${hostname()}:1:t`)).toBe(false)
  })
})
