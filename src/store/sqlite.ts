import { resolve } from 'node:path'
import { Database } from './driver.js'
import { CidgetError } from '../core/errors.js'
import { STATUSES } from '../core/types.js'
import type { DownloadRecord, DownloadStatus, NewDownload } from '../core/types.js'
import { CLAIMABLE_SQL } from './migrations.js'
import { checkLocation, createPrivate, enableWal, migrate, openError } from './sqlite-file.js'
import { isOwnerDead as defaultIsOwnerDead } from './owner.js'
import {
  badOption, checkList, outputInUse, checkStatus, checkTtl, checkUnder, isStatus, listParams, newDownloadParams, patchParams,
  leaseLost, rowToRecord, unknownDownload
} from './rows.js'
import type { BindValue, DownloadRow, NewDownloadParams } from './rows.js'
import { FENCE, INSERT_COLUMNS, SQL, patchAssignments } from './sql.js'
import type { ClaimOptions, DownloadPatch, KeptBlock, ListOptions, OwnerLiveness, Store, StoreOptions } from './store.js'

/** How long a statement waits for another connection's write lock before SQLITE_BUSY. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5_000
export { DEFAULT_LIST_LIMIT } from './rows.js'

export interface SqliteStoreOptions extends StoreOptions {
  /** @default 5000 */
  busyTimeoutMs?: number
}

interface Id { id: number }
/** The parameters every fenced update binds: `owner` null for an unconditional write. */
interface Fenced extends Id {
  now: number
  owner: string | null
}

function prepareStatements (db: Database.Database) {
  return {
    insert: db.prepare<NewDownloadParams, DownloadRow>(`INSERT INTO ipfs_downloads ${INSERT_COLUMNS}
      VALUES (@cid, @path, @target, @output, @mode, @gateways, @size, @expectedSha256, @priority, @name, @updateOf,
       @nameSequence, @nameValidity, @nameResolvedAt, 'pending', 0,
       0, @now, @now)
      RETURNING *`),
    get: db.prepare<Id, DownloadRow>(SQL.get),
    byStatus: db.prepare<{ status: string }, DownloadRow>(SQL.byStatus),
    list: db.prepare<{ status: string | null, afterId: number, limit: number }, DownloadRow>(SQL.list),
    find: db.prepare<{ cid: string, path: string, output: string }, DownloadRow>(SQL.find),
    findNamed: db.prepare<{ name: string, output: string }, DownloadRow>(SQL.findNamed),
    doneByOutput: db.prepare<{ output: string }, DownloadRow>(SQL.doneByOutput),
    unfinishedByOutput: db.prepare<{ output: string }, DownloadRow>(SQL.unfinishedByOutput),
    active: db.prepare<[], DownloadRow>(SQL.active),
    // Candidates in claim order; a lease held by another owner is judged in JS (isOwnerDead).
    // INDEXED BY: without ANALYZE statistics SQLite would rather sort the rows of the status index.
    claimable: db.prepare<{ owner: string, now: number, under: string | null }, DownloadRow>(`SELECT * FROM ipfs_downloads
      INDEXED BY idx_ipfs_downloads_claim
      WHERE ${CLAIMABLE_SQL}
        AND ("leaseOwner" IS NULL OR "leaseExpires" IS NULL OR "leaseExpires" < @now OR "leaseOwner" <> @owner)
        AND (@under IS NULL OR substr(output, 1, length(@under)) = @under)
      ORDER BY priority DESC, id`),
    updateResume: db.prepare<Fenced & { currentSize: number, attempts: number, lastAttempt: number, status: string }>(SQL.updateResume),
    updateHash: db.prepare<Fenced & { hash: string }>(SQL.updateHash),
    markResuming: db.prepare<Fenced>(SQL.markResuming),
    markStopped: db.prepare<Fenced & { status: 'paused' | 'failed', error: string | null, errorCode: string | null }>(SQL.markStopped),
    markSuccess: db.prepare<Fenced & { hash: string | null, size: number }>(SQL.markSuccess),
    // One statement for every patch: a field is written only when its set_ flag is 1.
    update: db.prepare<Record<string, BindValue>>(`UPDATE ipfs_downloads SET
      ${patchAssignments('all', f => `CASE WHEN @set_${f} = 1 THEN @${f} ELSE "${f}" END`).join(',\n      ')},
      "updatedAt" = @now
      WHERE id = @id AND ${FENCE}`),
    delete: db.prepare<Id>(SQL.delete),
    countByStatus: db.prepare<[], { status: string, n: number }>(SQL.countByStatus),
    saveProgress: db.prepare<Id & { bitmap: Uint8Array, now: number }>(SQL.saveProgress),
    getProgress: db.prepare<Id, { bitmap: Uint8Array }>(SQL.getProgress),
    putBlock: db.prepare<Id & { cid: string, bytes: Uint8Array }>(SQL.putBlock),
    getBlocks: db.prepare<Id, { cid: string, bytes: Uint8Array }>(SQL.getBlocks),
    getBlock: db.prepare<Id & { cid: string }, { bytes: Uint8Array }>(SQL.getBlock),
    getBlockKeys: db.prepare<Id, { cid: string }>(SQL.getBlockKeys),
    clearProgress: db.prepare<Id>('DELETE FROM ipfs_download_progress WHERE "downloadId" = @id'),
    clearBlocks: db.prepare<Id>('DELETE FROM ipfs_download_blocks WHERE "downloadId" = @id'),
    setCurrentSize: db.prepare<Fenced & { currentSize: number }>(SQL.setCurrentSize),
    exists: db.prepare<Id, { id: number }>(SQL.exists),
    leaseOwner: db.prepare<Id, { owner: string | null }>(SQL.leaseOwner),
    takeLease: db.prepare<Id & { owner: string, expires: number, now: number }>(SQL.takeLease),
    renewLease: db.prepare<Id & { owner: string, expires: number, now: number }>(SQL.renewLease),
    releaseLease: db.prepare<Id & { owner: string, now: number }>(SQL.releaseLease)
  }
}

type Statements = ReturnType<typeof prepareStatements>

/**
 * The SQLite state store (the default). One connection per instance; several
 * instances and processes may share a file (WAL, busy timeout, IMMEDIATE lease
 * transactions). Every method runs synchronously inside its promise, so no
 * transaction spans an await.
 *
 * Beyond the `Store` interface: mutators of one download reject with
 * CIDGET_ERR_UNKNOWN_DOWNLOAD when the id does not exist, except `deleteDownload`
 * (false), `renewLease` (false: the lease is gone with the row) and `releaseLease`
 * (nothing to release). An invalid argument (status, mode, limit, ttlMs, a field
 * `updateDownload` cannot set) is CIDGET_ERR_BAD_OPTION; any other failure,
 * SQLITE_BUSY included, is a CIDGET_ERR_STATE naming the call.
 */
/**
 * The connection's page cache, KiB: SQLite's own default. better-sqlite3 opens
 * connections with 16,000 KiB, which a long-running worker or service fills as
 * its state grows (every record is kept: about 0.5 MB per 1,000 downloads): a
 * worker's RSS rose by 20 MB over its first 36,000 downloads, then stayed
 * (bench/worker-memory.ts).
 * Pages beyond it come from the OS's file cache: a system call each, not a
 * disk read.
 */
export const PAGE_CACHE_KIB = 2000

export class SqliteStore implements Store {
  readonly location: string
  readonly #db: Database.Database
  readonly #stmts: Statements
  readonly #isOwnerDead: OwnerLiveness
  readonly #now: () => number
  readonly #claim: (id: number, owner: string, ttlMs: number, now: number) => boolean
  readonly #insertMany: (params: NewDownloadParams[], exclusive: boolean) => DownloadRecord[]
  readonly #claimNext: (owner: string, ttlMs: number, now: number, under: string | null) => DownloadRecord | undefined

  private constructor (db: Database.Database, location: string, isOwnerDead: OwnerLiveness, now: () => number) {
    this.location = location
    this.#db = db
    db.pragma(`cache_size = -${PAGE_CACHE_KIB}`)
    this.#stmts = prepareStatements(db)
    this.#isOwnerDead = isOwnerDead
    this.#now = now
    // IMMEDIATE takes the write lock before the read, so two processes cannot both see a free lease.
    const claim = db.transaction((id: number, owner: string, ttlMs: number, at: number): boolean => {
      const row = this.#stmts.get.get({ id })
      if (row === undefined) throw unknownDownload(id)
      const expires = row.leaseExpires === null ? null : Number(row.leaseExpires)
      if (row.leaseOwner !== owner && !this.#leaseLapsed(row.leaseOwner, expires, at)) return false
      this.#stmts.takeLease.run({ owner, expires: at + ttlMs, now: at, id })
      return true
    })
    this.#claim = (id, owner, ttlMs, at) => claim.immediate(id, owner, ttlMs, at)
    const insertMany = db.transaction((params: NewDownloadParams[], exclusive: boolean): DownloadRecord[] => {
      if (exclusive) {
        for (const p of params) {
          const clash = this.#stmts.unfinishedByOutput.all({ output: p.output })[0]
          if (clash !== undefined) throw outputInUse(clash, p.output)
        }
      }
      return params.map(p => {
        const row = this.#stmts.insert.get(p)
        if (row === undefined) throw new Error('INSERT … RETURNING returned no row')
        return rowToRecord(row)
      })
    })
    this.#insertMany = (params, exclusive) => insertMany.immediate(params, exclusive)
    const claimNext = db.transaction((owner: string, ttlMs: number, at: number, under: string | null): DownloadRecord | undefined => {
      let next: DownloadRow | undefined
      for (const row of this.#stmts.claimable.iterate({ owner, now: at, under })) {
        const expires = row.leaseExpires === null ? null : Number(row.leaseExpires)
        if (this.#leaseLapsed(row.leaseOwner, expires, at)) {
          next = row
          break // ends the iteration, so the connection is free for the update
        }
      }
      if (next === undefined) return undefined
      this.#stmts.takeLease.run({ owner, expires: at + ttlMs, now: at, id: Number(next.id) })
      return rowToRecord({ ...next, leaseOwner: owner, leaseExpires: at + ttlMs, updatedAt: at })
    })
    this.#claimNext = (owner, ttlMs, at, under) => claimNext.immediate(owner, ttlMs, at, under)
  }

  /**
   * Opens (creating if needed) and migrates the database at `file`; ':memory:' for
   * a private in-memory one. Throws CIDGET_ERR_STATE naming the path and the reason
   * when the directory is missing or not writable, the file is not a SQLite
   * database, or its schema is newer than this code.
   */
  static open (file: string, opts: SqliteStoreOptions = {}): SqliteStore {
    const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw badOption(`busyTimeoutMs must be a whole number of milliseconds ≥ 0, not ${busyTimeoutMs}`)
    }
    const now = opts.now ?? Date.now
    const memory = file === ':memory:'
    const location = memory ? file : resolve(file)
    if (!memory) {
      checkLocation(location)
      createPrivate(location)
    }
    let db: Database.Database | undefined
    try {
      db = new Database(location, { timeout: busyTimeoutMs })
      enableWal(db, busyTimeoutMs)
      db.pragma('synchronous = NORMAL')
      db.pragma('foreign_keys = ON')
      migrate(db, location, now)
      return new SqliteStore(db, location, opts.isOwnerDead ?? defaultIsOwnerDead, now)
    } catch (err) {
      try {
        db?.close()
      } catch {
        // Already failing; the original error is the one to report.
      }
      throw openError(location, err, busyTimeoutMs)
    }
  }

  /** The connection's settings, for diagnostics and tests. */
  settings (): { journalMode: string, synchronous: string, foreignKeys: boolean, busyTimeoutMs: number, pageCacheKiB: number } {
    return this.#run('settings', () => {
      const get = (name: string): unknown => this.#db.pragma(name, { simple: true })
      const synchronous = ['OFF', 'NORMAL', 'FULL', 'EXTRA'][Number(get('synchronous'))] ?? String(get('synchronous'))
      return {
        journalMode: String(get('journal_mode')),
        synchronous,
        foreignKeys: Number(get('foreign_keys')) === 1,
        busyTimeoutMs: Number(get('busy_timeout')),
        // negative: KiB; positive: pages
        pageCacheKiB: Number(get('cache_size')) < 0 ? -Number(get('cache_size')) : Number(get('cache_size')) * Number(get('page_size')) / 1024
      }
    })
  }

  /** No holder, expired (or without an expiry), or held by a dead owner: anyone may take it. */
  #leaseLapsed (holder: string | null, expires: number | null, now: number): boolean {
    return holder === null || expires === null || expires < now || this.#isOwnerDead(holder)
  }

  /** Runs one call's synchronous work; anything but a CidgetError becomes CIDGET_ERR_STATE. */
  #run<T>(what: string, fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      if (err instanceof CidgetError) throw err
      const detail = err instanceof Error ? err.message : String(err)
      throw new CidgetError('CIDGET_ERR_STATE', `State store ${this.location}: ${what} failed: ${detail}`, { cause: err })
    }
  }

  /** After a fenced update of one row: nothing changed means no such id, or (with `owner`) a lease not ours. */
  #changeOne (id: number, changes: number, owner?: string): void {
    if (changes > 0) return
    throw owner === undefined || this.#stmts.exists.get({ id }) === undefined ? unknownDownload(id) : leaseLost(id, owner)
  }

  /** Inside a transaction: throws unless `owner` (when given) holds the lease of `id`. */
  #checkOwner (id: number, owner: string | undefined): void {
    if (owner === undefined) return
    const row = this.#stmts.leaseOwner.get({ id })
    if (row === undefined) throw unknownDownload(id)
    if (row.owner !== owner) throw leaseLost(id, owner)
  }

  async createDownload (init: NewDownload, now?: number, opts: { exclusiveOutput?: boolean } = {}): Promise<DownloadRecord> {
    return this.#run('createDownload', () => {
      if (opts.exclusiveOutput === true) return this.#insertMany([newDownloadParams(init, now ?? this.#now())], true)[0] as DownloadRecord
      const row = this.#stmts.insert.get(newDownloadParams(init, now ?? this.#now()))
      if (row === undefined) throw new Error('INSERT … RETURNING returned no row')
      return rowToRecord(row)
    })
  }

  async createDownloads (inits: readonly NewDownload[], now?: number, opts: { exclusiveOutput?: boolean } = {}): Promise<DownloadRecord[]> {
    return this.#run('createDownloads', () => {
      const at = now ?? this.#now()
      const exclusive = opts.exclusiveOutput === true
      const params = checkList(inits, exclusive).map(init => newDownloadParams(init, at))
      return params.length === 0 ? [] : this.#insertMany(params, exclusive)
    })
  }

  async getDownload (id: number): Promise<DownloadRecord | undefined> {
    return this.#run('getDownload', () => {
      const row = this.#stmts.get.get({ id })
      return row === undefined ? undefined : rowToRecord(row)
    })
  }

  async getDownloadsByStatus (status: DownloadStatus): Promise<DownloadRecord[]> {
    return this.#run('getDownloadsByStatus', () => this.#stmts.byStatus.all({ status: checkStatus(status) }).map(rowToRecord))
  }

  async listDownloads (opts: ListOptions = {}): Promise<DownloadRecord[]> {
    return this.#run('listDownloads', () => {
      return this.#stmts.list.all(listParams(opts)).map(rowToRecord)
    })
  }

  async findDownload (cid: string, path: string, output: string): Promise<DownloadRecord | undefined> {
    return this.#run('findDownload', () => {
      const row = this.#stmts.find.get({ cid, path, output })
      return row === undefined ? undefined : rowToRecord(row)
    })
  }
  async findDoneByOutput (output: string): Promise<DownloadRecord | undefined> {
    return this.#run('findDoneByOutput', () => {
      const row = this.#stmts.doneByOutput.get({ output })
      return row === undefined ? undefined : rowToRecord(row)
    })
  }

  async findNamedDownload (name: string, output: string): Promise<DownloadRecord | undefined> {
    return this.#run('findNamedDownload', () => {
      const row = this.#stmts.findNamed.get({ name, output })
      return row === undefined ? undefined : rowToRecord(row)
    })
  }


  async countByStatus (): Promise<Record<DownloadStatus, number>> {
    return this.#run('countByStatus', () => {
      const out = Object.fromEntries(STATUSES.map(s => [s, 0])) as Record<DownloadStatus, number>
      for (const row of this.#stmts.countByStatus.all()) {
        if (isStatus(row.status)) out[row.status] = Number(row.n)
      }
      return out
    })
  }

  async findUnfinishedByOutput (output: string): Promise<DownloadRecord[]> {
    return this.#run('findUnfinishedByOutput', () => this.#stmts.unfinishedByOutput.all({ output }).map(rowToRecord))
  }

  async updateDownloadResume (id: number, currentSize: number, attempts: number, lastAttempt: number,
    status: DownloadStatus, owner?: string): Promise<void> {
    this.#run('updateDownloadResume', () => {
      const params = { id, currentSize, attempts, lastAttempt, status: checkStatus(status), now: this.#now(), owner: owner ?? null }
      this.#changeOne(id, this.#stmts.updateResume.run(params).changes, owner)
    })
  }

  async updateDownloadHash (id: number, hash: string, owner?: string): Promise<void> {
    this.#run('updateDownloadHash', () => {
      this.#changeOne(id, this.#stmts.updateHash.run({ id, hash, now: this.#now(), owner: owner ?? null }).changes, owner)
    })
  }

  async markDownloadResuming (id: number, owner?: string): Promise<void> {
    this.#run('markDownloadResuming', () => {
      this.#changeOne(id, this.#stmts.markResuming.run({ id, now: this.#now(), owner: owner ?? null }).changes, owner)
    })
  }

  async markDownloadPaused (id: number, error: string | null, errorCode?: string | null, owner?: string): Promise<void> {
    this.#run('markDownloadPaused', () => {
      const params = { id, status: 'paused' as const, error, errorCode: errorCode ?? null, now: this.#now(), owner: owner ?? null }
      this.#changeOne(id, this.#stmts.markStopped.run(params).changes, owner)
    })
  }

  async markDownloadFailed (id: number, error: string, errorCode: string, owner?: string): Promise<void> {
    this.#run('markDownloadFailed', () => {
      const params = { id, status: 'failed' as const, error, errorCode, now: this.#now(), owner: owner ?? null }
      this.#changeOne(id, this.#stmts.markStopped.run(params).changes, owner)
    })
  }

  async markDownloadSuccess (id: number, hash: string | null, size: number, now?: number, owner?: string): Promise<void> {
    this.#run('markDownloadSuccess', () => {
      this.#db.transaction(() => {
        const params = { id, hash, size, now: now ?? this.#now(), owner: owner ?? null }
        this.#changeOne(id, this.#stmts.markSuccess.run(params).changes, owner)
        this.#stmts.clearProgress.run({ id })
        this.#stmts.clearBlocks.run({ id })
      }).immediate()
    })
  }

  async updateDownload (id: number, patch: DownloadPatch, now?: number, owner?: string): Promise<void> {
    this.#run('updateDownload', () => {
      const params = { ...patchParams(patch), id, now: now ?? this.#now(), owner: owner ?? null }
      this.#changeOne(id, this.#stmts.update.run(params).changes, owner)
    })
  }

  async deleteDownload (id: number): Promise<boolean> {
    return this.#run('deleteDownload', () => this.#stmts.delete.run({ id }).changes > 0)
  }

  async saveProgress (id: number, bitmap: Uint8Array, currentSize: number, owner?: string): Promise<void> {
    this.#run('saveProgress', () => {
      this.#db.transaction(() => {
        const now = this.#now()
        this.#changeOne(id, this.#stmts.setCurrentSize.run({ id, currentSize, now, owner: owner ?? null }).changes, owner)
        this.#stmts.saveProgress.run({ id, bitmap, now })
      }).immediate()
    })
  }

  async getProgress (id: number): Promise<Uint8Array | undefined> {
    return this.#run('getProgress', () => {
      const row = this.#stmts.getProgress.get({ id })
      return row === undefined ? undefined : new Uint8Array(row.bitmap)
    })
  }

  async putBlock (id: number, cid: string, bytes: Uint8Array, owner?: string): Promise<void> {
    await this.putBlocks(id, [{ cid, bytes }], owner)
  }

  async putBlocks (id: number, blocks: readonly KeptBlock[], owner?: string): Promise<void> {
    if (blocks.length === 0) return
    this.#run('putBlocks', () => {
      this.#db.transaction(() => {
        if (owner !== undefined) this.#checkOwner(id, owner)
        else if (this.#stmts.leaseOwner.get({ id }) === undefined) throw unknownDownload(id)
        for (const { cid, bytes } of blocks) this.#stmts.putBlock.run({ id, cid, bytes })
      }).immediate()
    })
  }

  async getBlocks (id: number): Promise<Map<string, Uint8Array>> {
    return this.#run('getBlocks', () => new Map(this.#stmts.getBlocks.all({ id }).map(r => [r.cid, new Uint8Array(r.bytes)])))
  }

  async getBlock (id: number, cid: string): Promise<Uint8Array | undefined> {
    return this.#run('getBlock', () => {
      const row = this.#stmts.getBlock.get({ id, cid })
      return row === undefined ? undefined : new Uint8Array(row.bytes)
    })
  }

  async getBlockKeys (id: number): Promise<string[]> {
    return this.#run('getBlockKeys', () => this.#stmts.getBlockKeys.all({ id }).map(r => r.cid))
  }

  async clearProgress (id: number, owner?: string): Promise<void> {
    this.#run('clearProgress', () => {
      this.#db.transaction(() => {
        this.#checkOwner(id, owner)
        this.#stmts.clearProgress.run({ id })
        this.#stmts.clearBlocks.run({ id })
      }).immediate()
    })
  }

  async claimLease (id: number, owner: string, ttlMs: number, now?: number): Promise<boolean> {
    return this.#run('claimLease', () => {
      checkTtl(ttlMs)
      return this.#claim(id, owner, ttlMs, now ?? this.#now())
    })
  }

  async renewLease (id: number, owner: string, ttlMs: number, now?: number): Promise<boolean> {
    return this.#run('renewLease', () => {
      checkTtl(ttlMs)
      const at = now ?? this.#now()
      return this.#stmts.renewLease.run({ expires: at + ttlMs, now: at, id, owner }).changes > 0
    })
  }

  async releaseLease (id: number, owner: string): Promise<void> {
    this.#run('releaseLease', () => {
      this.#stmts.releaseLease.run({ now: this.#now(), id, owner })
    })
  }

  async listOrphaned (now?: number): Promise<DownloadRecord[]> {
    return this.#run('listOrphaned', () => {
      const at = now ?? this.#now()
      // Active rows are few; the owner check is a JS function, so filter here rather than in SQL.
      return this.#stmts.active.all().map(rowToRecord)
        .filter(r => this.#leaseLapsed(r.leaseOwner, r.leaseExpires, at))
    })
  }

  async claimNext (owner: string, ttlMs: number, now?: number, opts: ClaimOptions = {}): Promise<DownloadRecord | undefined> {
    return this.#run('claimNext', () => {
      checkTtl(ttlMs)
      return this.#claimNext(owner, ttlMs, now ?? this.#now(), checkUnder(opts.under))
    })
  }

  async close (): Promise<void> {
    if (this.#db.open) this.#db.close()
  }
}
