import { ACTIVE_STATUSES } from '../core/types.js'
import { PATCH_FIELDS } from './rows.js'
import type { BindValue, NewDownloadParams } from './rows.js'

/**
 * The statements both stores run, written once with named parameters (`@name`):
 * SQLite prepares them as they are, PostgreSQL runs them through `positional`.
 * What only one dialect can say (claiming, inserting lists, locking outputs,
 * deleting in one statement) stays in its store. A parameter tested for NULL is
 * cast, so that PostgreSQL knows its type from every use.
 */

const sqlList = (values: readonly string[]): string => values.map(v => `'${v}'`).join(', ')

export const SELECT_DOWNLOADS = 'SELECT * FROM ipfs_downloads'
/** A download someone works on (or worked on until it stopped without a word). */
export const ACTIVE_SQL = `status IN (${sqlList(ACTIVE_STATUSES)})`
/** A download that may still write to its output. */
export const UNFINISHED_SQL = `status NOT IN (${sqlList(['success', 'failed', 'cancelled'])})`
/** The lease fence of an update: with `@owner` bound, only while that owner holds the lease; null, always. */
export const FENCE = '(CAST(@owner AS TEXT) IS NULL OR "leaseOwner" = @owner)'
/** The columns an insert of a new download sets. */
export const INSERT_COLUMNS = `(cid, path, target, output, mode, gateways, size, "expectedSha256", priority, name, "updateOf",
  "nameSequence", "nameValidity", "nameResolvedAt", status, attempts, "currentSize", "createdAt", "updatedAt")`

export const SQL = {
  get: `${SELECT_DOWNLOADS} WHERE id = @id`,
  byStatus: `${SELECT_DOWNLOADS} WHERE status = @status ORDER BY id`,
  list: `${SELECT_DOWNLOADS} WHERE id > @afterId AND (CAST(@status AS TEXT) IS NULL OR status = @status) ORDER BY id LIMIT @limit`,
  find: `${SELECT_DOWNLOADS} WHERE cid = @cid AND path = @path AND output = @output AND status <> 'cancelled' ORDER BY id DESC LIMIT 1`,
  findNamed: `${SELECT_DOWNLOADS} WHERE name = @name AND output = @output AND status <> 'cancelled' ORDER BY id DESC LIMIT 1`,
  doneByOutput: `${SELECT_DOWNLOADS} WHERE output = @output AND status = 'success' ORDER BY id DESC LIMIT 1`,
  unfinishedByOutput: `${SELECT_DOWNLOADS} WHERE output = @output AND ${UNFINISHED_SQL} ORDER BY id`,
  active: `${SELECT_DOWNLOADS} WHERE ${ACTIVE_SQL} ORDER BY id`,
  exists: 'SELECT id FROM ipfs_downloads WHERE id = @id',
  leaseOwner: 'SELECT "leaseOwner" AS owner FROM ipfs_downloads WHERE id = @id',
  countByStatus: 'SELECT status, COUNT(*) AS n FROM ipfs_downloads GROUP BY status',
  delete: 'DELETE FROM ipfs_downloads WHERE id = @id',

  updateResume: `UPDATE ipfs_downloads SET "currentSize" = @currentSize, attempts = @attempts,
    "lastAttempt" = @lastAttempt, status = @status, "updatedAt" = @now WHERE id = @id AND ${FENCE}`,
  updateHash: `UPDATE ipfs_downloads SET hash = @hash, "updatedAt" = @now WHERE id = @id AND ${FENCE}`,
  markResuming: `UPDATE ipfs_downloads SET status = 'resuming', "updatedAt" = @now WHERE id = @id AND ${FENCE}`,
  markStopped: `UPDATE ipfs_downloads SET status = @status, error = @error, "errorCode" = @errorCode, "updatedAt" = @now
    WHERE id = @id AND ${FENCE}`,
  markSuccess: `UPDATE ipfs_downloads SET status = 'success', hash = @hash, size = @size, "currentSize" = @size,
    "completedAt" = @now, error = NULL, "errorCode" = NULL, "leaseOwner" = NULL, "leaseExpires" = NULL,
    "updatedAt" = @now WHERE id = @id AND ${FENCE}`,
  setCurrentSize: `UPDATE ipfs_downloads SET "currentSize" = @currentSize, "updatedAt" = @now WHERE id = @id AND ${FENCE}`,

  saveProgress: `INSERT INTO ipfs_download_progress ("downloadId", bitmap, "updatedAt") VALUES (@id, @bitmap, @now)
    ON CONFLICT ("downloadId") DO UPDATE SET bitmap = excluded.bitmap, "updatedAt" = excluded."updatedAt"`,
  getProgress: 'SELECT bitmap FROM ipfs_download_progress WHERE "downloadId" = @id',
  putBlock: 'INSERT INTO ipfs_download_blocks ("downloadId", cid, bytes) VALUES (@id, @cid, @bytes) ON CONFLICT DO NOTHING',
  getBlocks: 'SELECT cid, bytes FROM ipfs_download_blocks WHERE "downloadId" = @id',
  getBlock: 'SELECT bytes FROM ipfs_download_blocks WHERE "downloadId" = @id AND cid = @cid',
  getBlockKeys: 'SELECT cid FROM ipfs_download_blocks WHERE "downloadId" = @id',

  takeLease: 'UPDATE ipfs_downloads SET "leaseOwner" = @owner, "leaseExpires" = @expires, "updatedAt" = @now WHERE id = @id',
  renewLease: 'UPDATE ipfs_downloads SET "leaseExpires" = @expires, "updatedAt" = @now WHERE id = @id AND "leaseOwner" = @owner',
  releaseLease: 'UPDATE ipfs_downloads SET "leaseOwner" = NULL, "leaseExpires" = NULL, "updatedAt" = @now WHERE id = @id AND "leaseOwner" = @owner'
} as const

export type StatementName = keyof typeof SQL

/**
 * The SET list of `updateDownload`: each patchable field with its placeholder
 * (`value(field)`), for the fields `params` sets (every field when `all`: the
 * statement then keeps a field whose `set_` flag is 0 as it is).
 */
export function patchAssignments (params: Record<string, BindValue> | 'all', value: (field: string) => string): string[] {
  return PATCH_FIELDS
    .filter(field => params === 'all' || params[`set_${field}`] === 1)
    .map(field => `"${field}" = ${value(field)}`)
}

/** A statement with `$1`, `$2`… in place of `@name`, and the names in that order. */
export interface Positional {
  text: string
  names: readonly string[]
}

/** `sql` with numbered parameters, as PostgreSQL takes them (a name used twice is one number). */
export function positional (sql: string): Positional {
  const names: string[] = []
  const text = sql.replace(/@(\w+)/g, (_match, name: string) => {
    if (!names.includes(name)) names.push(name)
    return `$${names.indexOf(name) + 1}`
  })
  return { text, names }
}

/** The values of `params` in the order `statement` numbers them; a missing one is a bug, not a NULL. */
export function bind (statement: Positional, params: Record<string, unknown>): unknown[] {
  return statement.names.map(name => {
    if (!(name in params)) throw new Error(`No value for @${name}`)
    return params[name]
  })
}

/**
 * PostgreSQL: writes of `ipfs_download_progress` and `ipfs_download_blocks` fenced in the same statement:
 * `owned` is the download's row while `$2` holds its lease, locked against a takeover (FOR SHARE)
 * until the write commits.
 */
export const OWNED = 'WITH owned AS (SELECT id FROM ipfs_downloads WHERE id = $1 AND "leaseOwner" = $2 FOR SHARE)'
/** Forgets a download's progress and kept blocks in one statement. */
export const CLEAR_PROGRESS = `WITH progress AS (DELETE FROM ipfs_download_progress WHERE "downloadId" = $1)
  DELETE FROM ipfs_download_blocks WHERE "downloadId" = $1`

// PostgreSQL's inserts (SQLite's are prepared in its store): one row, and many in one statement.
export function insertValues (p: NewDownloadParams): BindValue[] {
  return [p.cid, p.path, p.target, p.output, p.mode, p.gateways, p.size, p.expectedSha256, p.priority, p.name, p.updateOf,
    p.nameSequence, p.nameValidity, p.nameResolvedAt, p.now]
}

export const INSERT_ONE = `INSERT INTO ipfs_downloads ${INSERT_COLUMNS}
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'pending', 0, 0, $15, $15)
  RETURNING *`
// Many rows in one statement: each column is one array, unnested in input order. The ids are
// drawn as the sorted rows are inserted, so they ascend in input order.
export const INSERT_MANY = `INSERT INTO ipfs_downloads ${INSERT_COLUMNS}
  SELECT t.cid, t.path, t.target, t.output, t.mode, t.gateways, t.size, t.sha256, t.priority, t.name, t.upd, t.seq, t.validity,
    t.resolved, 'pending', 0, 0, $15, $15
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[],
    $9::integer[], $10::text[], $11::bigint[], $12::text[], $13::text[], $14::bigint[])
    WITH ORDINALITY AS t (cid, path, target, output, mode, gateways, size, sha256, priority, name, upd, seq, validity, resolved, ord)
  ORDER BY t.ord
  RETURNING *`
