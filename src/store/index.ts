import { CidgetError } from '../core/errors.js'
import { SqliteStore } from './sqlite.js'
import type { SqliteStoreOptions } from './sqlite.js'
import type { Store } from './store.js'

export type { DownloadPatch, ListOptions, OwnerLiveness, Store } from './store.js'
export type { SqliteStoreOptions } from './sqlite.js'
export { SqliteStore, DEFAULT_BUSY_TIMEOUT_MS, DEFAULT_LIST_LIMIT } from './sqlite.js'
export { makeOwnerId, isOwnerDead, parseOwnerId } from './owner.js'
export { MIGRATIONS, LATEST_SCHEMA_VERSION } from './migrations.js'
export type { Migration } from './migrations.js'

/** Options of `openStore`; each store uses those that apply to it. */
export type OpenStoreOptions = SqliteStoreOptions

/**
 * Opens the state store at `location`: a `postgres://` or `postgresql://` URL
 * selects PostgreSQL (not available yet), anything else is a SQLite file path
 * (or ':memory:').
 */
export async function openStore (location: string, opts: OpenStoreOptions = {}): Promise<Store> {
  if (/^postgres(ql)?:\/\//i.test(location)) {
    throw new CidgetError('CIDGET_ERR_NOT_AVAILABLE', 'PostgreSQL state is not available yet; use a SQLite file')
  }
  return SqliteStore.open(location, opts)
}
