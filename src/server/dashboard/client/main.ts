/**
 * cidget's web dashboard: plain DOM, no dependencies, the service's REST API
 * and WebSocket events. esbuild bundles this module and its imports into the
 * one script the page loads (`/dashboard.js`).
 *
 * @module
 */

import { onAdd, onClear, onTableClick, onToken } from './actions.js'
import { initialToken, onUnauthorized } from './api.js'
import { initConfirm } from './confirm.js'
import { askToken, start } from './connection.js'
import { byId } from './dom.js'
import { refreshGateways } from './gateways.js'
import { onLimit } from './limit.js'
import { currentCounts, setFilter, setSearch, turnPage } from './list.js'
import { FILTERS, GATEWAY_IDLE_POLL_MS, GATEWAY_POLL_MS, state, type Filter } from './state.js'

function isFilter (s: string | undefined): s is Filter {
  return (FILTERS as readonly (string | undefined)[]).includes(s)
}

/** The list's filters, search, pages and clear buttons. */
function initList (): void {
  byId('downloads-body').addEventListener('click', (ev) => { void onTableClick(ev) })
  byId('filters').addEventListener('click', (ev) => {
    const b = ev.target instanceof Element ? ev.target.closest<HTMLElement>('button[data-filter]') : null
    const f = b?.dataset.filter
    if (isFilter(f)) setFilter(f)
  })
  const search = byId('search', HTMLInputElement)
  search.addEventListener('input', () => { setSearch(search.value) })
  byId('page-prev').addEventListener('click', () => { turnPage(-1) })
  byId('page-next').addEventListener('click', () => { turnPage(1) })
  byId('clear-finished').addEventListener('click', () => { void onClear('finished') })
  byId('clear-failed').addEventListener('click', () => { void onClear('failed') })
}

function init (): void {
  onUnauthorized(askToken)
  state.token = initialToken()
  initConfirm()
  initList()
  byId('add-form', HTMLFormElement).addEventListener('submit', (ev) => { void onAdd(ev) })
  byId('limit-form', HTMLFormElement).addEventListener('submit', (ev) => { void onLimit(ev) })
  byId('token-form', HTMLFormElement).addEventListener('submit', onToken)
  byId('message-close').addEventListener('click', () => { byId('message').hidden = true })
  // gateway speeds move without events: poll, faster while something runs
  setInterval(() => {
    if (state.stopped || state.ws === null || document.hidden) return
    if (currentCounts().active > 0 || Date.now() - state.gatewaysAt >= GATEWAY_IDLE_POLL_MS) refreshGateways().catch(() => {})
  }, GATEWAY_POLL_MS)
  start()
}

init()
