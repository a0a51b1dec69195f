import { PostgresStore } from './postgres.js'
import type { PostgresStoreOptions } from './postgres.js'
import { SqliteStore } from './sqlite.js'
import type { SqliteStoreOptions } from './sqlite.js'
import type { Store } from './store.js'

export type { DownloadPatch, ListOptions, OwnerLiveness, Store, StoreOptions } from './store.js'
export type { SqliteStoreOptions } from './sqlite.js'
export type { PostgresStoreOptions } from './postgres.js'
export { SqliteStore, DEFAULT_BUSY_TIMEOUT_MS, DEFAULT_LIST_LIMIT } from './sqlite.js'
export { PostgresStore, DEFAULT_POOL_SIZE, DEFAULT_CONNECT_TIMEOUT_MS } from './postgres.js'
export { makeOwnerId, isOwnerDead, parseOwnerId } from './owner.js'
export { MIGRATIONS, LATEST_SCHEMA_VERSION } from './migrations.js'
export type { Migration } from './migrations.js'

/** Options of `openStore`: those of every store; each store uses those that apply to it. */
export type OpenStoreOptions = SqliteStoreOptions & PostgresStoreOptions

/** True when `location` names a PostgreSQL database rather than a SQLite file. */
export function isPostgresUrl (location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location)
}

/**
 * Opens the state store at `location`: a `postgres://` or `postgresql://` URL
 * selects PostgreSQL, anything else is a SQLite file path (or ':memory:').
 */
export async function openStore (location: string, opts: OpenStoreOptions = {}): Promise<Store> {
  if (isPostgresUrl(location)) return PostgresStore.open(location, opts)
  return SqliteStore.open(location, opts)
}
