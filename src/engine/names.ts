/**
 * A download of an /ipns/ name is resolved when a run first starts it (by the
 * worker that claimed it, in a fleet), and what it resolved to is recorded:
 * its runs, resumes included, fetch that CID and never jump to a newer one.
 *
 * @module
 */

import { CidgetError } from '../core/errors.js'
import type { CidgetEvents, TypedEmitter } from '../core/events.js'
import type { DownloadRecord, Mode, NewDownload } from '../core/types.js'
import type { Target } from '../target/parse.js'
import type { HealthRegistry } from '../gateways/health.js'
import type { HttpClient } from '../gateways/http.js'
import { NameResolver, type Resolution } from '../names/resolve.js'
import type { Journal } from './journal.js'
import type { Settings } from './options.js'

export interface NameDeps {
  http: HttpClient
  settings: Settings
  events: TypedEmitter<CidgetEvents>
  health: HealthRegistry
}

/** `/ipns/NAME/a/b` → NAME and `/a/b`. */
export function splitName (name: string): { name: string, rest: string } {
  const body = name.slice('/ipns/'.length)
  const slash = body.indexOf('/')
  return slash === -1 ? { name: body, rest: '' } : { name: body.slice(0, slash), rest: body.slice(slash) }
}

/**
 * Resolves `record.name` through the download's gateways, the routers and the
 * DNS resolvers of `deps.settings`, and records the result through `journal`
 * (fenced on the lease). A source that fails or sends a record that does not
 * verify is backed off in the process's gateway health (a 404 is no fault).
 */
export async function resolveName (record: DownloadRecord & { name: string }, journal: Journal, deps: NameDeps, signal: AbortSignal): Promise<Resolution> {
  const { settings } = deps
  const resolver = new NameResolver({
    http: deps.http,
    gateways: record.gateways,
    routers: settings.routers,
    dnsResolvers: settings.dnsResolvers,
    ...(settings.nameSettleMs === undefined ? {} : { settleMs: settings.nameSettleMs }),
    now: settings.now,
    onProblem: (source: string, err: CidgetError) => {
      if (err.code === 'CIDGET_ERR_NOT_FOUND') return
      deps.health.get(source).backOff(err)
      deps.events.emit('cidget:gateway', {
        id: record.id,
        gateway: source,
        state: err.code === 'CIDGET_ERR_IPNS_RECORD_INVALID' ? 'dropped' : 'blocked',
        reason: err.message
      })
    }
  })
  const { name, rest } = splitName(record.name)
  const r = await resolver.resolve(name, rest, signal)
  await journal.resolved({ cid: r.cid, path: r.path, nameSequence: r.sequence, nameValidity: r.validity, nameResolvedAt: r.resolvedAt })
  deps.events.emit('cidget:download:resolved', { id: record.id, name: record.name, cid: r.cid, path: r.path, sequence: r.sequence, validity: r.validity })
  return r
}

/** A name (`/ipns/NAME/rest`) resolved now through `gateways` and the settings' routers and resolvers. */
export async function resolveNow (target: string, gateways: string[], http: HttpClient, settings: Settings): Promise<Resolution> {
  const { name, rest } = splitName(target)
  return await new NameResolver({
    http,
    gateways,
    routers: settings.routers,
    dnsResolvers: settings.dnsResolvers,
    ...(settings.nameSettleMs === undefined ? {} : { settleMs: settings.nameSettleMs }),
    now: settings.now
  }).resolve(name, rest)
}

/**
 * Whether `now` is older than what `current` (a download of the same name)
 * resolved to: a lower sequence of the same key's record (a source that
 * withheld the newer one). A DNSLink name may lead to another key: not compared.
 */
export function olderRecord (current: DownloadRecord, name: string, now: Pick<Resolution, 'sequence'>): boolean {
  if (current.name !== name || !/^\/ipns\/k[^./]+(\/|$)/.test(name)) return false
  if (current.nameSequence === null || now.sequence === null) return false
  return BigInt(now.sequence) < BigInt(current.nameSequence)
}

/** What an update is brought to: a name's resolution, or a CID and path. */
export type UpdateTo = Pick<Resolution, 'cid' | 'path' | 'sequence' | 'validity'> & { resolvedAt: number | null }
/** How the target of an update was added. */
export interface UpdateAdd { target: Target, output: string, mode: Mode, gateways: string[], sha256: string | null, priority: number }

/**
 * The record of a download that brings the finished download `done`'s output
 * to the version `now` (verified mode: what the output holds of it is kept, the
 * rest fetched, the two swapped when complete). Other modes: CIDGET_ERR_OUTPUT_EXISTS.
 */
export function updateOf (done: DownloadRecord, now: UpdateTo, add: UpdateAdd): NewDownload {
  const { target, output } = add
  if (add.mode !== 'verified' || done.mode !== 'verified') {
    throw new CidgetError('CIDGET_ERR_OUTPUT_EXISTS',
      `${output} holds ${done.name ?? done.target} (/ipfs/${done.cid}${done.path}); only verified mode brings it to another version ` +
      `(/ipfs/${now.cid}${now.path}). Pass --force to download that over it, or choose another path with -o`)
  }
  return {
    cid: now.cid,
    path: now.path,
    name: target.name ?? null,
    nameSequence: now.sequence,
    nameValidity: now.validity,
    nameResolvedAt: now.resolvedAt,
    updateOf: done.id,
    target: target.input,
    output,
    mode: add.mode,
    gateways: add.gateways,
    expectedSha256: add.sha256,
    priority: add.priority
  }
}
