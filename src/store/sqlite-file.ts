import { accessSync, closeSync, constants as fsConstants, openSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Database } from './driver.js'
import { CidgetError } from '../core/errors.js'
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SCHEMA_MIGRATIONS_SQL } from './migrations.js'

/**
 * The SQLite state file before the store uses it: its location checked, created
 * private, switched to WAL, and migrated; what fails is said as one
 * CIDGET_ERR_STATE line naming the file.
 */

function stateError (location: string, reason: string, cause?: unknown): CidgetError {
  return new CidgetError('CIDGET_ERR_STATE', `Cannot open the state database ${location}: ${reason}`,
    cause === undefined ? {} : { cause })
}

function errnoOf (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

/**
 * Checks the file's location with the file system first: SQLite's own errors for a
 * missing or read-only directory ("unable to open database file") do not say which.
 */
export function checkLocation (file: string): void {
  const dir = dirname(file)
  try {
    if (!statSync(dir).isDirectory()) throw stateError(file, `${dir} is not a directory`)
  } catch (err) {
    if (err instanceof CidgetError) throw err
    const code = errnoOf(err)
    if (code === 'ENOENT') throw stateError(file, `the directory ${dir} does not exist`, err)
    if (code === 'ENOTDIR') throw stateError(file, `a parent of ${dir} is a file, not a directory`, err)
    throw stateError(file, `cannot access the directory ${dir} (${code ?? String(err)})`, err)
  }
  // WAL writes `-wal` and `-shm` files beside the database, so the directory must be writable too.
  try {
    accessSync(dir, fsConstants.W_OK)
  } catch (err) {
    throw stateError(file, `the directory ${dir} is not writable`, err)
  }
  let isFile: boolean
  try {
    isFile = statSync(file).isFile()
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return // created on open
    throw stateError(file, `cannot access it (${errnoOf(err) ?? String(err)})`, err)
  }
  if (!isFile) throw stateError(file, 'it is not a regular file')
  try {
    accessSync(file, fsConstants.R_OK | fsConstants.W_OK)
  } catch (err) {
    throw stateError(file, 'it is not readable and writable', err)
  }
}

/**
 * A new state file is created empty with mode 0600 before SQLite opens it
 * (SQLite would make it 0644): the `-wal` and `-shm` files SQLite adds take
 * the database file's mode, so they are private too. An existing file is left
 * as it is.
 */
export function createPrivate (file: string): void {
  try {
    closeSync(openSync(file, 'wx', 0o600))
  } catch (err) {
    if (errnoOf(err) !== 'EEXIST') throw stateError(file, `cannot create it (${errnoOf(err) ?? String(err)})`, err)
  }
}

/**
 * `PRAGMA journal_mode = WAL`, retried for up to the busy timeout: while
 * another connection switches the same new database to WAL, SQLite answers
 * SQLITE_BUSY at once instead of waiting through its busy handler (two
 * `cidget get` started together on a new state file failed so, one time in
 * ten). The open is synchronous, so the waits between tries block too.
 */
export function enableWal (db: Database.Database, busyTimeoutMs: number): void {
  const deadline = Date.now() + busyTimeoutMs
  for (let waitMs = 1; ; waitMs = Math.min(waitMs * 2, 50)) {
    try {
      db.pragma('journal_mode = WAL')
      return
    } catch (err) {
      if (errnoOf(err)?.startsWith('SQLITE_BUSY') !== true || Date.now() >= deadline) throw err
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, waitMs)
    }
  }
}

/** Turns whatever opening or migrating threw into one CIDGET_ERR_STATE line. */
export function openError (file: string, err: unknown, busyTimeoutMs: number): CidgetError {
  if (err instanceof CidgetError) return err
  const code = errnoOf(err) ?? ''
  const detail = err instanceof Error ? err.message : String(err)
  if (code === 'SQLITE_NOTADB') return stateError(file, 'it is not a SQLite database', err)
  if (code.startsWith('SQLITE_CORRUPT')) return stateError(file, 'the database is corrupt', err)
  if (code.startsWith('SQLITE_READONLY')) return stateError(file, 'it is read-only', err)
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return stateError(file, `it stayed locked by another process for ${busyTimeoutMs} ms`, err)
  }
  if (code.startsWith('SQLITE_CANTOPEN')) return stateError(file, `SQLite cannot open it (${detail})`, err)
  return stateError(file, detail, err)
}

/** Applies every migration the database lacks, each in its own IMMEDIATE transaction. */
export function migrate (db: Database.Database, file: string, now: () => number): void {
  // A database with tables but no schema_migrations belongs to another program: leave it alone.
  const tables = db.prepare<[], string>(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all()
  if (tables.length > 0 && !tables.includes('schema_migrations')) {
    throw stateError(file, `it is a SQLite database of another program (tables: ${tables.slice(0, 5).join(', ')})`)
  }
  db.exec(SCHEMA_MIGRATIONS_SQL)
  const currentVersion = db.prepare<[], { v: number | null }>('SELECT MAX(version) AS v FROM schema_migrations')
  const hasVersion = db.prepare<[number], { version: number }>('SELECT version FROM schema_migrations WHERE version = ?')
  const record = db.prepare<[number, string, number]>(
    'INSERT INTO schema_migrations (version, name, "appliedAt") VALUES (?, ?, ?)')
  const refuseNewer = (): void => {
    const version = currentVersion.get()?.v ?? 0
    if (version > LATEST_SCHEMA_VERSION) {
      throw stateError(file, `its schema version ${version} is newer than this cidget understands ` +
        `(${LATEST_SCHEMA_VERSION}); upgrade cidget or use another state file`)
    }
  }
  refuseNewer()
  const ordered = [...MIGRATIONS].sort((a, b) => a.version - b.version)
  for (const migration of ordered) {
    // Checked again inside the transaction: another process may have migrated meanwhile.
    db.transaction(() => {
      refuseNewer()
      if (hasVersion.get(migration.version) !== undefined) return
      db.exec(migration.sql)
      record.run(migration.version, migration.name, now())
    }).immediate()
  }
}
