/**
 * Clearing finished and failed downloads at once (`cidget rm --finished`,
 * `--failed`; `POST /api/downloads/clear`; the dashboard's "Clear finished").
 *
 * @module
 */

import type { DownloadStatus } from '../core/types.js'
import type { Downloader } from './downloader.js'

/** The statuses that can be cleared: downloads that ended. */
export const CLEARABLE_STATUSES = ['success', 'failed', 'cancelled'] as const
export type ClearableStatus = typeof CLEARABLE_STATUSES[number]

/**
 * Removes every download record of these statuses, as `remove` does one by
 * one: the partial data of failed and cancelled downloads is deleted, a
 * finished download's file stays. Returns the ids removed, lowest first. A
 * record another process is using (its lease held) is left alone.
 */
export async function clearDownloads (dl: Downloader, statuses: readonly ClearableStatus[]): Promise<number[]> {
  const removed: number[] = []
  for (const status of new Set<DownloadStatus>(statuses)) {
    let afterId = 0
    for (;;) {
      const page = await dl.list({ status, afterId, limit: 500 })
      if (page.length === 0) break
      for (const rec of page) {
        try {
          await dl.remove(rec.id)
          removed.push(rec.id)
        } catch {
          // resumed or taken by another process since it was listed: not a finished record any more
        }
      }
      afterId = page[page.length - 1]?.id ?? afterId
    }
  }
  return removed.sort((a, b) => a - b)
}
