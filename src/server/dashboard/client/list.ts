/**
 * The downloads list: every record loaded is kept, but only one page of the
 * filtered and searched list is drawn (VIEW_PAGE_SIZE rows, however many
 * thousands there are), newest first; and the header's counts and total
 * speed. Everything is redrawn at most once a frame.
 *
 * @module
 */

import { byId } from './dom.js'
import { baseName, formatBytes } from './format.js'
import { createRow, renderRow } from './rows.js'
import { FILTER_OF, FILTERS, VIEW_PAGE_SIZE, isActive, state, type DownloadRecord, type Filter } from './state.js'

export type Counts = Record<Filter, number>

let counts: Counts = { all: 0, active: 0, paused: 0, done: 0, failed: 0 }
let countsDirty = true
/** The table's "loading / nothing here" row, kept while it is out of the table. */
let emptyRow: { tr: HTMLElement, text: HTMLElement } | null = null

/** The records in each filter now (counted again if they changed since the latest frame drew them). */
export function currentCounts (): Readonly<Counts> {
  return countsDirty ? tally() : counts
}

/** What the search box looks in: the id, the target as typed, the CID and path, the name and the output. */
function haystack (rec: DownloadRecord): string {
  return [rec.target, rec.cid + (rec.path || ''), rec.name ?? '', rec.output].join('\n').toLowerCase()
}

/** A number (or #number) finds that id, and names or outputs with it in them; anything else is looked for in the text. */
function matches (rec: DownloadRecord): boolean {
  if (state.filter !== 'all' && FILTER_OF[rec.status] !== state.filter) return false
  const q = state.search
  if (q === '') return true
  const id = /^#?(\d+)$/.exec(q)
  if (id !== null) return String(rec.id) === id[1] || baseName(rec.output).toLowerCase().includes(q)
  return haystack(rec).includes(q)
}

/** Takes a record from the service (a list, one fetch, an event or an action's answer). */
export function upsert (rec: DownloadRecord | null | undefined): void {
  if (!rec || typeof rec.id !== 'number') return
  const prev = state.downloads.get(rec.id)
  state.downloads.set(rec.id, rec)
  if (prev === undefined || prev.status !== rec.status) {
    countsDirty = true
    state.viewDirty = true
  } else if (state.search !== '' && haystack(prev) !== haystack(rec)) {
    state.viewDirty = true
  }
  markDirty(rec.id)
}

/** Forgets a record (removed here or elsewhere). */
export function removeRow (id: number): void {
  const row = state.rows.get(id)
  if (row !== undefined) {
    row.tr.remove()
    row.detail.remove()
  }
  state.rows.delete(id)
  state.downloads.delete(id)
  state.live.delete(id)
  state.notes.delete(id)
  state.expanded.delete(id)
  countsDirty = true
  state.viewDirty = true
  schedule()
}

export function markDirty (id: number): void {
  state.dirty.add(id)
  schedule()
}

/** The list must be drawn again: a filter, the search, the page or an error's message shown changed. */
export function scheduleView (): void {
  state.viewDirty = true
  schedule()
}

function schedule (): void {
  if (state.frame !== 0) return
  // requestAnimationFrame batches bursts of progress events; a hidden tab catches up when shown
  state.frame = document.hidden ? setTimeout(flush, 250) : requestAnimationFrame(flush)
}

function flush (): void {
  state.frame = 0
  if (state.viewDirty) {
    renderView()
  } else {
    // rows off the page shown have no elements: renderRow passes them by
    for (const id of state.dirty) renderRow(id)
  }
  state.dirty.clear()
  if (countsDirty) renderCounts()
  renderSpeed()
}

/** Whether a record's error message is open under its row. */
function detailOpen (id: number): boolean {
  const rec = state.downloads.get(id)
  return rec !== undefined && state.expanded.has(id) && Boolean(rec.error) && rec.status !== 'success'
}

function renderView (): void {
  state.viewDirty = false
  const ids: number[] = []
  for (const rec of state.downloads.values()) if (matches(rec)) ids.push(rec.id)
  ids.sort((a, b) => b - a)
  const pages = Math.max(1, Math.ceil(ids.length / VIEW_PAGE_SIZE))
  state.page = Math.min(Math.max(0, state.page), pages - 1)
  const shown = ids.slice(state.page * VIEW_PAGE_SIZE, (state.page + 1) * VIEW_PAGE_SIZE)
  const keep = new Set(shown)
  for (const [id, row] of state.rows) {
    if (keep.has(id)) continue
    row.tr.remove()
    row.detail.remove()
    state.rows.delete(id)
  }
  const wanted: HTMLElement[] = []
  for (const id of shown) {
    let row = state.rows.get(id)
    if (row === undefined) {
      row = createRow(id)
      state.rows.set(id, row)
    }
    renderRow(id)
    wanted.push(row.tr)
    if (detailOpen(id)) wanted.push(row.detail)
  }
  // kept: out of the table, getElementById no longer finds it
  emptyRow ??= { tr: byId('downloads-empty'), text: byId('downloads-empty-text') }
  if (wanted.length === 0) {
    emptyRow.text.textContent = emptyText()
    wanted.push(emptyRow.tr)
  }
  reconcile(byId('downloads-body'), wanted)
  renderPager(ids.length, shown.length)
}

function emptyText (): string {
  if (!state.loaded) return 'Loading downloads…'
  if (state.downloads.size === 0) return 'No downloads yet: add a CID, a path or a gateway link above.'
  const where = state.filter === 'all' ? '' : ' among the ' + state.filter + ' ones'
  return 'No downloads' + (state.search === '' ? '' : ' match “' + state.search + '”') + where + '.'
}

/**
 * Puts `wanted` in the table body in this order, moving only what is out of
 * place: a row that stays keeps its focus (a button just pressed).
 */
function reconcile (body: HTMLElement, wanted: readonly HTMLElement[]): void {
  let cur = body.firstElementChild
  for (const node of wanted) {
    if (cur === node) {
      cur = cur.nextElementSibling
      continue
    }
    body.insertBefore(node, cur)
  }
  while (cur !== null) {
    const next = cur.nextElementSibling
    cur.remove()
    cur = next
  }
}

function renderPager (total: number, shown: number): void {
  const pager = byId('pager')
  pager.hidden = total <= VIEW_PAGE_SIZE
  if (pager.hidden) return
  const first = state.page * VIEW_PAGE_SIZE
  byId('page-info').textContent = (first + 1).toLocaleString('en-US') + '–' + (first + shown).toLocaleString('en-US') + ' of ' + total.toLocaleString('en-US')
  byId('page-prev', HTMLButtonElement).disabled = state.page === 0
  byId('page-next', HTMLButtonElement).disabled = first + shown >= total
}

function tally (): Counts {
  const c: Counts = { all: 0, active: 0, paused: 0, done: 0, failed: 0 }
  for (const rec of state.downloads.values()) {
    c.all++
    c[FILTER_OF[rec.status]]++
  }
  return c
}

/** The header's counts, the filters' and the clear buttons. */
function renderCounts (): void {
  counts = tally()
  countsDirty = false
  for (const f of FILTERS) {
    const n = counts[f]
    const button = byId('filter-' + f)
    const span = button.querySelector('.n')
    if (span !== null) span.textContent = n.toLocaleString('en-US')
    if (f === 'all') continue
    byId('count-' + f).textContent = n.toLocaleString('en-US')
    byId('count-' + f).parentElement?.classList.toggle('zero', n === 0)
  }
  byId('clear-finished', HTMLButtonElement).disabled = counts.done === 0
  byId('clear-failed', HTMLButtonElement).disabled = counts.failed === 0
}

/** The speed of all downloads together, in the header and the tab's title. */
function renderSpeed (): void {
  let speed = 0
  for (const [id, p] of state.live) {
    const rec = state.downloads.get(id)
    if (rec !== undefined && isActive(rec.status)) speed += p.speed || 0
  }
  const text = '↓ ' + formatBytes(Math.round(speed)) + '/s'
  const el = byId('total-speed')
  if (el.textContent !== text) el.textContent = text
  el.dataset.bps = String(Math.round(speed))
  const title = counts.active > 0 ? text + ' · ' + counts.active + ' active · cidget' : 'cidget'
  if (document.title !== title) document.title = title
}

/** Shows one filter's records, from the first page. */
export function setFilter (f: Filter): void {
  state.filter = f
  state.page = 0
  for (const g of FILTERS) byId('filter-' + g).setAttribute('aria-pressed', String(g === f))
  scheduleView()
}

export function setSearch (text: string): void {
  const q = text.trim().toLowerCase()
  if (q === state.search) return
  state.search = q
  state.page = 0
  scheduleView()
}

export function turnPage (delta: number): void {
  state.page += delta
  scheduleView()
}

/** Opens or closes the message of a download's error under its row. */
export function toggleDetail (id: number): void {
  if (state.expanded.has(id)) state.expanded.delete(id)
  else state.expanded.add(id)
  markDirty(id)
  scheduleView()
}

/** The list has been loaded once: "loading" gives way to what is there. */
export function markLoaded (): void {
  if (state.loaded) return
  state.loaded = true
  scheduleView()
}
