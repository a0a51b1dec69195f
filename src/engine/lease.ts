/**
 * Leases of the downloads this process works on: the heartbeat that renews a
 * run's lease and acts on a pause or cancel asked through the store, and the
 * asking side, for a download another process holds.
 *
 * @module
 */

import { setTimeout as delay } from 'node:timers/promises'
import { CidgetError, toCidgetError } from '../core/errors.js'
import type { DownloadRecord, DownloadStatus } from '../core/types.js'
import type { Store } from '../store/store.js'

export interface LeaseInit {
  store: Store
  owner: string
  leaseMs: number
  now: () => number
}

/** Releases a run's lease; once more if the first try fails (a dropped connection is replaced by then), else it runs out. */
export async function releaseAfterRun (store: Store, id: number, owner: string): Promise<void> {
  await store.releaseLease(id, owner).catch(async () => { await store.releaseLease(id, owner) }).catch(() => {})
}

export interface HeartbeatInit extends LeaseInit {
  id: number
  heartbeatMs: number
  /** Aborted (with the reason to throw) on a lost lease, or a pause or cancel asked through the store. */
  controller: AbortController
}

/**
 * Renews the lease every `heartbeatMs` and reads the control asked through
 * the store (`pause`, `cancel`). Returns the function that stops it.
 */
export function startHeartbeat (init: HeartbeatInit): () => void {
  const { store, id, owner, leaseMs, heartbeatMs, now, controller } = init
  let renewed = now()
  let lastError = 'no answer from the state'
  const beat = async (): Promise<void> => {
    // Our lease runs out at renewed + leaseMs; past that another process may take the download
    // over. Checked at every beat, also while an earlier renewal still hangs: stop one heartbeat
    // before it (progress is durable).
    if (now() + heartbeatMs >= renewed + leaseMs) {
      controller.abort(new CidgetError('CIDGET_ERR_STATE_UNAVAILABLE',
        `Download ${id} stopped: its lease could not be renewed before it runs out (${lastError})`))
      return
    }
    const at = now()
    let held: boolean
    try {
      held = await store.renewLease(id, owner, leaseMs, at)
    } catch (err) {
      lastError = toCidgetError(err).message
      throw err
    }
    // the lease lasts from the time the renewal asked for, not from when the answer came
    if (held) renewed = at
    if (!held) {
      controller.abort(new CidgetError('CIDGET_ERR_LEASE_HELD', `Lost the lease of download ${id} to another process`))
      return
    }
    const control = (await store.getDownload(id))?.control
    if (control === 'pause') controller.abort(new CidgetError('CIDGET_ERR_PAUSED', `Download ${id} paused by request`))
    if (control === 'cancel') controller.abort(new CidgetError('CIDGET_ERR_CANCELLED', `Download ${id} cancelled by request`))
  }
  const heartbeat = setInterval(() => {
    beat().catch(() => { /* a transient store error: the next beat tries again */ })
  }, heartbeatMs)
  heartbeat.unref()
  return () => { clearInterval(heartbeat) }
}

export interface AskInit {
  store: Store
  now: () => number
  /** How long the holder has to act. */
  waitMs: number
  /** The record now, or CIDGET_ERR_UNKNOWN_DOWNLOAD. */
  get: (id: number) => Promise<DownloadRecord>
}

/**
 * Asks the process holding the lease to pause or cancel (it acts at its next
 * heartbeat) and waits until it has: resolves with the record then, or with
 * undefined when the holder is gone (the request withdrawn: the caller acts
 * itself). Throws LEASE_HELD if the holder does not answer in time.
 */
export async function askHolder (init: AskInit, id: number, what: 'pause' | 'cancel'): Promise<DownloadRecord | undefined> {
  const { store, now } = init
  await store.updateDownload(id, { control: what }, now())
  const deadline = now() + init.waitMs
  const settled: readonly DownloadStatus[] = what === 'pause' ? ['paused', 'success', 'failed', 'cancelled'] : ['cancelled', 'success', 'failed']
  while (true) {
    const rec = await init.get(id)
    if (settled.includes(rec.status) && rec.control === null) return rec
    if (rec.leaseOwner === null || rec.leaseExpires === null || rec.leaseExpires < now()) {
      await store.updateDownload(id, { control: null }, now())
      return undefined
    }
    if (now() > deadline) {
      throw new CidgetError('CIDGET_ERR_LEASE_HELD', `Download ${id} is held by ${rec.leaseOwner}, which did not act on the ${what} request`)
    }
    await delay(100)
  }
}
