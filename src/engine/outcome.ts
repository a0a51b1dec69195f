/**
 * The engine's writes of a download's status: under way, and the outcome
 * (success, paused, failed, cancelled), with the mapping of a run's failure
 * onto one of them. Every such write of the engine goes through here, and
 * through the download's Journal: each is made only while this process holds
 * the lease.
 *
 * @module
 */

import type { CidgetError } from '../core/errors.js'
import type { DownloadRecord, DownloadStatus } from '../core/types.js'
import { removePartial } from '../sink/partial.js'
import type { StrategyResult } from '../strategies/types.js'
import type { Journal } from './journal.js'

/** The status written, and the error it carries. */
export interface Outcome {
  status: DownloadStatus
  error: string | null
  errorCode: string | null
}

/** A run under way: in_progress or resuming, the last error cleared. */
export async function recordActive (journal: Journal, status: DownloadStatus): Promise<Outcome> {
  await journal.active(status)
  return { status, error: null, errorCode: null }
}

/** A finished run: its last gateway, the request cleared, then the size and hash with status success. */
export async function recordSuccess (journal: Journal, result: StrategyResult): Promise<Outcome> {
  await journal.succeed(result.hash, result.size, result.gateway)
  return { status: 'success', error: null, errorCode: null }
}

export async function recordPaused (journal: Journal, error: string | null, errorCode: string | null): Promise<Outcome> {
  await journal.pause(error, errorCode)
  return { status: 'paused', error, errorCode }
}

export async function recordFailed (journal: Journal, error: string, errorCode: string): Promise<Outcome> {
  await journal.fail(error, errorCode)
  return { status: 'failed', error, errorCode }
}

/**
 * Status cancelled, the partial data and its progress gone. `afterRun`: a
 * run's leftovers are cleaned as far as they can be, the status written anyway.
 */
export async function recordCancelled (journal: Journal, output: string, afterRun: boolean): Promise<Outcome> {
  if (afterRun) await removePartial(output).catch(() => {})
  else await removePartial(output)
  await journal.cancel({ bestEffort: afterRun })
  return { status: 'cancelled', error: null, errorCode: null }
}

/**
 * Maps a run's failure onto the record's status and writes it; undefined when
 * the status is not this run's to write.
 */
export async function recordRunFailure (journal: Journal, record: DownloadRecord, err: CidgetError): Promise<Outcome | undefined> {
  // another process owns it now: its status is not ours to write (a pause or cancel asked for stays asked)
  if (err.code === 'CIDGET_ERR_LEASE_HELD') return undefined
  // not the download's fault: it stays as it is (its progress is durable), and once the lease
  // is released here, or has run out, the queue hands it out again
  if (err.code === 'CIDGET_ERR_STATE_UNAVAILABLE') return undefined
  // a run that went on past the end of its lease (the process was stopped, the machine starved)
  // may have lost the download to another process meanwhile: then neither its failure nor a pause
  // or cancel of it is ours to write (a cancel would delete the partial data the other one uses)
  if (!await journal.holdsLease()) return undefined
  await journal.clearControl()
  switch (err.code) {
    case 'CIDGET_ERR_CANCELLED':
      return await recordCancelled(journal, record.output, true)
    case 'CIDGET_ERR_PAUSED':
      return await recordPaused(journal, null, null)
    case 'CIDGET_ERR_INTERRUPTED':
    case 'CIDGET_ERR_DISK_FULL':
      // INTERRUPTED: paused by a shutdown, not by a person (`resumeAll({ interruptedOnly: true })` and the queue pick it up)
      return await recordPaused(journal, err.message, err.code)
    default:
      return await recordFailed(journal, err.message, err.code)
  }
}
