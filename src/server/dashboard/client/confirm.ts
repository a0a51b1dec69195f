/**
 * The question asked before anything that deletes data (cancel, remove,
 * clear): a modal `<dialog>` in the page that says what goes, with the safe
 * answer focused first. Escape, or "Keep", answers no.
 *
 * @module
 */

import { byId } from './dom.js'
import { baseName, formatBytes, plural } from './format.js'
import { isActive, state, type DownloadRecord } from './state.js'

export interface Question {
  title: string
  text: string
  /** The label of the button that goes ahead. */
  confirm: string
}

let answer: ((yes: boolean) => void) | null = null

/** Wires the dialog's buttons; called once by main.ts. */
export function initConfirm (): void {
  const dialog = byId('confirm', HTMLDialogElement)
  byId('confirm-yes').addEventListener('click', () => { dialog.close('yes') })
  byId('confirm-no').addEventListener('click', () => { dialog.close('no') })
  dialog.addEventListener('close', () => {
    const done = answer
    answer = null
    done?.(dialog.returnValue === 'yes')
  })
}

/** Asks `q`; true when the user goes ahead. A second question while one is open is answered no. */
export async function ask (q: Question): Promise<boolean> {
  const dialog = byId('confirm', HTMLDialogElement)
  if (dialog.open) return false
  byId('confirm-title').textContent = q.title
  byId('confirm-text').textContent = q.text
  byId('confirm-yes').textContent = q.confirm
  dialog.returnValue = ''
  const result = new Promise<boolean>((resolve) => { answer = resolve })
  dialog.showModal()
  byId('confirm-no').focus()
  return await result
}

/** The bytes of a download that are on disk: the latest progress while it runs, else what its record counts. */
export function bytesOnDisk (rec: DownloadRecord): number {
  const live = state.live.get(rec.id)
  const recorded = rec.currentSize || 0
  return live !== undefined && isActive(rec.status) ? Math.max(live.bytes, recorded) : recorded
}

function label (rec: DownloadRecord): string {
  const name = baseName(rec.output) || rec.cid
  return 'download ' + rec.id + (name ? ' (' + name + ')' : '')
}

/** "Cancel download 5 (x.bin) and delete its 72.0 MiB of partial data?" */
export function cancelQuestion (rec: DownloadRecord): Question {
  const bytes = bytesOnDisk(rec)
  return {
    title: 'Cancel download ' + rec.id + '?',
    text: bytes > 0
      ? 'Cancel ' + label(rec) + ' and delete its ' + formatBytes(bytes) + ' of partial data? It cannot be resumed afterwards.'
      : 'Cancel ' + label(rec) + '? Nothing of it has been downloaded yet.',
    confirm: bytes > 0 ? 'Cancel and delete' : 'Cancel download'
  }
}

/** Removing a record: a finished file stays; a failed download's partial data goes. */
export function removeQuestion (rec: DownloadRecord): Question {
  const bytes = rec.status === 'success' ? 0 : bytesOnDisk(rec)
  let text: string
  if (rec.status === 'success') text = 'Remove ' + label(rec) + ' from the list? Its file stays on disk at ' + rec.output + '.'
  else if (bytes > 0) text = 'Remove ' + label(rec) + ' and delete its ' + formatBytes(bytes) + ' of partial data?'
  else text = 'Remove ' + label(rec) + ' from the list? Nothing of it is on disk.'
  return { title: 'Remove download ' + rec.id + '?', text, confirm: bytes > 0 ? 'Remove and delete' : 'Remove' }
}

/** Clearing every finished download, or every failed and cancelled one. */
export function clearQuestion (which: 'finished' | 'failed', records: readonly DownloadRecord[]): Question {
  if (which === 'finished') {
    return {
      title: 'Clear finished downloads?',
      text: 'Remove ' + plural(records.length, 'finished download') + ' from the list? Their files stay on disk.',
      confirm: 'Clear finished'
    }
  }
  let bytes = 0
  for (const rec of records) if (rec.status === 'failed') bytes += rec.currentSize || 0
  return {
    title: 'Clear failed downloads?',
    text: 'Remove ' + plural(records.length, 'failed or cancelled download') + ' from the list' +
      (bytes > 0 ? ' and delete their ' + formatBytes(bytes) + ' of partial data?' : '? None of them has data on disk.'),
    confirm: bytes > 0 ? 'Clear and delete' : 'Clear failed'
  }
}
