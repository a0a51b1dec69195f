/**
 * cidget's web dashboard: plain DOM, no dependencies, the service's REST API
 * and WebSocket events. esbuild bundles this module and its imports into the
 * one script the page loads (`/dashboard.js`).
 *
 * @module
 */

import { onAction, onAdd, onLimit, onToken, refreshLimit } from './actions.js'
import { initialToken, onUnauthorized } from './api.js'
import { askToken, start } from './connection.js'
import { byId } from './dom.js'
import { refreshGateways } from './gateways.js'
import { GATEWAY_IDLE_POLL_MS, GATEWAY_POLL_MS, isActive, state } from './state.js'

function init (): void {
  onUnauthorized(askToken)
  state.token = initialToken()
  byId('add-form', HTMLFormElement).addEventListener('submit', (ev) => { void onAdd(ev) })
  byId('limit-form', HTMLFormElement).addEventListener('submit', (ev) => { void onLimit(ev) })
  byId('token-form', HTMLFormElement).addEventListener('submit', onToken)
  byId('downloads-body').addEventListener('click', (ev) => { void onAction(ev) })
  byId('message-close').addEventListener('click', () => { byId('message').hidden = true })
  // gateway latency and throughput move without events: poll, faster while something runs
  setInterval(() => {
    if (state.stopped || state.ws === null || document.hidden) return
    let active = false
    for (const rec of state.downloads.values()) if (isActive(rec.status)) { active = true; break }
    if (active || Date.now() - state.gatewaysAt >= GATEWAY_IDLE_POLL_MS) refreshGateways().catch(() => {})
  }, GATEWAY_POLL_MS)
  start()
  refreshLimit().catch(() => {})
}

init()
