/**
 * What each message of `/api/events` changes on the page. The payloads are
 * the engine's events (src/core/events.ts) as JSON.
 *
 * @module
 */

import { announce } from './dom.js'
import { refreshOne } from './downloads.js'
import { baseName, statusText } from './format.js'
import { scheduleGateways } from './gateways.js'
import { markDirty, upsert } from './list.js'
import type { RepairEvent, RetryEvent, StatusEvent } from '../../../core/event-types.js'
import { isActive, state, type DownloadRecord, type ProgressData } from './state.js'

/** Takes one parsed message; anything but `{ type, data }` with a known type is ignored. */
export function onEvent (msg: unknown): void {
  if (msg === null || typeof msg !== 'object') return
  const { type, data: d } = msg as { type?: unknown, data?: unknown }
  if (!d) return
  switch (type) {
    case 'download:added': {
      const rec = d as DownloadRecord
      // announced once: by the form that added it, or here when someone else did
      if (!state.downloads.has(rec.id)) announce('Download ' + rec.id + ' added: ' + (baseName(rec.output) || rec.cid))
      upsert(rec)
      break
    }
    case 'status':
      onStatus(d as StatusEvent)
      break
    case 'progress':
      onProgress(d as ProgressData)
      break
    case 'retry': {
      const r = d as RetryEvent
      state.notes.set(r.id, 'Retry (' + r.action + '): ' + (r.code ? r.code + ' ' : '') + r.message)
      markDirty(r.id)
      break
    }
    case 'repaired': {
      const r = d as RepairEvent
      state.notes.set(r.id, 'Repaired ' + r.blocks + ' block(s) that did not match the CID')
      markDirty(r.id)
      break
    }
    case 'resolved':
      // the record now holds the CID the name resolved to
      refreshOne((d as { id: number }).id)
      break
    case 'gateway':
      scheduleGateways(200)
      break
    default:
      break
  }
}

function onStatus (d: StatusEvent): void {
  const rec = state.downloads.get(d.id)
  state.touched.set(d.id, Date.now())
  if (rec !== undefined) {
    if (!isActive(d.status)) state.notes.delete(d.id)
    upsert({ ...rec, status: d.status, error: d.error, errorCode: d.errorCode })
    if (rec.status !== d.status) {
      announce('Download ' + d.id + (rec.output ? ' (' + baseName(rec.output) + ')' : '') + ' is ' + statusText(d.status) + (d.error ? ': ' + d.error : ''))
    }
  }
  // the whole record: size, current size, hash
  refreshOne(d.id)
  scheduleGateways(300)
}

function onProgress (d: ProgressData): void {
  state.live.set(d.id, d)
  const rec = state.downloads.get(d.id)
  if (rec === undefined) {
    refreshOne(d.id)
    return
  }
  markDirty(d.id)
  // the engine stores the size once it has read the root block, and progress may not carry it yet
  if ((d.total === null || d.total === undefined) && (rec.size === null || rec.size === undefined) && !state.sizeAsked.has(d.id)) {
    state.sizeAsked.add(d.id)
    refreshOne(d.id)
  }
}
