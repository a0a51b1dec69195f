import { CidgetError } from '../core/errors.js'
import type { DownloadJournal, RestartOptions } from '../core/journal.js'
import type { DownloadRecord } from '../core/types.js'
import { committedAlready } from '../sink/partial.js'
import type { StrategyResult } from './types.js'

/**
 * The steps every strategy starts or ends a run with, written once.
 */

/**
 * The output of a run killed between the rename onto the output and the success
 * record: in place, whole, with the recorded hash (and the expected one). Its
 * result, to return at once; undefined when there is work to do.
 */
export async function committedOutput (record: DownloadRecord): Promise<StrategyResult | undefined> {
  if (record.hash === null || !await committedAlready(record.output, record.size, record.hash, record.expectedSha256)) return undefined
  return { hash: record.hash, size: record.size as number, gateway: record.gateway ?? record.gateways[0] ?? '' }
}

/**
 * Progress an earlier run recorded whose data is not here (the partial deleted,
 * cut short, or written on another machine): forgotten, and the run starts from
 * zero; `why` (what is missing) is said in the record.
 */
export async function restartWithoutPartial (journal: DownloadJournal, why: string, opts: Omit<RestartOptions, 'note'> = {}): Promise<void> {
  await journal.restart({ ...opts, note: `Restarted from the beginning: ${why}` })
}

/** A finished partial file or staging directory: deleted, or renamed onto the output. */
export interface FinishedPartial {
  remove: () => Promise<void>
  commit: () => Promise<void>
}

/**
 * Records the output's hash (and size, when given), then renames the partial
 * onto the output: a run killed after the rename leaves a record that says what
 * the output must hold, and a run that lost its lease stops at the record,
 * before it renames anything.
 */
export async function recordThenRename (journal: DownloadJournal, partial: FinishedPartial, hash: string | null, size?: number): Promise<void> {
  if (hash !== null) await journal.finished(hash, size)
  await partial.commit()
}

/**
 * The end of a run whose bytes are verified against the CID: the SHA-256 the
 * user expects is checked (a mismatch deletes the partial, forgets the progress
 * and throws CIDGET_ERR_HASH_MISMATCH with `mismatch(hash)`), then
 * {@link recordThenRename}. `hash` is null for a directory: nothing to check or record.
 */
export async function checkRecordRename (journal: DownloadJournal, partial: FinishedPartial, expected: string | null,
  hash: string | null, size: number | undefined, mismatch: (hash: string) => string): Promise<void> {
  if (hash !== null && expected !== null && hash !== expected.toLowerCase()) {
    await partial.remove()
    await journal.restart()
    throw new CidgetError('CIDGET_ERR_HASH_MISMATCH', mismatch(hash))
  }
  await recordThenRename(journal, partial, hash, size)
}
