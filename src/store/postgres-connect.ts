import type { Pool, PoolClient } from 'pg'
import { CidgetError, isNetworkCode, systemCode } from '../core/errors.js'
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SCHEMA_MIGRATIONS_SQL } from './migrations.js'

/**
 * The PostgreSQL connection around the store's statements: migrations (the
 * SQLite text translated), connections taken from the pool and dropped when
 * they broke, transactions, and which failures mean a lost connection.
 */

/** The session advisory lock that serializes migrations: "cidget" in ASCII. */
const MIGRATION_LOCK = '109270236373364'

const DIALECT_LINE = /^(\s*)-- dialect: SQLite\. PostgreSQL: (.+?)\s*$/

/**
 * The PostgreSQL text of a migration written for SQLite: a line
 * `-- dialect: SQLite. PostgreSQL: <line>` replaces the line after it by `<line>`
 * (keeping that line's trailing `,` or `;`), and BLOB becomes BYTEA.
 */
export function postgresDialect (sql: string): string {
  const lines = sql.split('\n')
  const out: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? ''
    const marker = DIALECT_LINE.exec(line)
    if (marker === null) {
      out.push(line)
      continue
    }
    const next = lines[i + 1]
    if (next === undefined || next.trim() === '') throw new Error(`"${line.trim()}" has no line after it to replace`)
    const separator = /[,;]\s*$/.exec(next)?.[0].trim() ?? ''
    out.push(`${marker[1] ?? ''}${marker[2] ?? ''}${separator}`)
    i++
  }
  return out.join('\n').replace(/\bBLOB\b/g, 'BYTEA')
}

/** The URL without its password (in the authority or as a `password` parameter). */
export function redactUrl (url: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new CidgetError('CIDGET_ERR_STATE', 'The state location is not a valid postgres:// URL')
  }
  parsed.password = ''
  for (const key of ['password', 'sslpassword']) {
    if (parsed.searchParams.has(key)) parsed.searchParams.delete(key)
  }
  return parsed.toString()
}

/** SQLSTATEs of a connection that is gone or refused: the server shut it down, restarts, or is full. */
const CONNECTION_SQLSTATES = new Set(['57P01', '57P02', '57P03', '57P05', '53300'])
const CONNECTION_MESSAGES = /Connection terminated|not queryable|timeout exceeded when trying to connect|connection timeout|Query read timeout/i

/** True when the failure is a lost, refused or timed-out connection rather than a refused statement. */
export function isConnectionError (err: unknown): boolean {
  const errors = err instanceof AggregateError ? [err, ...(err.errors as unknown[])] : [err]
  return errors.some(e => {
    const code = systemCode(e)
    if (code !== undefined && (code.startsWith('08') || CONNECTION_SQLSTATES.has(code) || isNetworkCode(code))) return true
    return e instanceof Error && CONNECTION_MESSAGES.test(e.message)
  })
}

export function detailOf (err: unknown): string {
  if (err instanceof Error) return err.message !== '' ? err.message : systemCode(err) ?? err.name
  return String(err)
}

/** What opening threw, as one coded line naming the location. */
export function openError (location: string, err: unknown): CidgetError {
  if (err instanceof CidgetError) return err
  if (isConnectionError(err)) {
    return new CidgetError('CIDGET_ERR_STATE_UNAVAILABLE', `Cannot reach the state database ${location}: ${detailOf(err)}`, { cause: err })
  }
  return new CidgetError('CIDGET_ERR_STATE', `Cannot open the state database ${location}: ${detailOf(err)}`, { cause: err })
}

/** Runs `fn` on one connection of the pool, dropping the connection if it broke meanwhile. */
export async function withClient<T> (pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  let broken: Error | undefined
  // While checked out, a client's 'error' (its backend killed, the socket reset) is ours to take:
  // unhandled, it would end the process. The failing query rejects as well.
  const onError = (err: Error): void => { broken ??= err }
  client.on('error', onError)
  try {
    return await fn(client)
  } catch (err) {
    if (isConnectionError(err)) broken ??= err instanceof Error ? err : new Error(String(err))
    throw err
  } finally {
    client.off('error', onError)
    client.release(broken)
  }
}

/** Runs `fn` in a transaction on one connection: COMMIT when it returns, ROLLBACK when it throws. */
export async function inTransaction<T> (pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async client => {
    await client.query('BEGIN')
    let result: T
    try {
      result = await fn(client)
    } catch (err) {
      try {
        await client.query('ROLLBACK')
      } catch {
        // The connection is gone (and is dropped): the server rolls back on its own.
      }
      throw err
    }
    await client.query('COMMIT')
    return result
  })
}

/**
 * Applies every migration the database lacks. A session advisory lock makes
 * workers that start at once take turns: the first migrates, the others find
 * the versions recorded. Each migration runs in its own transaction together
 * with its `schema_migrations` row.
 */
export async function migrate (pool: Pool, location: string, now: () => number): Promise<void> {
  await withClient(pool, async client => {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK])
    try {
      // A schema with tables but no schema_migrations belongs to another program: leave it alone.
      const tables = (await client.query<{ name: string }>(
        `SELECT table_name AS name FROM information_schema.tables
        WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`)).rows.map(r => r.name)
      if (tables.length > 0 && !tables.includes('schema_migrations')) {
        throw new CidgetError('CIDGET_ERR_STATE', `Cannot open the state database ${location}: ` +
          `it holds the tables of another program (${tables.slice(0, 5).join(', ')})`)
      }
      await client.query(SCHEMA_MIGRATIONS_SQL)
      const applied = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows
        .map(r => r.version))
      const newest = Math.max(0, ...applied)
      if (newest > LATEST_SCHEMA_VERSION) {
        throw new CidgetError('CIDGET_ERR_STATE', `Cannot open the state database ${location}: its schema version ` +
          `${newest} is newer than this cidget understands (${LATEST_SCHEMA_VERSION}); upgrade cidget or use another database`)
      }
      for (const migration of [...MIGRATIONS].sort((a, b) => a.version - b.version)) {
        if (applied.has(migration.version)) continue
        await client.query('BEGIN')
        try {
          await client.query(postgresDialect(migration.sql))
          await client.query('INSERT INTO schema_migrations (version, name, "appliedAt") VALUES ($1, $2, $3)',
            [migration.version, migration.name, now()])
          await client.query('COMMIT')
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined)
          throw err
        }
      }
    } finally {
      // Also released by the server when the session ends, should this fail.
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined)
    }
  })
}
