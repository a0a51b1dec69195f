/** The gateways table, from `GET /api/gateways`. @module */

import { api } from './api.js'
import { byId, el } from './dom.js'
import { formatBytes, formatDuration } from './format.js'
import { state, type GatewayRow } from './state.js'

export async function refreshGateways (): Promise<void> {
  state.gatewaysAt = Date.now()
  const r = await api<{ gateways?: GatewayRow[] }>('GET', '/api/gateways')
  renderGateways(r.gateways || [])
}

/** Refreshes the table in `ms`, unless a refresh is already waiting. */
export function scheduleGateways (ms: number): void {
  if (state.gatewayTimer !== 0) return
  state.gatewayTimer = setTimeout(() => {
    state.gatewayTimer = 0
    if (state.stopped) return
    refreshGateways().catch(() => {})
  }, ms)
}

function gatewayState (g: GatewayRow, now: number): { text: string, cls: string } {
  if (g.dropped) return { text: 'dropped', cls: 'state-dropped' }
  if (g.blockedUntil > now) return { text: 'blocked ' + formatDuration((g.blockedUntil - now) / 1000), cls: 'state-blocked' }
  return { text: 'ok', cls: 'state-ok' }
}

function renderGateways (list: readonly GatewayRow[]): void {
  const body = byId('gateways-body')
  const rows: HTMLTableRowElement[] = []
  if (list.length === 0) {
    const tr = el('tr')
    tr.append(el('td', { colspan: '9', class: 'hint' }, 'No gateways.'))
    rows.push(tr)
  }
  for (const g of list) {
    const tr = el('tr', { 'data-testid': 'gateway-row', 'data-gateway': g.url })
    const st = gatewayState(g, Date.now())
    tr.append(
      el('td', { class: 'mono' }, g.url),
      el('td', { class: 'num' }, String(g.requests)),
      el('td', { class: 'num' }, String(g.errors)),
      el('td', { class: 'num' }, String(g.invalidBlocks)),
      el('td', { class: 'num' }, String(g.inFlight)),
      el('td', { class: 'num' }, g.latencyMs > 0 ? Math.round(g.latencyMs) + ' ms' : '–'),
      el('td', { class: 'num' }, g.throughputBps > 0 ? formatBytes(g.throughputBps) + '/s' : '–'),
      el('td', { class: 'num' }, formatBytes(g.bytes)),
      el('td', { class: st.cls }, st.text)
    )
    rows.push(tr)
  }
  body.replaceChildren(...rows)
}
