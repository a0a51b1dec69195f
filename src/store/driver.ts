import { createRequire } from 'node:module'
import type BetterSqlite3 from 'better-sqlite3'

const require = createRequire(import.meta.url)
const major = Number(process.versions.node.split('.')[0])

/**
 * The better-sqlite3 build for this Node.js. Version 12 is the one that runs on
 * Node 20 (13 needs Node 22 and crashes on 20), but on Node 24 its objects can
 * abort the process when a garbage collection finalizes them outside a context
 * ("Assertion failed: (env) != nullptr", https://github.com/WiseLibs/better-sqlite3/issues/1515);
 * version 13, installed as `better-sqlite3-node22`, moved to node-addon-api and
 * fixes that. Both have the same API.
 */
export const Database: typeof BetterSqlite3 = major >= 22
  ? require('better-sqlite3-node22') as typeof BetterSqlite3
  : require('better-sqlite3') as typeof BetterSqlite3

// eslint-disable-next-line @typescript-eslint/no-namespace -- re-exports the driver's namespace of types
export declare namespace Database {
  type Database = BetterSqlite3.Database
  type Statement<P extends unknown[] | object = unknown[], R = unknown> = BetterSqlite3.Statement<P, R>
}
