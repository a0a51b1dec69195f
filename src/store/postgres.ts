import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg'
import { CidgetError } from '../core/errors.js'
import { STATUSES } from '../core/types.js'
import type { DownloadRecord, DownloadStatus, NewDownload } from '../core/types.js'
import { CLAIMABLE_SQL } from './migrations.js'
import { detailOf, inTransaction, isConnectionError, migrate, openError, redactUrl } from './postgres-connect.js'
import { isOwnerDead as defaultIsOwnerDead } from './owner.js'
import {
  badOption, checkList, outputInUse, checkStatus, checkTtl, checkUnder, isStatus, listParams, newDownloadParams, patchParams,
  leaseLost, rowToRecord, unknownDownload
} from './rows.js'
import type { BindValue, DownloadRow, NewDownloadParams } from './rows.js'
import { CLEAR_PROGRESS, FENCE, INSERT_MANY, INSERT_ONE, OWNED, insertValues, SELECT_DOWNLOADS, SQL, UNFINISHED_SQL, bind, patchAssignments, positional } from './sql.js'
import type { Positional, StatementName } from './sql.js'
import type { ClaimOptions, DownloadPatch, KeptBlock, ListOptions, OwnerLiveness, Store, StoreOptions } from './store.js'

export { isConnectionError, postgresDialect, redactUrl } from './postgres-connect.js'

/** Connections the store keeps open at most. */
export const DEFAULT_POOL_SIZE = 10
/** How long opening a connection may take before the call fails with CIDGET_ERR_STATE_UNAVAILABLE. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000

export interface PostgresStoreOptions extends StoreOptions {
  /** Connections kept open at most; @default 10 */
  poolSize?: number
  /** Time allowed to open a connection; @default 10000 */
  connectTimeoutMs?: number
}

/**
 * First key of the transaction advisory locks that make "no unfinished
 * download writes there" and the insert one step ("cidg"); the second key is
 * one of OUTPUT_LOCK_BUCKETS buckets of the output's hash, so that a list of
 * thousands takes at most that many locks (PostgreSQL's lock table is shared
 * and small), and a single insert one of them.
 */
const OUTPUT_LOCK_CLASS = 1667851367
const OUTPUT_LOCK_BUCKETS = 256
/** A call without an answer for this long fails (CIDGET_ERR_STATE_UNAVAILABLE) instead of waiting. */
const QUERY_TIMEOUT_MS = 30_000
/** `createDownloads` of at least this many rows refreshes the table's statistics. */
const ANALYZE_AFTER_ROWS = 1000
/** Rows per INSERT statement in `createDownloads` (each column travels as one array parameter). */
export const INSERT_BATCH = 1000

/** The shared statements, numbered. */
const STATEMENTS = Object.fromEntries(Object.entries(SQL).map(([name, sql]) => [name, positional(sql)])) as Record<StatementName, Positional>

/**
 * Within the transaction of `client`: takes the output locks of `outputs`
 * (their buckets in ascending order, so that two lists cannot deadlock), then
 * throws CIDGET_ERR_OUTPUT_IN_USE if an unfinished download writes to one of
 * them. Creators of the same output so take turns and cannot both see it free.
 */
async function lockOutputs (client: PoolClient, outputs: string[]): Promise<void> {
  await client.query(
    `SELECT pg_advisory_xact_lock($1, b) FROM (SELECT DISTINCT abs(hashtext(o) % $2) AS b FROM unnest($3::text[]) AS o) AS buckets ORDER BY b`,
    [OUTPUT_LOCK_CLASS, OUTPUT_LOCK_BUCKETS, outputs])
  const clash = (await client.query<DownloadRow>(
    `${SELECT_DOWNLOADS} WHERE output = ANY($1::text[]) AND ${UNFINISHED_SQL} ORDER BY id LIMIT 1`, [outputs])).rows[0]
  if (clash !== undefined) throw outputInUse(clash, clash.output)
}


/**
 * The PostgreSQL state store, for a fleet of workers sharing one queue. It runs
 * the same migrations as SQLite (translated by `postgresDialect`), returns the
 * same records (BIGINT columns as numbers, through a type parser on this store's
 * own connections only), and keeps the same contract: mutators of one download
 * reject with CIDGET_ERR_UNKNOWN_DOWNLOAD when the id does not exist, except
 * `deleteDownload`, `renewLease` and `releaseLease`; invalid arguments are
 * CIDGET_ERR_BAD_OPTION.
 *
 * Connections come from a pool. One whose backend dies while idle is dropped
 * and replaced on the next call; a call whose connection is lost, or that cannot
 * connect, rejects with CIDGET_ERR_STATE_UNAVAILABLE (retryable); any other
 * failure is CIDGET_ERR_STATE naming the call.
 */
export class PostgresStore implements Store {
  readonly location: string
  readonly #pool: Pool
  readonly #isOwnerDead: OwnerLiveness
  readonly #now: () => number
  #closed = false

  private constructor (pool: Pool, location: string, isOwnerDead: OwnerLiveness, now: () => number) {
    this.#pool = pool
    this.location = location
    this.#isOwnerDead = isOwnerDead
    this.#now = now
  }

  /**
   * Connects to the database at `url` (postgres:// or postgresql://) and applies
   * the migrations it lacks. The database must exist; the user needs to create
   * tables in its current schema on the first run. Throws
   * CIDGET_ERR_STATE_UNAVAILABLE when the server cannot be reached, and
   * CIDGET_ERR_STATE for anything else (authentication, a missing database, a
   * newer schema, another program's tables), naming the URL without its password.
   */
  static async open (url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const location = redactUrl(url)
    const poolSize = opts.poolSize ?? DEFAULT_POOL_SIZE
    const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
    if (!Number.isInteger(poolSize) || poolSize < 1) throw badOption(`poolSize must be a whole number ≥ 1, not ${poolSize}`)
    if (!Number.isInteger(connectTimeoutMs) || connectTimeoutMs < 1) {
      throw badOption(`connectTimeoutMs must be a whole number of milliseconds ≥ 1, not ${connectTimeoutMs}`)
    }
    const now = opts.now ?? Date.now
    // Loaded here, so that programs on SQLite never load the driver.
    const pg = await import('pg')
    // BIGINT (times, sizes, ids, counts) as numbers: JavaScript numbers hold them exactly up to 2^53.
    // Set on this pool's connections only; the driver's global parsers stay as they are.
    const types = new pg.TypeOverrides()
    types.setTypeParser(pg.types.builtins.INT8, (text: string) => Number(text))
    const pool = new pg.Pool({
      connectionString: url,
      types,
      max: poolSize,
      connectionTimeoutMillis: connectTimeoutMs,
      // a connection that stops answering without closing fails the call instead of hanging it
      query_timeout: QUERY_TIMEOUT_MS,
      keepAlive: true,
      allowExitOnIdle: true,
      application_name: 'cidget'
    })
    // An idle connection whose backend ends (server restart, pg_terminate_backend, network loss) is
    // reported here after the pool dropped it; the next call opens a new one. Without a listener
    // the 'error' event would end the process.
    pool.on('error', () => undefined)
    // …and every connection keeps a listener of its own for its whole life: pg emits 'error' on a
    // connection in the short moments when neither the pool nor a caller listens (a backend killed
    // as it is handed out, a second error after the first), and an unheard 'error' ends the process.
    // The call that was running fails on its own, with the error mapped by #run.
    pool.on('connect', (client) => { client.on('error', () => undefined) })
    try {
      await migrate(pool, location, now)
    } catch (err) {
      await pool.end().catch(() => undefined)
      throw openError(location, err)
    }
    return new PostgresStore(pool, location, opts.isOwnerDead ?? defaultIsOwnerDead, now)
  }

  /** No holder, expired (or without an expiry), or held by a dead owner: anyone may take it. */
  #leaseLapsed (holder: string | null, expires: number | null, now: number): boolean {
    return holder === null || expires === null || expires < now || this.#isOwnerDead(holder)
  }

  /** Runs one call; its failures become coded errors naming the call. */
  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      if (err instanceof CidgetError) throw err
      const detail = detailOf(err)
      if (this.#closed) {
        throw new CidgetError('CIDGET_ERR_STATE', `State store ${this.location}: ${what} failed: the store is closed`, { cause: err })
      }
      if (isConnectionError(err)) {
        throw new CidgetError('CIDGET_ERR_STATE_UNAVAILABLE',
          `State store ${this.location}: ${what} failed: the connection was lost (${detail})`, { cause: err })
      }
      throw new CidgetError('CIDGET_ERR_STATE', `State store ${this.location}: ${what} failed: ${detail}`, { cause: err })
    }
  }

  async #query<R extends QueryResultRow = DownloadRow>(text: string, values?: unknown[], client?: PoolClient): Promise<QueryResult<R>> {
    return client === undefined ? await this.#pool.query<R>(text, values) : await client.query<R>(text, values)
  }

  /** Runs one of the statements both stores share, its `@name`s bound from `params`. */
  async #exec<R extends QueryResultRow = DownloadRow>(name: StatementName, params: Record<string, unknown>, client?: PoolClient): Promise<QueryResult<R>> {
    const statement = STATEMENTS[name]
    return await this.#query<R>(statement.text, bind(statement, params), client)
  }

  /**
   * Runs a fenced UPDATE of one download (`owner` null: unconditional). No row updated means
   * CIDGET_ERR_UNKNOWN_DOWNLOAD, or CIDGET_ERR_LEASE_HELD when the download exists and `owner` was given.
   */
  async #updateOne (id: number, name: StatementName, params: Record<string, unknown>, owner: string | undefined, client?: PoolClient): Promise<void> {
    const res = await this.#exec(name, { ...params, id, owner: owner ?? null }, client)
    if ((res.rowCount ?? 0) > 0) return
    await this.#notChanged(id, owner, client)
  }

  /** Why a fenced write of `id` changed nothing: no such download, or a lease `owner` does not hold. */
  async #notChanged (id: number, owner: string | undefined, client?: PoolClient): Promise<never> {
    if (owner === undefined) throw unknownDownload(id)
    const found = (await this.#exec('exists', { id }, client)).rowCount ?? 0
    throw found === 0 ? unknownDownload(id) : leaseLost(id, owner)
  }

  async createDownload (init: NewDownload, now?: number, opts: { exclusiveOutput?: boolean } = {}): Promise<DownloadRecord> {
    return this.#run('createDownload', async () => {
      const params = newDownloadParams(init, now ?? this.#now())
      if (opts.exclusiveOutput !== true) return rowToRecord(oneRow(await this.#query(INSERT_ONE, insertValues(params))))
      return inTransaction(this.#pool, async client => {
        await lockOutputs(client, [params.output])
        return rowToRecord(oneRow(await client.query<DownloadRow>(INSERT_ONE, insertValues(params))))
      })
    })
  }

  async createDownloads (inits: readonly NewDownload[], now?: number, opts: { exclusiveOutput?: boolean } = {}): Promise<DownloadRecord[]> {
    return this.#run('createDownloads', async () => {
      const at = now ?? this.#now()
      const exclusive = opts.exclusiveOutput === true
      const params = checkList(inits, exclusive).map(init => newDownloadParams(init, at))
      if (params.length === 0) return []
      return inTransaction(this.#pool, async client => {
        if (exclusive) await lockOutputs(client, params.map(p => p.output))
        const out: DownloadRecord[] = []
        for (let start = 0; start < params.length; start += INSERT_BATCH) {
          const batch = params.slice(start, start + INSERT_BATCH)
          const column = <K extends keyof NewDownloadParams>(key: K): Array<NewDownloadParams[K]> => batch.map(p => p[key])
          const res = await client.query<DownloadRow>(INSERT_MANY, [
            column('cid'), column('path'), column('target'), column('output'), column('mode'), column('gateways'),
            column('size'), column('expectedSha256'), column('priority'), column('name'), column('updateOf'),
            column('nameSequence'), column('nameValidity'), column('nameResolvedAt'), at
          ])
          if (res.rows.length !== batch.length) throw new Error(`inserted ${res.rows.length} rows of ${batch.length}`)
          out.push(...res.rows.map(rowToRecord).sort((a, b) => a.id - b.id))
        }
        return out
      }).then(async (out) => {
        // a queue that grew by thousands at once: fresh statistics, or the planner may not use the claim index
        if (out.length >= ANALYZE_AFTER_ROWS) await this.#query('ANALYZE ipfs_downloads')
        return out
      })
    })
  }

  async getDownload (id: number): Promise<DownloadRecord | undefined> {
    return this.#run('getDownload', async () => {
      const row = (await this.#exec('get', { id })).rows[0]
      return row === undefined ? undefined : rowToRecord(row)
    })
  }

  async getDownloadsByStatus (status: DownloadStatus): Promise<DownloadRecord[]> {
    return this.#run('getDownloadsByStatus', async () =>
      (await this.#exec('byStatus', { status: checkStatus(status) })).rows.map(rowToRecord))
  }

  async listDownloads (opts: ListOptions = {}): Promise<DownloadRecord[]> {
    return this.#run('listDownloads', async () => (await this.#exec('list', listParams(opts))).rows.map(rowToRecord))
  }

  async findDownload (cid: string, path: string, output: string): Promise<DownloadRecord | undefined> {
    return await this.#one('findDownload', 'find', { cid, path, output })
  }
  async findNamedDownload (name: string, output: string): Promise<DownloadRecord | undefined> {
    return await this.#one('findNamedDownload', 'findNamed', { name, output })
  }

  async findDoneByOutput (output: string): Promise<DownloadRecord | undefined> {
    return await this.#one('findDoneByOutput', 'doneByOutput', { output })
  }

  /** The record of the first row of a statement, if any. */
  async #one (what: string, statement: StatementName, params: Record<string, BindValue>): Promise<DownloadRecord | undefined> {
    return this.#run(what, async () => {
      const row = (await this.#exec(statement, params)).rows[0]
      return row === undefined ? undefined : rowToRecord(row)
    })
  }


  async countByStatus (): Promise<Record<DownloadStatus, number>> {
    return this.#run('countByStatus', async () => {
      const out = Object.fromEntries(STATUSES.map(s => [s, 0])) as Record<DownloadStatus, number>
      for (const row of (await this.#exec<{ status: string, n: number }>('countByStatus', {})).rows) {
        if (isStatus(row.status)) out[row.status] = Number(row.n)
      }
      return out
    })
  }

  async findUnfinishedByOutput (output: string): Promise<DownloadRecord[]> {
    return this.#run('findUnfinishedByOutput', async () =>
      (await this.#exec('unfinishedByOutput', { output })).rows.map(rowToRecord))
  }

  async updateDownloadResume (id: number, currentSize: number, attempts: number, lastAttempt: number,
    status: DownloadStatus, owner?: string): Promise<void> {
    await this.#run('updateDownloadResume', async () => {
      await this.#updateOne(id, 'updateResume', { currentSize, attempts, lastAttempt, status: checkStatus(status), now: this.#now() }, owner)
    })
  }

  async updateDownloadHash (id: number, hash: string, owner?: string): Promise<void> {
    await this.#run('updateDownloadHash', async () => {
      await this.#updateOne(id, 'updateHash', { hash, now: this.#now() }, owner)
    })
  }

  async markDownloadResuming (id: number, owner?: string): Promise<void> {
    await this.#run('markDownloadResuming', async () => {
      await this.#updateOne(id, 'markResuming', { now: this.#now() }, owner)
    })
  }

  async markDownloadPaused (id: number, error: string | null, errorCode?: string | null, owner?: string): Promise<void> {
    await this.#run('markDownloadPaused', async () => {
      await this.#updateOne(id, 'markStopped', { status: 'paused', error, errorCode: errorCode ?? null, now: this.#now() }, owner)
    })
  }

  async markDownloadFailed (id: number, error: string, errorCode: string, owner?: string): Promise<void> {
    await this.#run('markDownloadFailed', async () => {
      await this.#updateOne(id, 'markStopped', { status: 'failed', error, errorCode, now: this.#now() }, owner)
    })
  }

  async markDownloadSuccess (id: number, hash: string | null, size: number, now?: number, owner?: string): Promise<void> {
    await this.#run('markDownloadSuccess', async () => {
      await inTransaction(this.#pool, async client => {
        await this.#updateOne(id, 'markSuccess', { hash, size, now: now ?? this.#now() }, owner, client)
        await client.query(CLEAR_PROGRESS, [id])
      })
    })
  }

  async updateDownload (id: number, patch: DownloadPatch, now?: number, owner?: string): Promise<void> {
    await this.#run('updateDownload', async () => {
      const params = patchParams(patch)
      const values: unknown[] = []
      const param = (value: unknown): string => {
        values.push(value)
        return `$${values.length}`
      }
      const assignments = patchAssignments(params, field => param(params[field]))
      assignments.push(`"updatedAt" = ${param(now ?? this.#now())}`)
      const idParam = param(id)
      const ownerParam = param(owner ?? null)
      const where = `id = ${idParam} AND ${FENCE.replaceAll('@owner', () => ownerParam)}`
      const res = await this.#query(`UPDATE ipfs_downloads SET ${assignments.join(', ')} WHERE ${where}`, values)
      if ((res.rowCount ?? 0) === 0) await this.#notChanged(id, owner)
    })
  }

  async deleteDownload (id: number): Promise<boolean> {
    return this.#run('deleteDownload', async () => ((await this.#exec('delete', { id })).rowCount ?? 0) > 0)
  }

  async saveProgress (id: number, bitmap: Uint8Array, currentSize: number, owner?: string): Promise<void> {
    await this.#run('saveProgress', async () => {
      const now = this.#now()
      await inTransaction(this.#pool, async client => {
        await this.#updateOne(id, 'setCurrentSize', { currentSize, now }, owner, client)
        await this.#exec('saveProgress', { id, bitmap: toBuffer(bitmap), now }, client)
      })
    })
  }

  async getProgress (id: number): Promise<Uint8Array | undefined> {
    return this.#run('getProgress', async () => {
      const row = (await this.#exec<{ bitmap: Buffer }>('getProgress', { id })).rows[0]
      return row === undefined ? undefined : new Uint8Array(row.bitmap)
    })
  }

  async putBlock (id: number, cid: string, bytes: Uint8Array, owner?: string): Promise<void> {
    await this.putBlocks(id, [{ cid, bytes }], owner)
  }

  async putBlocks (id: number, blocks: readonly KeptBlock[], owner?: string): Promise<void> {
    if (blocks.length === 0) return
    await this.#run('putBlocks', async () => {
      const res = await this.#query(`WITH owned AS (SELECT id FROM ipfs_downloads WHERE id = $1 AND ($2::text IS NULL OR "leaseOwner" = $2) FOR SHARE),
        kept AS (INSERT INTO ipfs_download_blocks ("downloadId", cid, bytes) SELECT owned.id, b.cid, b.bytes
          FROM owned, unnest($3::text[], $4::bytea[]) AS b(cid, bytes) ON CONFLICT DO NOTHING) SELECT id FROM owned`,
      [id, owner ?? null, blocks.map(b => b.cid), blocks.map(b => toBuffer(b.bytes))])
      if ((res.rowCount ?? 0) === 0) await this.#notChanged(id, owner)
    })
  }

  async getBlocks (id: number): Promise<Map<string, Uint8Array>> {
    return this.#run('getBlocks', async () =>
      new Map((await this.#exec<{ cid: string, bytes: Buffer }>('getBlocks', { id })).rows.map(r => [r.cid, new Uint8Array(r.bytes)])))
  }

  async getBlock (id: number, cid: string): Promise<Uint8Array | undefined> {
    return this.#run('getBlock', async () => (await this.#exec<{ bytes: Buffer }>('getBlock', { id, cid })).rows.map(r => new Uint8Array(r.bytes))[0])
  }

  async getBlockKeys (id: number): Promise<string[]> {
    return this.#run('getBlockKeys', async () => (await this.#exec<{ cid: string }>('getBlockKeys', { id })).rows.map(r => r.cid))
  }

  async clearProgress (id: number, owner?: string): Promise<void> {
    await this.#run('clearProgress', async () => {
      // One statement, so both deletes commit together (and with the lease check, when fenced).
      if (owner === undefined) {
        await this.#query(CLEAR_PROGRESS, [id])
        return
      }
      const res = await this.#query(`${OWNED},
        progress AS (DELETE FROM ipfs_download_progress WHERE "downloadId" IN (SELECT id FROM owned)),
        blocks AS (DELETE FROM ipfs_download_blocks WHERE "downloadId" IN (SELECT id FROM owned))
        SELECT id FROM owned`, [id, owner])
      if ((res.rowCount ?? 0) === 0) await this.#notChanged(id, owner)
    })
  }

  async claimLease (id: number, owner: string, ttlMs: number, now?: number): Promise<boolean> {
    return this.#run('claimLease', async () => {
      checkTtl(ttlMs)
      const at = now ?? this.#now()
      return inTransaction(this.#pool, async client => {
        // FOR UPDATE: a second claimer waits here and then sees the first one's lease.
        const row = (await client.query<{ leaseOwner: string | null, leaseExpires: number | null }>(
          'SELECT "leaseOwner", "leaseExpires" FROM ipfs_downloads WHERE id = $1 FOR UPDATE', [id])).rows[0]
        if (row === undefined) throw unknownDownload(id)
        if (row.leaseOwner !== owner && !this.#leaseLapsed(row.leaseOwner, row.leaseExpires, at)) return false
        await this.#exec('takeLease', { owner, expires: at + ttlMs, now: at, id }, client)
        return true
      })
    })
  }

  async renewLease (id: number, owner: string, ttlMs: number, now?: number): Promise<boolean> {
    return this.#run('renewLease', async () => {
      checkTtl(ttlMs)
      const at = now ?? this.#now()
      return ((await this.#exec('renewLease', { expires: at + ttlMs, now: at, id, owner })).rowCount ?? 0) > 0
    })
  }

  async releaseLease (id: number, owner: string): Promise<void> {
    await this.#run('releaseLease', async () => {
      await this.#exec('releaseLease', { now: this.#now(), id, owner })
    })
  }

  async listOrphaned (now?: number): Promise<DownloadRecord[]> {
    return this.#run('listOrphaned', async () => {
      const at = now ?? this.#now()
      // Active rows are few; the owner check is a JS function, so filter here rather than in SQL.
      return (await this.#exec('active', {})).rows.map(rowToRecord)
        .filter(r => this.#leaseLapsed(r.leaseOwner, r.leaseExpires, at))
    })
  }

  async claimNext (owner: string, ttlMs: number, now?: number, opts: ClaimOptions = {}): Promise<DownloadRecord | undefined> {
    return this.#run('claimNext', async () => {
      checkTtl(ttlMs)
      const under = checkUnder(opts.under)
      const at = now ?? this.#now()
      // One statement, so one transaction: lock the first claimable row that no other claimer has
      // locked (SKIP LOCKED: concurrent claimers pass over each other's row instead of waiting
      // for it), and take its lease.
      const claim = async (dead: string[]): Promise<DownloadRow | undefined> => (await this.#query(`WITH next AS (
          SELECT id FROM ipfs_downloads
          WHERE ${CLAIMABLE_SQL}
            AND ("leaseOwner" IS NULL OR "leaseExpires" IS NULL OR "leaseExpires" < $3 OR "leaseOwner" = ANY($4::text[]))
            AND ($5::text IS NULL OR left(output, length($5::text)) = $5::text)
          ORDER BY priority DESC, id
          LIMIT 1
          FOR UPDATE SKIP LOCKED)
        UPDATE ipfs_downloads AS d SET "leaseOwner" = $1, "leaseExpires" = $2, "updatedAt" = $3
        FROM next WHERE d.id = next.id
        RETURNING d.*`, [owner, at + ttlMs, at, dead, under])).rows[0]
      // A free or lapsed lease first, in one round trip. Only when there is none: owner liveness is
      // a JS function, so ask it about the owners holding valid leases (a few rows, however long the
      // queue) and take a row of one that is dead.
      let row = await claim([])
      if (row === undefined) {
        const holders = await this.#query<{ owner: string }>(`SELECT DISTINCT "leaseOwner" AS owner FROM ipfs_downloads
          WHERE "leaseOwner" IS NOT NULL AND "leaseOwner" <> $1 AND "leaseExpires" >= $2 AND ${CLAIMABLE_SQL}`,
        [owner, at])
        const dead = holders.rows.map(r => r.owner).filter(o => this.#isOwnerDead(o))
        if (dead.length > 0) row = await claim(dead)
      }
      return row === undefined ? undefined : rowToRecord(row)
    })
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#pool.end()
  }
}

function oneRow (res: QueryResult<DownloadRow>): DownloadRow {
  const row = res.rows[0]
  if (row === undefined) throw new Error('INSERT … RETURNING returned no row')
  return row
}

function toBuffer (bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
