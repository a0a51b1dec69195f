/**
 * Loading records: the whole list (page by page), or one record at a time,
 * without letting an answer older than a status event overwrite it.
 *
 * @module
 */

import { api, statusOf } from './api.js'
import { markLoaded, removeRow, upsert } from './list.js'
import { MAX_PAGES, PAGE_LIMIT, state, type DownloadRecord } from './state.js'

interface Page {
  items?: DownloadRecord[]
  nextCursor?: string | number | null
}

export async function refreshDownloads (): Promise<void> {
  const sentAt = Date.now()
  const items: DownloadRecord[] = []
  let cursor: string | number | null | undefined = null
  let complete = false
  for (let page = 0; page < MAX_PAGES; page++) {
    const q = new URLSearchParams({ limit: String(PAGE_LIMIT) })
    if (cursor !== null && cursor !== undefined) q.set('cursor', String(cursor))
    const r: Page = await api<Page>('GET', '/api/downloads?' + q.toString())
    for (const rec of r.items || []) items.push(rec)
    cursor = r.nextCursor
    if (cursor === null || cursor === undefined || cursor === '') { complete = true; break }
  }
  const seen = new Set<number>()
  for (const rec of items) {
    seen.add(rec.id)
    // a status event that came after this request was sent is newer than the answer
    if ((state.touched.get(rec.id) || 0) > sentAt) continue
    upsert(rec)
  }
  if (complete) {
    for (const id of [...state.downloads.keys()]) {
      if (!seen.has(id) && (state.touched.get(id) || 0) <= sentAt) removeRow(id)
    }
  }
  markLoaded()
}

/** Fetches one record; at most one request per id in flight, repeated if asked again meanwhile. */
export function refreshOne (id: number): void {
  const f = state.fetching.get(id)
  if (f !== undefined) { f.again = true; return }
  const entry = { again: false }
  state.fetching.set(id, entry)
  const sentAt = Date.now()
  api<DownloadRecord>('GET', '/api/downloads/' + id).then((rec) => {
    // a status event after this request was sent asked for another fetch: this answer may be older
    if ((state.touched.get(id) || 0) <= sentAt) upsert(rec)
  }, (err: unknown) => {
    if (statusOf(err) === 404) removeRow(id)
  }).finally(() => {
    state.fetching.delete(id)
    if (entry.again) refreshOne(id)
  })
}
