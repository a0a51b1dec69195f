/**
 * One download's row: built when it comes into the page shown, redrawn from
 * the record and its latest progress event. An error shows as a short code
 * that opens a row under it with the whole message.
 *
 * @module
 */

import { el } from './dom.js'
import { baseName, formatBytes, formatDuration, hostOf, shortCode, statusText } from './format.js'
import { ACTION_LABELS, ACTIONS, ALLOWED, isActive, state, type Action, type DownloadRecord, type Row } from './state.js'

export interface Progress {
  bytes: number
  total: number | null | undefined
  /** While the total is unknown: what a directory's root declares (unverified), shown as `~`. */
  estimate: number | null
  speed: number
  percent: number | null
  eta: number | null
  gateway: string | null
  files: number | null | undefined
}

/** What the bar and its text show for a record. */
export function progressOf (rec: DownloadRecord): Progress {
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
    estimate: live !== undefined && active && (total === null || total === undefined) ? live.estimate ?? null : null,
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
      'data-testid': action + '-' + id
    }, ACTION_LABELS[action])
    if (action === 'cancel' || action === 'remove') b.classList.add('danger-text')
    b.hidden = true
    buttons[action] = b
    actions.append(b)
  }
  return { actions, buttons }
}

/** The status cell: the status, and an error's code as a button that shows the message under the row. */
function statusCell (id: number): { cell: HTMLElement, status: HTMLElement, code: HTMLButtonElement } {
  const cell = el('td', { class: 'c-status' })
  const status = el('span', { class: 'status', 'data-testid': 'status-' + id })
  const code = el('button', {
    type: 'button',
    class: 'code',
    'aria-expanded': 'false',
    'aria-controls': 'detail-' + id,
    'data-id': String(id),
    'data-testid': 'error-code-' + id
  })
  code.hidden = true
  cell.append(status, code)
  return { cell, status, code }
}

/** The row under a download's row with its error: shown when the code is pressed. */
function detailRow (id: number): { detail: HTMLTableRowElement, detailCode: HTMLElement, detailText: HTMLElement } {
  const detail = el('tr', { class: 'detail', id: 'detail-' + id, 'data-testid': 'error-detail-' + id })
  const td = el('td', { colspan: '5' })
  const detailCode = el('code', { class: 'detail-code' })
  const detailText = el('p', { class: 'detail-text', 'data-testid': 'error-' + id })
  td.append(detailCode, detailText)
  detail.append(td)
  return { detail, detailCode, detailText }
}

export function createRow (id: number): Row {
  const tr = el('tr', { 'data-testid': 'download-row-' + id, 'data-id': String(id) })
  const idCell = el('td', { class: 'num c-id' }, String(id))
  const content = el('td', { class: 'c-content' })
  const name = el('div', { class: 'name', 'data-testid': 'name-' + id })
  const sub = el('div', { class: 'sub mono', 'data-testid': 'target-' + id })
  const out = el('div', { class: 'sub', 'data-testid': 'output-' + id })
  content.append(name, sub, out)
  const { cell, status, code } = statusCell(id)
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
  tr.append(idCell, content, cell, progressCell, actionsCell)
  return { tr, name, sub, out, status, code, ...detailRow(id), bar, fill, text, note, buttons, busy: false }
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
  const of = p.total !== null && p.total !== undefined ? ' / ' + formatBytes(p.total) : p.estimate !== null ? ' / ~' + formatBytes(p.estimate) : ''
  const parts = [formatBytes(p.bytes) + of]
  if (p.percent !== null) parts.push(p.percent + '%')
  if (isActive(rec.status)) {
    if (p.speed > 0) parts.push(formatBytes(p.speed) + '/s')
    if (p.eta !== null) parts.push('ETA ' + formatDuration(p.eta))
  }
  if (p.gateway) parts.push('via ' + hostOf(p.gateway))
  if (p.files !== null && p.files !== undefined) parts.push(p.files + (p.files === 1 ? ' file' : ' files'))
  return parts.join(' · ')
}

/** The name, the target (and what a name resolved to), the mode and the output. */
function renderContent (row: Row, rec: DownloadRecord): void {
  row.name.textContent = baseName(rec.output) || rec.cid
  row.name.title = rec.output || ''
  // a name shows what it resolved to, once it did
  row.sub.textContent = (rec.target || (rec.cid + (rec.path || ''))) + (rec.name && rec.cid ? ' → /ipfs/' + rec.cid + (rec.path || '') : '')
  row.sub.title = row.sub.textContent
  row.out.textContent = (rec.mode ? rec.mode + ' · ' : '') + (rec.output || '')
  row.out.title = rec.output || ''
}

/** The status, and the error as a short code whose message opens under the row. */
function renderStatus (id: number, row: Row, rec: DownloadRecord): void {
  row.status.textContent = statusText(rec.status)
  row.status.dataset.status = rec.status
  const hasError = Boolean(rec.error) && rec.status !== 'success'
  const open = hasError && state.expanded.has(id)
  row.code.hidden = !hasError
  row.code.textContent = shortCode(rec.errorCode) + (open ? ' ▾' : ' ▸')
  row.code.title = (rec.errorCode || 'Error') + ': ' + (open ? 'hide' : 'show') + ' the message'
  row.code.setAttribute('aria-expanded', String(open))
  row.code.setAttribute('aria-label', 'Error ' + (rec.errorCode || '') + ' of download ' + id + (open ? ', hide the message' : ', show the message'))
  row.detailCode.textContent = rec.errorCode || 'Error'
  row.detailText.textContent = rec.error || ''
  row.tr.classList.toggle('has-detail', open)
}

export function renderRow (id: number): void {
  const rec = state.downloads.get(id)
  const row = state.rows.get(id)
  if (rec === undefined || row === undefined) return
  renderContent(row, rec)
  renderStatus(id, row, rec)
  const p = progressOf(rec)
  renderBar(row, rec, p)
  row.text.textContent = progressText(rec, p)
  const note = isActive(rec.status) ? (state.notes.get(id) || '') : ''
  row.note.textContent = note
  row.note.hidden = note === ''

  const label = baseName(rec.output) || rec.cid
  for (const action of ACTIONS) {
    const b = row.buttons[action]
    b.hidden = !ALLOWED[action].includes(rec.status)
    b.disabled = row.busy
    // a failed download is tried again
    b.textContent = action === 'resume' && rec.status === 'failed' ? 'Retry' : ACTION_LABELS[action]
    b.setAttribute('aria-label', b.textContent + ' download ' + id + (label ? ' (' + label + ')' : ''))
  }
}
