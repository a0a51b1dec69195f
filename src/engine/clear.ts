/**
 * Clearing finished and failed downloads at once (`cidget rm --finished`,
 * `--failed`; `POST /api/downloads/clear`; the dashboard's "Clear finished").
 *
 * @module
 */

import { toCidgetError } from '../core/errors.js'
import type { DownloadStatus } from '../core/types.js'
import type { Downloader } from './downloader.js'

/** The statuses that can be cleared: downloads that ended. */
export const CLEARABLE_STATUSES = ['success', 'failed', 'cancelled'] as const
export type ClearableStatus = typeof CLEARABLE_STATUSES[number]

/** What clearing did: the ids removed, and those left with why (another process holds one, say). */
export interface ClearReport {
  removed: number[]
  skipped: Array<{ id: number, code: string, message: string }>
}

/**
 * Removes every download record of these statuses, as `remove` does one by
 * one: the partial data of failed and cancelled downloads is deleted, a
 * finished download's file stays. Each record is read again just before it
 * is removed, and left alone when it no longer has one of these statuses or
 * this process runs it (resumed since it was listed); one that cannot be
 * removed (another process holds it, its output moved outside the service's
 * directory) is reported in `skipped`. Ids lowest first.
 */
export async function clearDownloads (dl: Downloader, statuses: readonly ClearableStatus[]): Promise<ClearReport> {
  const wanted = new Set<DownloadStatus>(statuses)
  const report: ClearReport = { removed: [], skipped: [] }
  for (const status of wanted) {
    let afterId = 0
    for (;;) {
      const page = await dl.list({ status, afterId, limit: 500 })
      if (page.length === 0) break
      for (const listed of page) {
        const rec = await dl.get(listed.id)
        // no await between these checks and remove's own look at the run queue: a resume cannot slip in
        if (rec === undefined || !wanted.has(rec.status) || dl.runningIds.includes(rec.id)) continue
        try {
          await dl.remove(rec.id)
          report.removed.push(rec.id)
        } catch (err) {
          const e = toCidgetError(err)
          report.skipped.push({ id: rec.id, code: e.code, message: e.message })
        }
      }
      afterId = page[page.length - 1]?.id ?? afterId
    }
  }
  report.removed.sort((a, b) => a - b)
  report.skipped.sort((a, b) => a.id - b.id)
  return report
}
