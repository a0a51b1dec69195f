/** What the user does: add a download, act on one, give the token. @module */

import { ApiError, api, messageOf, statusOf, storeToken } from './api.js'
import { start } from './connection.js'
import { announce, byId, showMessage } from './dom.js'
import { refreshOne } from './downloads.js'
import { baseName, formatBytes } from './format.js'
import { markDirty, removeRow, renderRow, upsert } from './rows.js'
import { ACTION_LABELS, ACTIONS, state, type Action, type DownloadRecord } from './state.js'

/** The add form's body for `POST /api/downloads`. */
interface AddBody { target: string, output?: string, mode?: string, sha256?: string, limitRate?: string }

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
  const body: AddBody = { target: target.value.trim() }
  if (body.target === '') {
    error.textContent = 'Enter a CID, an /ipfs/ path or a URL.'
    error.hidden = false
    target.setAttribute('aria-invalid', 'true')
    target.focus()
    return
  }
  target.removeAttribute('aria-invalid')
  if (output.value.trim() !== '') body.output = output.value.trim()
  if (mode.value !== '') body.mode = mode.value
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

/** A click on a row's Pause, Resume, Cancel or Remove (one listener for the whole table). */
export async function onAction (ev: MouseEvent): Promise<void> {
  const b = ev.target instanceof Element ? ev.target.closest<HTMLElement>('button[data-action]') : null
  if (b === null) return
  const id = Number(b.dataset.id)
  const action = b.dataset.action
  const row = state.rows.get(id)
  if (row === undefined || row.busy || !isAction(action)) return
  row.busy = true
  renderRow(id)
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
    if (r !== undefined) { r.busy = false; markDirty(id) }
  }
}

/** Shows the service's limit for all downloads. */
function showLimit (rate: number | null): void {
  byId('limit-status').textContent = rate === null ? 'No limit: downloads take what the network gives.' : 'Limit: ' + formatBytes(rate) + '/s for all downloads together.'
}

/** Reads the service's limit (when the page connects). */
export async function refreshLimit (): Promise<void> {
  const { limitRate } = await api<{ limitRate: number | null }>('GET', '/api/limit')
  showLimit(limitRate)
}

/** The limit form: sets the limit for all downloads at once (empty: none). */
export async function onLimit (ev: SubmitEvent): Promise<void> {
  ev.preventDefault()
  const input = byId('limit-input', HTMLInputElement)
  const error = byId('limit-error')
  error.hidden = true
  const value = input.value.trim()
  try {
    const { limitRate } = await api<{ limitRate: number | null }>('PUT', '/api/limit', { limitRate: value === '' ? null : value })
    showLimit(limitRate)
    announce(limitRate === null ? 'Limit removed' : 'Limit set to ' + formatBytes(limitRate) + '/s')
    input.value = ''
  } catch (err) {
    if (statusOf(err) !== 401) {
      error.textContent = 'Not set: ' + messageOf(err)
      error.hidden = false
    }
  }
}

export function onToken (ev: SubmitEvent): void {
  ev.preventDefault()
  const input = byId('token-input', HTMLInputElement)
  const t = input.value.trim()
  if (t === '') return
  storeToken(t)
  input.value = ''
  start()
  refreshLimit().catch(() => {})
}
