/**
 * What the user does: add a download, act on one (asking first when that
 * deletes data), clear the finished or failed ones, give the token.
 *
 * @module
 */

import { ApiError, api, messageOf, statusOf, storeToken } from './api.js'
import { ask, cancelQuestion, clearQuestion, removeQuestion } from './confirm.js'
import { start } from './connection.js'
import { announce, byId, showMessage } from './dom.js'
import { refreshOne } from './downloads.js'
import { baseName, plural } from './format.js'
import { markDirty, removeRow, toggleDetail, upsert } from './list.js'
import { ACTION_LABELS, ACTIONS, FILTER_OF, state, type Action, type DownloadRecord } from './state.js'

/** The add form's body for `POST /api/downloads`. */
interface AddBody { target: string, output?: string, mode: string, sha256?: string, limitRate?: string }

export async function onAdd (ev: SubmitEvent): Promise<void> {
  ev.preventDefault()
  const target = byId('add-target', HTMLInputElement)
  const output = byId('add-output', HTMLInputElement)
  const mode = byId('add-mode', HTMLSelectElement)
  const sha = byId('add-sha256', HTMLInputElement)
  const limit = byId('add-limit', HTMLInputElement)
  const error = byId('add-error')
  const submit = byId('add-submit', HTMLButtonElement)
  error.hidden = true
  const body: AddBody = { target: target.value.trim(), mode: mode.value }
  if (body.target === '') {
    error.textContent = 'Enter a CID, an /ipfs/ path or a URL.'
    error.hidden = false
    target.setAttribute('aria-invalid', 'true')
    target.focus()
    return
  }
  target.removeAttribute('aria-invalid')
  if (output.value.trim() !== '') body.output = output.value.trim()
  if (sha.value.trim() !== '') body.sha256 = sha.value.trim().toLowerCase()
  if (limit.value.trim() !== '') body.limitRate = limit.value.trim()
  submit.disabled = true
  try {
    const rec = await api<DownloadRecord>('POST', '/api/downloads', body)
    if (!state.downloads.has(rec.id)) announce('Download ' + rec.id + ' added: ' + (baseName(rec.output) || rec.cid))
    upsert(rec)
    target.value = ''
    output.value = ''
    sha.value = ''
    limit.value = ''
    target.focus()
  } catch (err) {
    if (statusOf(err) !== 401) {
      const code = err instanceof ApiError ? err.code : undefined
      error.textContent = 'Not added: ' + messageOf(err) + (code && code !== 'NETWORK' ? ' (' + code + ')' : '')
      error.hidden = false
    }
  } finally {
    submit.disabled = false
  }
}

function isAction (s: string | undefined): s is Action {
  return (ACTIONS as readonly (string | undefined)[]).includes(s)
}

/** A click in the table: a row's action, or an error's code (which opens its message). */
export async function onTableClick (ev: MouseEvent): Promise<void> {
  const target = ev.target instanceof Element ? ev.target : null
  const code = target?.closest<HTMLElement>('button.code[data-id]')
  if (code) {
    toggleDetail(Number(code.dataset.id))
    return
  }
  const b = target?.closest<HTMLElement>('button[data-action]')
  if (!b) return
  const action = b.dataset.action
  if (isAction(action)) await act(Number(b.dataset.id), action)
}

/** Pause, Resume, Cancel or Remove one download; Cancel and Remove ask first. */
async function act (id: number, action: Action): Promise<void> {
  const row = state.rows.get(id)
  const rec = state.downloads.get(id)
  if (row === undefined || rec === undefined || row.busy) return
  if (action === 'cancel' || action === 'remove') {
    if (!await ask(action === 'cancel' ? cancelQuestion(rec) : removeQuestion(rec))) return
  }
  row.busy = true
  markDirty(id)
  try {
    if (action === 'remove') {
      await api('DELETE', '/api/downloads/' + id)
      removeRow(id)
      announce('Download ' + id + ' removed')
      return
    }
    upsert(await api<DownloadRecord>('POST', '/api/downloads/' + id + '/' + action))
  } catch (err) {
    const status = statusOf(err)
    const code = err instanceof ApiError ? err.code : undefined
    if (status === 404) removeRow(id)
    else if (status !== 401) showMessage(ACTION_LABELS[action] + ' download ' + id + ' failed: ' + messageOf(err) + (code ? ' (' + code + ')' : ''))
    refreshOne(id)
  } finally {
    const r = state.rows.get(id)
    if (r !== undefined) r.busy = false
    markDirty(id)
  }
}

/** "Clear finished" (the successful downloads) or "Clear failed" (failed and cancelled ones): asks, then `POST /api/downloads/clear`. */
export async function onClear (which: 'finished' | 'failed'): Promise<void> {
  const statuses = which === 'finished' ? ['success'] : ['failed', 'cancelled']
  const records: DownloadRecord[] = []
  for (const rec of state.downloads.values()) if (FILTER_OF[rec.status] === (which === 'finished' ? 'done' : 'failed')) records.push(rec)
  if (records.length === 0 || !await ask(clearQuestion(which, records))) return
  const button = byId(which === 'finished' ? 'clear-finished' : 'clear-failed', HTMLButtonElement)
  button.disabled = true
  try {
    const { removed, skipped } = await api<{ removed: number[], skipped: Array<{ id: number, message: string }> }>('POST', '/api/downloads/clear', { status: statuses })
    for (const id of removed) removeRow(id)
    announce('Cleared ' + plural(removed.length, 'download'))
    // one the service could not remove (another process holds it, its output moved): said, not hidden
    if (skipped.length > 0) showMessage(plural(skipped.length, 'download') + ' left: ' + skipped.slice(0, 3).map(s => '#' + s.id + ' ' + s.message).join('; '))
  } catch (err) {
    if (statusOf(err) !== 401) showMessage('Clear ' + which + ' failed: ' + messageOf(err))
  } finally {
    // the counts disable it again at the next frame if nothing is left to clear
    button.disabled = false
  }
}

export function onToken (ev: SubmitEvent): void {
  ev.preventDefault()
  const input = byId('token-input', HTMLInputElement)
  const t = input.value.trim()
  if (t === '') return
  storeToken(t)
  input.value = ''
  const submit = byId('token-submit', HTMLButtonElement)
  submit.disabled = true
  submit.textContent = 'Checking…'
  start()
}
