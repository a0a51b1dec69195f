/**
 * PostgreSQL for tests: the server named by CIDGET_TEST_PG (default
 * postgres://postgres@127.0.0.1:5432/postgres), and fresh databases on it that
 * are dropped after the test file.
 *
 *   const available = await postgresAvailable()   // top level of the test file
 *   describe.skipIf(!available)('…', () => {
 *     const databases = useTestDatabases()
 *     it('…', async () => { const db = await databases.create(); … PostgresStore.open(db.url) … })
 *   })
 *
 * When the server does not answer, `postgresAvailable` throws if CI=true (the
 * tests are required there) and otherwise returns false after one console.warn.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll } from 'vitest'

export const PG_SERVER_URL = process.env.CIDGET_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres'

function redacted (url: string): string {
  try {
    const u = new URL(url)
    u.password = ''
    return u.toString()
  } catch {
    return '(an invalid URL)'
  }
}

let answer: Promise<string | undefined> | undefined
let warned = false

/** Why the server does not answer, or undefined when it does. */
async function probe (): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: PG_SERVER_URL, connectionTimeoutMillis: 3_000 })
  client.on('error', () => undefined)
  try {
    await client.connect()
    await client.query('SELECT 1')
    return undefined
  } catch (err) {
    const e = err as Error & { code?: string }
    return e.message !== '' ? e.message : e.code ?? String(err)
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** Whether PostgreSQL tests can run; see the file's comment for what happens when they cannot. */
export async function postgresAvailable (): Promise<boolean> {
  answer ??= probe()
  const reason = await answer
  if (reason === undefined) return true
  const where = redacted(PG_SERVER_URL)
  if (process.env.CI === 'true') {
    throw new Error(`PostgreSQL tests are required in CI, but ${where} does not answer: ${reason}`)
  }
  if (!warned) {
    warned = true
    console.warn(`Skipping the PostgreSQL tests: ${where} does not answer (${reason}). ` +
      'Set CIDGET_TEST_PG to the URL of a server where the user may create databases.')
  }
  return false
}

/** Runs `fn` with a short-lived connection to `url`. */
export async function withConnection<T> (url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  client.on('error', () => undefined)
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** A database of its own on the test server. */
export interface TestDatabase {
  name: string
  /** Its URL, with the server URL's user and password. */
  url: string
  /** Runs one statement in it (on a connection kept for the test file). */
  query: <R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]) => Promise<pg.QueryResult<R>>
  /**
   * Ends the connections to it whose application_name is `application` (a
   * PostgresStore's are 'cidget') with `pg_terminate_backend`, and waits until
   * those backends have exited (so each client has been sent its error and
   * the end of its connection); returns how many.
   */
  terminateBackends: (application?: string) => Promise<number>
  /** Drops it, ending the connections still open. */
  drop: () => Promise<void>
}

/** Creates a fresh, empty database `cidget_test_<pid>_<random>`. */
export async function createTestDatabase (): Promise<TestDatabase> {
  const name = `cidget_test_${process.pid}_${randomBytes(4).toString('hex')}`
  await withConnection(PG_SERVER_URL, async c => await c.query(`CREATE DATABASE ${name}`))
  const u = new URL(PG_SERVER_URL)
  u.pathname = `/${name}`
  const url = u.toString()
  let pool: pg.Pool | undefined
  const getPool = (): pg.Pool => {
    if (pool === undefined) {
      pool = new pg.Pool({ connectionString: url, max: 2 })
      pool.on('error', () => undefined)
    }
    return pool
  }
  return {
    name,
    url,
    query: async (text, values) => await getPool().query(text, values),
    terminateBackends: async (application = 'cidget') => await withConnection(PG_SERVER_URL, async c => {
      // the victims are chosen first: in one WHERE clause the planner may call pg_terminate_backend on any row
      const res = await c.query<{ pid: number }>(`WITH victims AS MATERIALIZED (SELECT pid FROM pg_stat_activity
        WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()) SELECT pid FROM victims WHERE pg_terminate_backend(pid)`, [name, application])
      const pids = res.rows.map(r => r.pid)
      // pg_terminate_backend only signals; the server has no event for the exit, so it is polled (PostgreSQL < 14 has no wait)
      for (const deadline = Date.now() + 10_000; ;) {
        const left = (await c.query('SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1)', [pids])).rowCount ?? 0
        if (left === 0) break
        if (Date.now() > deadline) throw new Error(`${left} terminated backends of ${name} still run after 10 s`)
        await new Promise(resolve => setTimeout(resolve, 5))
      }
      return pids.length
    }),
    drop: async () => {
      await pool?.end().catch(() => undefined)
      pool = undefined
      await withConnection(PG_SERVER_URL, async c => await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
    }
  }
}

/**
 * Registers an afterAll hook (call it where hooks may be registered: the top
 * level of a file or a describe) that drops every database `create` made.
 */
export function useTestDatabases (): { create: () => Promise<TestDatabase> } {
  const made: TestDatabase[] = []
  afterAll(async () => {
    for (const db of made.splice(0)) await db.drop()
  })
  return {
    create: async () => {
      const db = await createTestDatabase()
      made.push(db)
      return db
    }
  }
}
