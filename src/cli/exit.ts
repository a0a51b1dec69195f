import { CidgetError, ERROR_CODES, toCidgetError } from '../core/errors.js'
import type { DownloadRecord } from '../core/types.js'
import { printable } from './format.js'

/** The CLI's exit codes. */
export const EXIT = {
  SUCCESS: 0,
  FAILED: 1,
  USAGE: 2,
  PAUSED: 3
} as const

export type ExitCode = typeof EXIT[keyof typeof EXIT]

/** The one place errors become exit codes. */
export function exitCodeForError (err: unknown): ExitCode {
  const e = toCidgetError(err)
  if (e.code === 'CIDGET_ERR_DISK_FULL' || e.code === 'CIDGET_ERR_PAUSED' || e.code === 'CIDGET_ERR_INTERRUPTED') return EXIT.PAUSED
  switch (ERROR_CODES[e.code].kind) {
    case 'input':
      return EXIT.USAGE
    case 'state':
      return e.code === 'CIDGET_ERR_ATTEMPTS_EXHAUSTED' || e.code === 'CIDGET_ERR_LEASE_HELD' || e.code === 'CIDGET_ERR_STATE_UNAVAILABLE'
        ? EXIT.FAILED
        : EXIT.USAGE
    default:
      return EXIT.FAILED
  }
}

/** The exit code of a download that ended (or stopped) with this record. */
export function exitCodeForRecord (rec: DownloadRecord): ExitCode {
  switch (rec.status) {
    case 'success':
      return EXIT.SUCCESS
    case 'paused':
    case 'pending':
    case 'in_progress':
    case 'resuming':
      return EXIT.PAUSED
    default:
      return EXIT.FAILED
  }
}

/** Worst of several exit codes: failed > paused > success (usage errors never mix with these). */
export function worstExit (codes: ExitCode[]): ExitCode {
  if (codes.includes(EXIT.FAILED)) return EXIT.FAILED
  if (codes.includes(EXIT.PAUSED)) return EXIT.PAUSED
  return EXIT.SUCCESS
}

/** One line for the user: `cidget: <message> [CODE]`. */
export function errorLine (err: unknown): string {
  const e = err instanceof CidgetError ? err : toCidgetError(err)
  return `cidget: ${printable(e.message)} [${e.code}]`
}
