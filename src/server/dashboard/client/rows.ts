/**
 * The downloads table: one row per record, redrawn at most once a frame from
 * the record and its latest progress event.
 *
 * @module
 */

import { byId, el } from './dom.js'
import { baseName, formatBytes, formatDuration, hostOf, statusText } from './format.js'
import { ACTION_LABELS, ACTIONS, ALLOWED, isActive, state, type Action, type DownloadRecord, type Row } from './state.js'

interface Progress {
  bytes: number
  total: number | null | undefined
  speed: number
  percent: number | null
  eta: number | null
  gateway: string | null
  files: number | null | undefined
}

/** What the bar and its text show for a record. */
function progressOf (rec: DownloadRecord): Progress {
  const live = state.live.get(rec.id)
  const active = isActive(rec.status)
  let bytes = rec.currentSize || 0
  let total: number | null | undefined = rec.size
  let speed = 0
  if (live !== undefined && active) {
    bytes = live.bytes
    if (live.total !== null && live.total !== undefined) total = live.total
    speed = live.speed || 0
  }
  if (rec.status === 'success') {
    if (total === null || total === undefined) total = bytes
    bytes = total
  }
  let percent: number | null = null
  if (total !== null && total !== undefined && total > 0) percent = Math.min(100, Math.floor((bytes * 100) / total))
  else if (rec.status === 'success') percent = 100
  const eta = active && speed > 0 && total ? (total - bytes) / speed : null
  return {
    bytes,
    total,
    speed,
    percent,
    eta,
    gateway: (live !== undefined && live.gateway) || rec.gateway || null,
    files: live !== undefined ? live.files : null
  }
}

function actionButtons (id: number): { actions: HTMLElement, buttons: Record<Action, HTMLButtonElement> } {
  const actions = el('div', { class: 'actions' })
  const buttons = {} as Record<Action, HTMLButtonElement>
  for (const action of ACTIONS) {
    const b = el('button', {
      type: 'button',
      'data-action': action,
      'data-id': String(id),
      'data-testid': action + '-' + id,
      'aria-label': ACTION_LABELS[action] + ' download ' + id
    }, ACTION_LABELS[action])
    if (action === 'remove') b.title = 'Remove from the list (a finished file stays on disk)'
    buttons[action] = b
    actions.append(b)
  }
  return { actions, buttons }
}

function createRow (id: number): Row {
  const tr = el('tr', { 'data-testid': 'download-row-' + id, 'data-id': String(id) })
  const idCell = el('td', { class: 'num c-id' }, String(id))
  const content = el('td', { class: 'c-content' })
  const name = el('div', { class: 'name', 'data-testid': 'name-' + id })
  const sub = el('div', { class: 'sub mono', 'data-testid': 'target-' + id })
  const out = el('div', { class: 'sub', 'data-testid': 'output-' + id })
  content.append(name, sub, out)
  const statusCell = el('td', { class: 'c-status' })
  const status = el('span', { class: 'status', 'data-testid': 'status-' + id })
  const error = el('div', { class: 'error', 'data-testid': 'error-' + id })
  error.hidden = true
  statusCell.append(status, error)
  const progressCell = el('td', { class: 'c-progress' })
  const bar = el('div', {
    class: 'bar',
    role: 'progressbar',
    'aria-valuemin': '0',
    'aria-valuemax': '100',
    'aria-label': 'Progress of download ' + id,
    'data-testid': 'progress-' + id
  })
  const fill = el('div', { class: 'fill' })
  bar.append(fill)
  const text = el('div', { class: 'progress-text', 'data-testid': 'progress-text-' + id })
  const note = el('div', { class: 'note', 'data-testid': 'note-' + id })
  note.hidden = true
  progressCell.append(bar, text, note)
  const actionsCell = el('td', { class: 'c-actions' })
  const { actions, buttons } = actionButtons(id)
  actionsCell.append(actions)
  tr.append(idCell, content, statusCell, progressCell, actionsCell)
  return { tr, name, sub, out, status, error, bar, fill, text, note, buttons, busy: false }
}

function insertRow (id: number, row: Row): void {
  const body = byId('downloads-body')
  // newest (highest id) first
  let before: Element | null = null
  for (const tr of body.children) {
    if (!(tr instanceof HTMLElement)) continue
    const other = Number(tr.dataset.id)
    if (tr.dataset.id !== undefined && other < id) { before = tr; break }
  }
  body.insertBefore(row.tr, before)
}

function renderBar (row: Row, rec: DownloadRecord, p: Progress): void {
  row.bar.dataset.status = rec.status
  if (p.percent === null) {
    row.bar.classList.toggle('indeterminate', isActive(rec.status))
    row.bar.removeAttribute('aria-valuenow')
    row.bar.setAttribute('aria-valuetext', formatBytes(p.bytes) + ' received')
    row.fill.style.width = ''
  } else {
    row.bar.classList.remove('indeterminate')
    row.bar.setAttribute('aria-valuenow', String(p.percent))
    row.bar.setAttribute('aria-valuetext', p.percent + '%, ' + formatBytes(p.bytes) + ' of ' + formatBytes(p.total))
    row.fill.style.width = p.percent + '%'
  }
  row.bar.dataset.percent = p.percent === null ? '' : String(p.percent)
}

/** "1.00 MiB / 3.00 MiB · 33% · 2.00 MiB/s · ETA 0:01 · via host · 3 files" */
function progressText (rec: DownloadRecord, p: Progress): string {
  const parts = [formatBytes(p.bytes) + (p.total !== null && p.total !== undefined ? ' / ' + formatBytes(p.total) : '')]
  if (p.percent !== null) parts.push(p.percent + '%')
  if (isActive(rec.status)) {
    if (p.speed > 0) parts.push(formatBytes(p.speed) + '/s')
    if (p.eta !== null) parts.push('ETA ' + formatDuration(p.eta))
  }
  if (p.gateway) parts.push('via ' + hostOf(p.gateway))
  if (p.files !== null && p.files !== undefined) parts.push(p.files + (p.files === 1 ? ' file' : ' files'))
  return parts.join(' · ')
}

export function renderRow (id: number): void {
  const rec = state.downloads.get(id)
  if (rec === undefined) return
  let row = state.rows.get(id)
  if (row === undefined) {
    row = createRow(id)
    state.rows.set(id, row)
    insertRow(id, row)
  }
  row.name.textContent = baseName(rec.output) || rec.cid
  row.name.title = rec.output || ''
  // a name shows what it resolved to, once it did
  row.sub.textContent = (rec.target || (rec.cid + (rec.path || ''))) + (rec.name && rec.cid ? ' → /ipfs/' + rec.cid + (rec.path || '') : '')
  row.sub.title = row.sub.textContent
  row.out.textContent = (rec.mode ? rec.mode + ' · ' : '') + (rec.output || '')
  row.out.title = rec.output || ''
  row.status.textContent = statusText(rec.status)
  row.status.dataset.status = rec.status
  const err = rec.error ? (rec.errorCode ? rec.errorCode + ': ' : '') + rec.error : ''
  row.error.textContent = err
  row.error.hidden = err === '' || rec.status === 'success'

  const p = progressOf(rec)
  renderBar(row, rec, p)
  row.text.textContent = progressText(rec, p)
  const note = isActive(rec.status) ? (state.notes.get(id) || '') : ''
  row.note.textContent = note
  row.note.hidden = note === ''

  for (const action of ACTIONS) {
    row.buttons[action].disabled = row.busy || !ALLOWED[action].includes(rec.status)
  }
}

export function removeRow (id: number): void {
  const row = state.rows.get(id)
  if (row !== undefined) row.tr.remove()
  state.rows.delete(id)
  state.downloads.delete(id)
  state.live.delete(id)
  state.notes.delete(id)
  state.dirty.delete(id)
  updateCount()
}

export function updateCount (): void {
  const n = state.downloads.size
  byId('downloads-empty').hidden = n > 0
  let active = 0
  for (const rec of state.downloads.values()) if (isActive(rec.status)) active++
  byId('downloads-count').textContent = n === 0 ? '' : '(' + n + (active > 0 ? ', ' + active + ' active' : '') + ')'
}

export function markDirty (id: number): void {
  state.dirty.add(id)
  if (state.frame !== 0) return
  const flush = (): void => {
    state.frame = 0
    for (const d of state.dirty) renderRow(d)
    state.dirty.clear()
    updateCount()
  }
  // requestAnimationFrame batches bursts of progress events; a hidden tab catches up when shown
  state.frame = document.hidden ? setTimeout(flush, 250) : requestAnimationFrame(flush)
}

/** Takes a record from the service (a list, one fetch, an event or an action's answer). */
export function upsert (rec: DownloadRecord | null | undefined): void {
  if (!rec || typeof rec.id !== 'number') return
  const prev = state.downloads.get(rec.id)
  state.downloads.set(rec.id, rec)
  if (prev === undefined) updateCount()
  markDirty(rec.id)
}
