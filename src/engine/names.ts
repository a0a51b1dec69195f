/**
 * A download of an /ipns/ name is resolved when a run first starts it (by the
 * worker that claimed it, in a fleet), and what it resolved to is recorded:
 * its runs, resumes included, fetch that CID and never jump to a newer one.
 *
 * @module
 */

import type { CidgetError } from '../core/errors.js'
import type { CidgetEvents, TypedEmitter } from '../core/events.js'
import type { DownloadRecord } from '../core/types.js'
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

/**
 * A finished download of a name whose output is there: the name resolved
 * again through `gateways` and the settings' routers and resolvers; undefined
 * while it points to the same CID and path (nothing to do), else what it
 * points to now.
 */
export async function nameMoved (done: DownloadRecord & { name: string }, gateways: string[], http: HttpClient, settings: Settings): Promise<Resolution | undefined> {
  const { name, rest } = splitName(done.name)
  const now = await new NameResolver({
    http,
    gateways,
    routers: settings.routers,
    dnsResolvers: settings.dnsResolvers,
    ...(settings.nameSettleMs === undefined ? {} : { settleMs: settings.nameSettleMs }),
    now: settings.now
  }).resolve(name, rest)
  return now.cid === done.cid && now.path === done.path ? undefined : now
}
