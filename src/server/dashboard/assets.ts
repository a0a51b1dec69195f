/**
 * The web dashboard: one HTML page, one stylesheet and one small vanilla JS
 * module, kept as string constants so that `tsc` ships them in `dist/` with
 * no copy or bundling step. The page loads nothing from elsewhere (no CDN, no
 * web fonts), builds its DOM with `textContent` only (names from a DAG and
 * targets are untrusted), and speaks the same REST API and WebSocket events
 * as any other client.
 *
 * The JS is written with `String.raw` so its escapes reach the browser as
 * written; it must not contain backticks or dollar-brace sequences.
 *
 * @module
 */

/** Paths the assets are served at (besides `/` for the page). */
export const DASHBOARD_CSS_PATH = '/dashboard.css'
export const DASHBOARD_JS_PATH = '/dashboard.js'

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>cidget</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${DASHBOARD_CSS_PATH}">
<script type="module" src="${DASHBOARD_JS_PATH}"></script>
</head>
<body>
<header class="top">
  <h1>cidget</h1>
  <p id="connection" class="connection" data-state="connecting" data-testid="connection" role="status">Connecting…</p>
</header>
<main>
  <div id="message" class="message" role="alert" data-testid="message" hidden>
    <span id="message-text"></span>
    <button type="button" id="message-close" class="link">Dismiss</button>
  </div>

  <section id="token-section" class="card" aria-labelledby="token-heading" data-testid="token-section" hidden>
    <h2 id="token-heading">Access token</h2>
    <p id="token-reason">This service needs its access token.</p>
    <form id="token-form" data-testid="token-form">
      <label for="token-input">Token (<code>cidget token</code> prints it)</label>
      <div class="row">
        <input id="token-input" name="token" type="password" autocomplete="off" spellcheck="false" required data-testid="token-input">
        <button type="submit" data-testid="token-submit">Connect</button>
      </div>
    </form>
  </section>

  <section class="card" aria-labelledby="add-heading">
    <h2 id="add-heading">Add a download</h2>
    <form id="add-form" class="add" data-testid="add-form" novalidate>
      <div class="field grow">
        <label for="add-target">CID, /ipfs/ path, ipfs:// or gateway URL</label>
        <input id="add-target" name="target" type="text" required autocomplete="off" spellcheck="false" placeholder="bafy…" data-testid="add-target">
      </div>
      <div class="field">
        <label for="add-output">Output name <span class="hint">(optional)</span></label>
        <input id="add-output" name="output" type="text" autocomplete="off" spellcheck="false" data-testid="add-output">
      </div>
      <div class="field">
        <label for="add-mode">Mode</label>
        <select id="add-mode" name="mode" data-testid="add-mode">
          <option value="">default</option>
          <option value="verified" title="blocks checked against the CID">verified</option>
          <option value="path" title="HTTP Range requests on a path gateway">path</option>
          <option value="car" title="the verified blocks as a CAR file">car</option>
        </select>
      </div>
      <div class="field">
        <label for="add-sha256">SHA-256 <span class="hint">(optional)</span></label>
        <input id="add-sha256" name="sha256" type="text" autocomplete="off" spellcheck="false" pattern="[0-9a-fA-F]{64}" data-testid="add-sha256">
      </div>
      <div class="field submit">
        <button type="submit" id="add-submit" data-testid="add-submit">Add download</button>
      </div>
    </form>
    <p id="add-error" class="error" role="alert" data-testid="add-error" hidden></p>
  </section>

  <section class="card" aria-labelledby="downloads-heading">
    <h2 id="downloads-heading">Downloads <span id="downloads-count" class="hint" data-testid="downloads-count"></span></h2>
    <div class="scroll">
      <table class="downloads" data-testid="downloads-table">
        <thead>
          <tr><th scope="col" class="c-id num">#</th><th scope="col" class="c-content">Content</th><th scope="col" class="c-status">Status</th><th scope="col" class="c-progress">Progress</th><th scope="col" class="c-actions">Actions</th></tr>
        </thead>
        <tbody id="downloads-body">
          <tr id="downloads-empty" data-testid="downloads-empty"><td colspan="5" class="hint">No downloads yet.</td></tr>
        </tbody>
      </table>
    </div>
  </section>

  <section class="card" aria-labelledby="gateways-heading">
    <h2 id="gateways-heading">Gateways</h2>
    <div class="scroll">
      <table class="gateways" data-testid="gateways-table">
        <thead>
          <tr><th scope="col">Gateway</th><th scope="col" class="num">Requests</th><th scope="col" class="num">Errors</th><th scope="col" class="num">Invalid blocks</th><th scope="col" class="num">In flight</th><th scope="col" class="num">Latency</th><th scope="col" class="num">Throughput</th><th scope="col" class="num">Received</th><th scope="col">State</th></tr>
        </thead>
        <tbody id="gateways-body">
          <tr><td colspan="9" class="hint">No gateway data yet.</td></tr>
        </tbody>
      </table>
    </div>
  </section>
  <div id="announcer" class="visually-hidden" aria-live="polite" aria-atomic="false" data-testid="announcer"></div>
</main>
</body>
</html>
`

export const DASHBOARD_CSS = `:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --card: #fff; --fg: #1b1f24; --muted: #5b6470; --line: #d9dde3;
  --accent: #1f6feb; --accent-fg: #fff; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --bar: #e6e9ee;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px; line-height: 1.4;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1216; --card: #171b21; --fg: #e6e8eb; --muted: #98a1ad; --line: #2c323b;
    --accent: #4c8dff; --accent-fg: #0b0e12; --ok: #3fb950; --warn: #d29922; --bad: #f85149; --bar: #262c35;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 0.9em; }
.top { display: flex; align-items: baseline; justify-content: space-between; gap: 1rem; padding: 0.75rem 1.25rem; border-bottom: 1px solid var(--line); background: var(--card); }
.top h1 { margin: 0; font-size: 1.25rem; }
main { max-width: 1200px; margin: 0 auto; padding: 1rem 1.25rem 2rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.75rem 1rem 1rem; margin-bottom: 1rem; }
.card h2 { font-size: 1.05rem; margin: 0.25rem 0 0.75rem; }
.hint { color: var(--muted); font-weight: normal; font-size: 0.9em; }
.connection { margin: 0; font-size: 0.9rem; color: var(--muted); }
.connection::before { content: ""; display: inline-block; width: 0.6em; height: 0.6em; border-radius: 50%; margin-right: 0.4em; background: var(--warn); }
.connection[data-state="live"]::before { background: var(--ok); }
.connection[data-state="offline"]::before, .connection[data-state="unauthorized"]::before { background: var(--bad); }
label { display: block; font-size: 0.85rem; color: var(--muted); margin-bottom: 0.2rem; }
input, select, button { font: inherit; color: inherit; }
input, select { width: 100%; padding: 0.4rem 0.5rem; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); }
button { padding: 0.35rem 0.75rem; border: 1px solid var(--line); border-radius: 6px; background: var(--card); cursor: pointer; }
button[type="submit"] { background: var(--accent); border-color: var(--accent); color: var(--accent-fg); font-weight: 600; }
button:disabled { opacity: 0.45; cursor: not-allowed; }
button.link { border: none; background: none; text-decoration: underline; padding: 0 0.25rem; color: inherit; }
:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.row { display: flex; gap: 0.5rem; }
.add { display: flex; flex-wrap: wrap; gap: 0.75rem; align-items: flex-end; }
.add .field { flex: 1 1 9rem; }
.add .field.grow { flex: 3 1 22rem; }
.add .field.submit { flex: 0 0 auto; }
.error { color: var(--bad); margin: 0.5rem 0 0; }
.message { display: flex; justify-content: space-between; gap: 1rem; padding: 0.6rem 0.9rem; margin-bottom: 1rem; border: 1px solid var(--bad); border-radius: 8px; color: var(--bad); background: var(--card); }
.message[hidden], .error[hidden], .card[hidden] { display: none; }
.scroll { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 0.45rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.03em; color: var(--muted); font-weight: 600; }
table.downloads { table-layout: fixed; }
.c-id { width: 3rem; }
.c-content { width: 30%; }
.c-status { width: 8.5rem; }
.c-actions { width: 20rem; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.name, .sub { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.name { font-weight: 600; }
.sub { color: var(--muted); font-size: 0.85em; }
.error, .note { overflow-wrap: anywhere; }
.status { display: inline-block; padding: 0.05rem 0.5rem; border-radius: 999px; font-size: 0.85rem; font-weight: 600; border: 1px solid currentColor; white-space: nowrap; }
.status[data-status="success"] { color: var(--ok); }
.status[data-status="failed"] { color: var(--bad); }
.status[data-status="paused"], .status[data-status="cancelled"] { color: var(--muted); }
.status[data-status="in_progress"], .status[data-status="resuming"], .status[data-status="pending"] { color: var(--accent); }
.bar { position: relative; height: 0.8rem; border-radius: 999px; background: var(--bar); overflow: hidden; }
.bar .fill { position: absolute; inset: 0 auto 0 0; width: 0; background: var(--accent); transition: width 0.2s linear; }
.bar[data-status="success"] .fill { background: var(--ok); }
.bar[data-status="failed"] .fill { background: var(--bad); }
.bar[data-status="paused"] .fill, .bar[data-status="cancelled"] .fill { background: var(--muted); }
.bar.indeterminate .fill { width: 30%; animation: slide 1.2s ease-in-out infinite alternate; }
@keyframes slide { from { left: 0; } to { left: 70%; } }
@media (prefers-reduced-motion: reduce) { .bar .fill { transition: none; } .bar.indeterminate .fill { animation: none; } }
.progress-text { font-size: 0.85rem; color: var(--muted); margin-top: 0.25rem; font-variant-numeric: tabular-nums; }
.note { font-size: 0.85rem; color: var(--warn); margin-top: 0.2rem; }
.actions { display: flex; flex-wrap: nowrap; gap: 0.35rem; }
.actions button { font-size: 0.85rem; padding: 0.2rem 0.55rem; }
.state-dropped, .state-blocked { color: var(--bad); font-weight: 600; }
.state-ok { color: var(--ok); }
/* narrow screens: each download is a card, the header row only for screen readers */
@media (max-width: 760px) {
  main { padding: 0.75rem 0.5rem 1.5rem; }
  table.downloads, table.downloads tbody, table.downloads tr, table.downloads td { display: block; width: auto; }
  table.downloads thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  table.downloads tr { display: grid; grid-template-columns: auto minmax(0, 1fr) auto; gap: 0.3rem 0.6rem; padding: 0.6rem 0; border-bottom: 1px solid var(--line); }
  table.downloads tr[hidden] { display: none; }
  table.downloads td { border: none; padding: 0; }
  table.downloads td.c-progress, table.downloads td.c-actions, table.downloads td[colspan] { grid-column: 1 / -1; }
  .actions { flex-wrap: wrap; }
}
.visually-hidden { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
`

export const DASHBOARD_JS = String.raw`// cidget dashboard: plain DOM, no dependencies, the service's REST API and WebSocket events.
const TOKEN_KEY = 'cidget.token'
const ACTIVE = ['pending', 'in_progress', 'resuming']
/** Which action a status allows (mirrors the engine's transitions). */
const ALLOWED = {
  pause: ['pending', 'in_progress', 'resuming'],
  resume: ['paused', 'failed'],
  cancel: ['pending', 'in_progress', 'resuming', 'paused', 'failed'],
  remove: ['pending', 'in_progress', 'resuming', 'paused', 'success', 'failed', 'cancelled']
}
const ACTION_LABELS = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel', remove: 'Remove' }
const PAGE_LIMIT = 500
const MAX_PAGES = 100
const GATEWAY_POLL_MS = 2000
const GATEWAY_IDLE_POLL_MS = 10000

const state = {
  token: null,
  /** id → record */
  downloads: new Map(),
  /** id → the latest progress event data */
  live: new Map(),
  /** id → a note from the latest retry or repair */
  notes: new Map(),
  /** id → row elements */
  rows: new Map(),
  /** id → Date.now() when a status event last changed the record (newer than a list answer sent before it) */
  touched: new Map(),
  /** id → { again } for records being fetched one by one */
  fetching: new Map(),
  dirty: new Set(),
  /** ids whose record was fetched again because progress came without a total */
  sizeAsked: new Set(),
  frame: 0,
  ws: null,
  attempt: 0,
  reconnectTimer: 0,
  gatewaysAt: 0,
  gatewayTimer: 0,
  stopped: false
}

function byId (id) { return document.getElementById(id) }

// --- token ---------------------------------------------------------------------

function storeToken (value) {
  state.token = value
  try {
    if (value === null) sessionStorage.removeItem(TOKEN_KEY)
    else sessionStorage.setItem(TOKEN_KEY, value)
  } catch (err) { /* storage disabled: keep it in memory */ }
}

/** The token from '#token=…' (then dropped from the address bar), or from this tab's session. */
function initialToken () {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash)
  if (m !== null) {
    let t = ''
    try { t = decodeURIComponent(m[1]) } catch (err) { t = m[1] }
    if (t !== '') storeToken(t)
    history.replaceState(null, '', location.pathname + location.search)
  }
  try { return sessionStorage.getItem(TOKEN_KEY) } catch (err) { return state.token }
}

function askToken (reason) {
  stopSocket()
  state.stopped = true
  setConnection('unauthorized', 'Not connected: token needed')
  byId('token-reason').textContent = reason
  byId('token-section').hidden = false
  byId('token-input').focus()
}

// --- API -----------------------------------------------------------------------

class ApiError extends Error {
  constructor (status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

async function api (method, path, body) {
  const headers = { Accept: 'application/json' }
  if (state.token) headers.Authorization = 'Bearer ' + state.token
  const init = { method, headers, cache: 'no-store' }
  // the service takes a state-changing request only as JSON, also one without a body
  if (method !== 'GET') headers['Content-Type'] = 'application/json'
  if (body !== undefined) init.body = JSON.stringify(body)
  let res
  try {
    res = await fetch(path, init)
  } catch (err) {
    throw new ApiError(0, 'NETWORK', 'The service cannot be reached')
  }
  if (res.status === 401) {
    const hadToken = Boolean(headers.Authorization)
    storeToken(null)
    askToken(hadToken ? 'The service refused the token. Enter the token that cidget token prints.' : 'This service needs its access token.')
    throw new ApiError(401, 'UNAUTHORIZED', 'The service refused the token')
  }
  if (res.status === 204) return null
  const text = await res.text()
  let data = null
  if (text !== '') {
    try { data = JSON.parse(text) } catch (err) { data = null }
  }
  if (!res.ok) {
    const e = data !== null && typeof data === 'object' && data.error ? data.error : {}
    throw new ApiError(res.status, e.code || 'HTTP_' + res.status, e.message || res.statusText || 'Request failed')
  }
  return data
}

// --- formatting ----------------------------------------------------------------

function formatBytes (n) {
  if (n === null || n === undefined || !isFinite(n)) return '?'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + units[i]
}

function formatDuration (seconds) {
  const s = Math.max(0, Math.round(seconds))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const ss = String(s % 60).padStart(2, '0')
  return h > 0 ? h + ':' + String(m).padStart(2, '0') + ':' + ss : m + ':' + ss
}

function statusText (status) { return String(status).replace(/_/g, ' ') }

function baseName (p) {
  const parts = String(p || '').split(/[\\/]/).filter(Boolean)
  return parts.length > 0 ? parts[parts.length - 1] : String(p || '')
}

function hostOf (url) {
  try { return new URL(url).host } catch (err) { return String(url) }
}

/** What the bar and its text show for a record. */
function progressOf (rec) {
  const live = state.live.get(rec.id)
  const active = ACTIVE.includes(rec.status)
  let bytes = rec.currentSize || 0
  let total = rec.size
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
  let percent = null
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

// --- rendering -----------------------------------------------------------------

function el (tag, attrs, text) {
  const e = document.createElement(tag)
  if (attrs) for (const k of Object.keys(attrs)) e.setAttribute(k, attrs[k])
  if (text !== undefined) e.textContent = text
  return e
}

function createRow (id) {
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
  const actions = el('div', { class: 'actions' })
  const buttons = {}
  for (const action of Object.keys(ACTION_LABELS)) {
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
  actionsCell.append(actions)
  tr.append(idCell, content, statusCell, progressCell, actionsCell)
  return { tr, name, sub, out, status, error, bar, fill, text, note, buttons, busy: false }
}

function insertRow (id, row) {
  const body = byId('downloads-body')
  // newest (highest id) first
  let before = null
  for (const tr of body.children) {
    const other = Number(tr.dataset.id)
    if (tr.dataset.id !== undefined && other < id) { before = tr; break }
  }
  body.insertBefore(row.tr, before)
}

function renderRow (id) {
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
  row.sub.textContent = rec.target || (rec.cid + (rec.path || ''))
  row.sub.title = row.sub.textContent
  row.out.textContent = (rec.mode ? rec.mode + ' · ' : '') + (rec.output || '')
  row.out.title = rec.output || ''
  row.status.textContent = statusText(rec.status)
  row.status.dataset.status = rec.status
  const err = rec.error ? (rec.errorCode ? rec.errorCode + ': ' : '') + rec.error : ''
  row.error.textContent = err
  row.error.hidden = err === '' || rec.status === 'success'

  const p = progressOf(rec)
  row.bar.dataset.status = rec.status
  if (p.percent === null) {
    row.bar.classList.toggle('indeterminate', ACTIVE.includes(rec.status))
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
  const parts = [formatBytes(p.bytes) + (p.total !== null && p.total !== undefined ? ' / ' + formatBytes(p.total) : '')]
  if (p.percent !== null) parts.push(p.percent + '%')
  if (ACTIVE.includes(rec.status)) {
    if (p.speed > 0) parts.push(formatBytes(p.speed) + '/s')
    if (p.eta !== null) parts.push('ETA ' + formatDuration(p.eta))
  }
  if (p.gateway) parts.push('via ' + hostOf(p.gateway))
  if (p.files !== null && p.files !== undefined) parts.push(p.files + (p.files === 1 ? ' file' : ' files'))
  row.text.textContent = parts.join(' · ')
  const note = ACTIVE.includes(rec.status) ? (state.notes.get(id) || '') : ''
  row.note.textContent = note
  row.note.hidden = note === ''

  for (const action of Object.keys(row.buttons)) {
    row.buttons[action].disabled = row.busy || !ALLOWED[action].includes(rec.status)
  }
}

function removeRow (id) {
  const row = state.rows.get(id)
  if (row !== undefined) row.tr.remove()
  state.rows.delete(id)
  state.downloads.delete(id)
  state.live.delete(id)
  state.notes.delete(id)
  state.dirty.delete(id)
  updateCount()
}

function updateCount () {
  const n = state.downloads.size
  byId('downloads-empty').hidden = n > 0
  let active = 0
  for (const rec of state.downloads.values()) if (ACTIVE.includes(rec.status)) active++
  byId('downloads-count').textContent = n === 0 ? '' : '(' + n + (active > 0 ? ', ' + active + ' active' : '') + ')'
}

function markDirty (id) {
  state.dirty.add(id)
  if (state.frame !== 0) return
  const flush = () => {
    state.frame = 0
    for (const d of state.dirty) renderRow(d)
    state.dirty.clear()
    updateCount()
  }
  // requestAnimationFrame batches bursts of progress events; a hidden tab catches up when shown
  state.frame = document.hidden ? setTimeout(flush, 250) : requestAnimationFrame(flush)
}

function upsert (rec) {
  if (!rec || typeof rec.id !== 'number') return
  const prev = state.downloads.get(rec.id)
  state.downloads.set(rec.id, rec)
  if (prev === undefined) updateCount()
  markDirty(rec.id)
}

function announce (text) {
  const a = byId('announcer')
  const line = el('p', null, text)
  a.append(line)
  while (a.childElementCount > 5) a.firstElementChild.remove()
}

function showMessage (text) {
  byId('message-text').textContent = text
  byId('message').hidden = false
}

function setConnection (s, text) {
  const c = byId('connection')
  if (c.dataset.state === s && c.textContent === text) return
  c.dataset.state = s
  c.textContent = text
}

// --- data ----------------------------------------------------------------------

async function refreshDownloads () {
  const sentAt = Date.now()
  const items = []
  let cursor = null
  let complete = false
  for (let page = 0; page < MAX_PAGES; page++) {
    const q = new URLSearchParams({ limit: String(PAGE_LIMIT) })
    if (cursor !== null && cursor !== undefined) q.set('cursor', String(cursor))
    const r = await api('GET', '/api/downloads?' + q.toString())
    for (const rec of r.items || []) items.push(rec)
    cursor = r.nextCursor
    if (cursor === null || cursor === undefined || cursor === '') { complete = true; break }
  }
  const seen = new Set()
  for (const rec of items) {
    seen.add(rec.id)
    // a status event that came after this request was sent is newer than the answer
    if ((state.touched.get(rec.id) || 0) > sentAt) continue
    upsert(rec)
  }
  if (complete) {
    for (const id of [...state.downloads.keys()]) {
      if (!seen.has(id) && (state.touched.get(id) || 0) <= sentAt) removeRow(id)
    }
  }
}

/** Fetches one record; at most one request per id in flight, repeated if asked again meanwhile. */
function refreshOne (id) {
  const f = state.fetching.get(id)
  if (f !== undefined) { f.again = true; return }
  const entry = { again: false }
  state.fetching.set(id, entry)
  const sentAt = Date.now()
  api('GET', '/api/downloads/' + id).then((rec) => {
    // a status event after this request was sent asked for another fetch: this answer may be older
    if ((state.touched.get(id) || 0) <= sentAt) upsert(rec)
  }, (err) => {
    if (err.status === 404) removeRow(id)
  }).finally(() => {
    state.fetching.delete(id)
    if (entry.again) refreshOne(id)
  })
}

async function refreshGateways () {
  state.gatewaysAt = Date.now()
  const r = await api('GET', '/api/gateways')
  renderGateways(r.gateways || [])
}

function scheduleGateways (ms) {
  if (state.gatewayTimer !== 0) return
  state.gatewayTimer = setTimeout(() => {
    state.gatewayTimer = 0
    if (state.stopped) return
    refreshGateways().catch(() => {})
  }, ms)
}

function renderGateways (list) {
  const body = byId('gateways-body')
  const rows = []
  if (list.length === 0) {
    const tr = el('tr')
    tr.append(el('td', { colspan: '9', class: 'hint' }, 'No gateways.'))
    rows.push(tr)
  }
  for (const g of list) {
    const tr = el('tr', { 'data-testid': 'gateway-row', 'data-gateway': g.url })
    const now = Date.now()
    let st = 'ok'
    let cls = 'state-ok'
    if (g.dropped) { st = 'dropped'; cls = 'state-dropped' } else if (g.blockedUntil > now) { st = 'blocked ' + formatDuration((g.blockedUntil - now) / 1000); cls = 'state-blocked' }
    tr.append(
      el('td', { class: 'mono' }, g.url),
      el('td', { class: 'num' }, String(g.requests)),
      el('td', { class: 'num' }, String(g.errors)),
      el('td', { class: 'num' }, String(g.invalidBlocks)),
      el('td', { class: 'num' }, String(g.inFlight)),
      el('td', { class: 'num' }, g.latencyMs > 0 ? Math.round(g.latencyMs) + ' ms' : '–'),
      el('td', { class: 'num' }, g.throughputBps > 0 ? formatBytes(g.throughputBps) + '/s' : '–'),
      el('td', { class: 'num' }, formatBytes(g.bytes)),
      el('td', { class: cls }, st)
    )
    rows.push(tr)
  }
  body.replaceChildren(...rows)
}

// --- events --------------------------------------------------------------------

function onEvent (msg) {
  const d = msg && msg.data
  if (!d) return
  switch (msg.type) {
    case 'download:added':
      // announced once: by the form that added it, or here when someone else did
      if (!state.downloads.has(d.id)) announce('Download ' + d.id + ' added: ' + (baseName(d.output) || d.cid))
      upsert(d)
      break
    case 'status': {
      const rec = state.downloads.get(d.id)
      state.touched.set(d.id, Date.now())
      if (rec !== undefined) {
        const previous = rec.status
        rec.status = d.status
        rec.error = d.error
        rec.errorCode = d.errorCode
        if (!ACTIVE.includes(d.status)) state.notes.delete(d.id)
        markDirty(d.id)
        if (previous !== d.status) {
          announce('Download ' + d.id + (rec.output ? ' (' + baseName(rec.output) + ')' : '') + ' is ' + statusText(d.status) + (d.error ? ': ' + d.error : ''))
        }
      }
      // the whole record: size, current size, hash
      refreshOne(d.id)
      scheduleGateways(300)
      break
    }
    case 'progress': {
      state.live.set(d.id, d)
      const rec = state.downloads.get(d.id)
      if (rec === undefined) {
        refreshOne(d.id)
      } else {
        markDirty(d.id)
        // the engine stores the size once it has read the root block, and progress may not carry it yet
        if ((d.total === null || d.total === undefined) && (rec.size === null || rec.size === undefined) && !state.sizeAsked.has(d.id)) {
          state.sizeAsked.add(d.id)
          refreshOne(d.id)
        }
      }
      break
    }
    case 'retry':
      state.notes.set(d.id, 'Retry (' + d.action + '): ' + (d.code ? d.code + ' ' : '') + d.message)
      markDirty(d.id)
      break
    case 'repaired':
      state.notes.set(d.id, 'Repaired ' + d.blocks + ' block(s) that did not match the CID')
      markDirty(d.id)
      break
    case 'gateway':
      scheduleGateways(200)
      break
    default:
      break
  }
}

// --- connection ----------------------------------------------------------------

function stopSocket () {
  clearTimeout(state.reconnectTimer)
  state.reconnectTimer = 0
  const ws = state.ws
  state.ws = null
  if (ws !== null) ws.close()
}

function connect () {
  if (state.stopped) return
  clearTimeout(state.reconnectTimer)
  const url = new URL('/api/events', location.href)
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
  if (state.token) url.searchParams.set('token', state.token)
  let ws
  try {
    ws = new WebSocket(url.toString())
  } catch (err) {
    scheduleReconnect()
    return
  }
  state.ws = ws
  ws.addEventListener('open', () => {
    if (state.ws !== ws) return
    state.attempt = 0
    setConnection('live', 'Live')
    // events may have been missed while disconnected (or before this socket opened)
    Promise.all([refreshDownloads(), refreshGateways()]).catch((err) => {
      if (err.status !== 401) showMessage('Could not load the downloads: ' + err.message)
    })
  })
  ws.addEventListener('message', (ev) => {
    if (state.ws !== ws) return
    let msg
    try { msg = JSON.parse(ev.data) } catch (err) { return }
    onEvent(msg)
  })
  ws.addEventListener('close', () => {
    if (state.ws !== ws) return
    state.ws = null
    scheduleReconnect()
  })
}

/** Exponential backoff with jitter: 0.5 s, 1 s, 2 s … up to 15 s. */
function scheduleReconnect () {
  if (state.stopped) return
  const base = Math.min(15000, 500 * Math.pow(2, state.attempt))
  const ms = Math.round(base / 2 + Math.random() * base / 2)
  state.attempt++
  setConnection('offline', 'Disconnected, retrying in ' + Math.ceil(ms / 1000) + ' s…')
  clearTimeout(state.reconnectTimer)
  state.reconnectTimer = setTimeout(reconnect, ms)
}

/** Checks the service answers and takes the token first: a refused WebSocket says neither. */
function reconnect () {
  if (state.stopped) return
  if (state.attempt > 0) setConnection('connecting', 'Reconnecting…')
  refreshDownloads().then(connect, (err) => {
    if (err.status === 401) return
    scheduleReconnect()
  })
}

/** Loads the list first (it shows at once, and a 401 asks for the token), then opens the socket. */
function start () {
  state.stopped = false
  state.attempt = 0
  byId('token-section').hidden = true
  setConnection('connecting', 'Connecting…')
  reconnect()
}

// --- user actions --------------------------------------------------------------

async function onAdd (ev) {
  ev.preventDefault()
  const target = byId('add-target')
  const output = byId('add-output')
  const mode = byId('add-mode')
  const sha = byId('add-sha256')
  const error = byId('add-error')
  const submit = byId('add-submit')
  error.hidden = true
  const body = { target: target.value.trim() }
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
  submit.disabled = true
  try {
    const rec = await api('POST', '/api/downloads', body)
    if (!state.downloads.has(rec.id)) announce('Download ' + rec.id + ' added: ' + (baseName(rec.output) || rec.cid))
    upsert(rec)
    target.value = ''
    output.value = ''
    sha.value = ''
    target.focus()
  } catch (err) {
    if (err.status !== 401) {
      error.textContent = 'Not added: ' + err.message + (err.code && err.code !== 'NETWORK' ? ' (' + err.code + ')' : '')
      error.hidden = false
    }
  } finally {
    submit.disabled = false
  }
}

async function onAction (ev) {
  const b = ev.target.closest('button[data-action]')
  if (b === null) return
  const id = Number(b.dataset.id)
  const action = b.dataset.action
  const row = state.rows.get(id)
  if (row === undefined || row.busy) return
  row.busy = true
  renderRow(id)
  try {
    if (action === 'remove') {
      await api('DELETE', '/api/downloads/' + id)
      removeRow(id)
      announce('Download ' + id + ' removed')
      return
    }
    upsert(await api('POST', '/api/downloads/' + id + '/' + action))
  } catch (err) {
    if (err.status === 404) removeRow(id)
    else if (err.status !== 401) showMessage(ACTION_LABELS[action] + ' download ' + id + ' failed: ' + err.message + (err.code ? ' (' + err.code + ')' : ''))
    refreshOne(id)
  } finally {
    const r = state.rows.get(id)
    if (r !== undefined) { r.busy = false; markDirty(id) }
  }
}

function onToken (ev) {
  ev.preventDefault()
  const input = byId('token-input')
  const t = input.value.trim()
  if (t === '') return
  storeToken(t)
  input.value = ''
  start()
}

function init () {
  state.token = initialToken()
  byId('add-form').addEventListener('submit', onAdd)
  byId('token-form').addEventListener('submit', onToken)
  byId('downloads-body').addEventListener('click', onAction)
  byId('message-close').addEventListener('click', () => { byId('message').hidden = true })
  // gateway latency and throughput move without events: poll, faster while something runs
  setInterval(() => {
    if (state.stopped || state.ws === null || document.hidden) return
    let active = false
    for (const rec of state.downloads.values()) if (ACTIVE.includes(rec.status)) { active = true; break }
    if (active || Date.now() - state.gatewaysAt >= GATEWAY_IDLE_POLL_MS) refreshGateways().catch(() => {})
  }, GATEWAY_POLL_MS)
  start()
}

init()
`
