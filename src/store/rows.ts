import { CidgetError } from '../core/errors.js'
import { MODES, STATUSES } from '../core/types.js'
import type { DownloadRecord, DownloadStatus, Mode, NewDownload, UpdateReport } from '../core/types.js'
import type { DownloadPatch, ListOptions } from './store.js'

/**
 * The one place where rows of `ipfs_downloads` become `DownloadRecord`s and back.
 * Shared by every Store, so integers may arrive as bigint or string (PostgreSQL
 * drivers return BIGINT as strings) as well as numbers.
 */

type IntValue = number | bigint | string

/** A row of `ipfs_downloads` as a driver returns it (columns named as in `DownloadRecord`). */
export interface DownloadRow {
  id: IntValue
  cid: string
  path: string
  target: string
  output: string
  mode: string
  gateways: string
  gateway: string | null
  size: IntValue | null
  expectedSha256: string | null
  status: string
  attempts: IntValue
  lastAttempt: IntValue | null
  currentSize: IntValue
  hash: string | null
  etag: string | null
  error: string | null
  errorCode: string | null
  priority: IntValue
  createdAt: IntValue
  updatedAt: IntValue
  completedAt: IntValue | null
  leaseOwner: string | null
  leaseExpires: IntValue | null
  control: string | null
  name: string | null
  nameSequence: string | null
  nameValidity: string | null
  nameResolvedAt: IntValue | null
  updateOf: IntValue | null
  updateReport: string | null
  limitRate?: IntValue | null
}

function corrupt (id: IntValue, what: string): CidgetError {
  return new CidgetError('CIDGET_ERR_STATE', `Download ${String(id)} in the state store has ${what}`)
}

function int (v: IntValue): number {
  return typeof v === 'number' ? v : Number(v)
}

function intOrNull (v: IntValue | null): number | null {
  return v === null ? null : int(v)
}

export function isStatus (v: unknown): v is DownloadStatus {
  return typeof v === 'string' && (STATUSES as readonly string[]).includes(v)
}

export function isMode (v: unknown): v is Mode {
  return typeof v === 'string' && (MODES as readonly string[]).includes(v)
}

function parseGateways (id: IntValue, text: string): string[] {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw corrupt(id, 'a gateways column that is not JSON')
  }
  if (!Array.isArray(value) || !value.every((g): g is string => typeof g === 'string')) {
    throw corrupt(id, 'a gateways column that is not a list of URLs')
  }
  return value
}

function parseReport (id: IntValue, text: string | null): UpdateReport | null {
  if (text === null) return null
  try {
    const value: unknown = JSON.parse(text)
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as UpdateReport
  } catch {
    // refused below
  }
  throw corrupt(id, 'an updateReport column that is not a JSON object')
}

export function rowToRecord (row: DownloadRow): DownloadRecord {
  if (!isStatus(row.status)) throw corrupt(row.id, `an unknown status '${row.status}'`)
  if (!isMode(row.mode)) throw corrupt(row.id, `an unknown mode '${row.mode}'`)
  return {
    id: int(row.id),
    cid: row.cid,
    path: row.path,
    target: row.target,
    output: row.output,
    mode: row.mode,
    gateways: parseGateways(row.id, row.gateways),
    gateway: row.gateway,
    size: intOrNull(row.size),
    expectedSha256: row.expectedSha256,
    status: row.status,
    attempts: int(row.attempts),
    lastAttempt: intOrNull(row.lastAttempt),
    currentSize: int(row.currentSize),
    hash: row.hash,
    etag: row.etag,
    error: row.error,
    errorCode: row.errorCode,
    priority: int(row.priority),
    createdAt: int(row.createdAt),
    updatedAt: int(row.updatedAt),
    completedAt: intOrNull(row.completedAt),
    leaseOwner: row.leaseOwner,
    leaseExpires: intOrNull(row.leaseExpires),
    control: row.control === 'pause' || row.control === 'cancel' ? row.control : null,
    name: row.name ?? null,
    nameSequence: row.nameSequence ?? null,
    nameValidity: row.nameValidity ?? null,
    nameResolvedAt: intOrNull(row.nameResolvedAt ?? null),
    updateOf: intOrNull(row.updateOf ?? null),
    updateReport: parseReport(row.id, row.updateReport ?? null),
    limitRate: intOrNull(row.limitRate ?? null)
  }
}

export function badOption (message: string): CidgetError {
  return new CidgetError('CIDGET_ERR_BAD_OPTION', message)
}

export function unknownDownload (id: number): CidgetError {
  return new CidgetError('CIDGET_ERR_UNKNOWN_DOWNLOAD', `No download has id ${id}`)
}

/** A fenced write by `owner` for a download whose lease another process holds (or nobody does). */
export function leaseLost (id: number, owner: string): CidgetError {
  return new CidgetError('CIDGET_ERR_LEASE_HELD', `Download ${id} is no longer leased to ${owner}: nothing was recorded`)
}

export function checkStatus (status: unknown): DownloadStatus {
  if (!isStatus(status)) throw badOption(`status must be one of ${STATUSES.join(', ')}, not '${String(status)}'`)
  return status
}

export function checkTtl (ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw badOption(`ttlMs must be a positive number of milliseconds, not ${ttlMs}`)
}

/** The `under` of `claimNext`: a non-empty string, or null for none. */
export function checkUnder (under: string | undefined): string | null {
  if (under === undefined) return null
  if (typeof under !== 'string' || under === '' || under.includes('\0')) throw badOption(`under must be a non-empty path, not ${JSON.stringify(under)}`)
  return under
}

/** Page size of `listDownloads` when no limit is given. */
export const DEFAULT_LIST_LIMIT = 100

/** `listDownloads` options, checked, with defaults filled in. */
export function listParams (opts: ListOptions): { status: DownloadStatus | null, afterId: number, limit: number } {
  const limit = opts.limit ?? DEFAULT_LIST_LIMIT
  const afterId = opts.afterId ?? 0
  if (!Number.isInteger(limit) || limit < 1) throw badOption(`limit must be a whole number ≥ 1, not ${limit}`)
  if (!Number.isInteger(afterId)) throw badOption(`afterId must be a download id, not ${afterId}`)
  return { status: opts.status === undefined ? null : checkStatus(opts.status), afterId, limit }
}

/**
 * The argument of `createDownloads`: a list, or CIDGET_ERR_BAD_OPTION; with
 * `exclusive`, two entries with one output are CIDGET_ERR_OUTPUT_IN_USE.
 */
export function checkList (inits: readonly NewDownload[], exclusive = false): readonly NewDownload[] {
  if (!Array.isArray(inits)) throw badOption('createDownloads takes a list of downloads')
  if (exclusive) {
    const seen = new Set<string>()
    for (const init of inits) {
      if (seen.has(init.output)) throw new CidgetError('CIDGET_ERR_OUTPUT_IN_USE', `Two downloads of the list write to ${init.output}`, { output: init.output })
      seen.add(init.output)
    }
  }
  return inits
}

/** CIDGET_ERR_OUTPUT_IN_USE: the unfinished download `clash` writes to `output` already. */
export function outputInUse (clash: { id: IntValue, target: string }, output: string): CidgetError {
  return new CidgetError('CIDGET_ERR_OUTPUT_IN_USE', `Download ${String(clash.id)} (${clash.target}) also writes to ${output}`, { output })
}

function checkGateways (gateways: unknown): string[] {
  if (!Array.isArray(gateways) || !gateways.every((g): g is string => typeof g === 'string')) {
    throw badOption('gateways must be a list of gateway URLs')
  }
  return gateways
}

/** Values bound when inserting a new download (names match the insert's parameters). */
export interface NewDownloadParams {
  cid: string
  path: string
  target: string
  output: string
  mode: Mode
  gateways: string
  size: number | null
  expectedSha256: string | null
  priority: number
  name: string | null
  updateOf: number | null
  nameSequence: string | null
  nameValidity: string | null
  nameResolvedAt: number | null
  now: number
}

export function newDownloadParams (init: NewDownload, now: number): NewDownloadParams {
  if (!isMode(init.mode)) throw badOption(`mode must be one of ${MODES.join(', ')}, not '${String(init.mode)}'`)
  return {
    cid: init.cid,
    path: init.path,
    target: init.target,
    output: init.output,
    mode: init.mode,
    gateways: JSON.stringify(checkGateways(init.gateways)),
    size: init.size ?? null,
    expectedSha256: init.expectedSha256 ?? null,
    priority: init.priority ?? 0,
    name: init.name ?? null,
    updateOf: init.updateOf ?? null,
    nameSequence: init.nameSequence ?? null,
    nameValidity: init.nameValidity ?? null,
    nameResolvedAt: init.nameResolvedAt ?? null,
    now
  }
}

/** Every field `updateDownload` may set, in a fixed order (the update statement is built from it). */
export const PATCH_FIELDS = [
  'status', 'attempts', 'lastAttempt', 'currentSize', 'hash', 'etag', 'error', 'errorCode',
  'gateway', 'gateways', 'size', 'completedAt', 'expectedSha256', 'priority', 'control',
  'cid', 'path', 'nameSequence', 'nameValidity', 'nameResolvedAt', 'updateReport', 'limitRate'
] as const satisfies ReadonlyArray<keyof DownloadPatch>

// Fails to compile when DownloadPatch gains a field that PATCH_FIELDS does not list.
type MissingPatchField = Exclude<keyof DownloadPatch, typeof PATCH_FIELDS[number]>
const _allPatchFieldsListed: [MissingPatchField] extends [never] ? true : MissingPatchField = true

export type PatchField = typeof PATCH_FIELDS[number]
export type BindValue = string | number | null

/**
 * A patch as bound values: for each field `f`, `set_f` is 1 when the patch sets it
 * (a key present with a value other than undefined) and `f` is the value to store.
 * Keys that are not patchable are refused rather than silently dropped.
 */
export function patchParams (patch: DownloadPatch): Record<string, BindValue> {
  for (const key of Object.keys(patch)) {
    if (!(PATCH_FIELDS as readonly string[]).includes(key)) {
      throw badOption(`updateDownload cannot set '${key}'; it sets only ${PATCH_FIELDS.join(', ')}`)
    }
  }
  const params: Record<string, BindValue> = {}
  for (const field of PATCH_FIELDS) {
    const value = patch[field]
    params[`set_${field}`] = value === undefined ? 0 : 1
    if (value === undefined) {
      params[field] = null
    } else if (field === 'gateways') {
      params[field] = JSON.stringify(checkGateways(value))
    } else if (field === 'updateReport') {
      params[field] = value === null ? null : JSON.stringify(value)
    } else if (field === 'status' && !isStatus(value)) {
      throw badOption(`status must be one of ${STATUSES.join(', ')}, not '${String(value)}'`)
    } else {
      params[field] = value as BindValue
    }
  }
  return params
}
