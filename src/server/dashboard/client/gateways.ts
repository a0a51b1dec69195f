/**
 * The gateways panel, from `GET /api/gateways`: what each gateway sends now
 * (the service's figure over the last seconds, all downloads together), its
 * requests in flight, latency, bytes received and state.
 *
 * @module
 */

import { api } from './api.js'
import { byId, el } from './dom.js'
import { formatBytes, formatDuration, hostOf } from './format.js'
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

function speedCell (g: GatewayRow): HTMLElement {
  const idle = g.throughputBps <= 0 && g.inFlight === 0
  const td = el('td', { class: 'num speed' + (idle ? ' idle' : ''), 'data-testid': 'gateway-speed', 'data-bps': String(g.throughputBps) },
    idle ? 'idle' : formatBytes(g.throughputBps) + '/s')
  td.title = 'Bytes per second received from it over the last seconds, all downloads together'
  return td
}

function renderGateways (list: readonly GatewayRow[]): void {
  const body = byId('gateways-body')
  const rows: HTMLTableRowElement[] = []
  if (list.length === 0) {
    const tr = el('tr')
    tr.append(el('td', { colspan: '7', class: 'hint' }, 'No gateways.'))
    rows.push(tr)
  }
  const now = Date.now()
  for (const g of list) {
    const tr = el('tr', { 'data-testid': 'gateway-row', 'data-gateway': g.url })
    const st = gatewayState(g, now)
    const name = el('td', { class: 'mono gw' }, hostOf(g.url))
    name.title = g.url
    const errors = el('td', { class: 'num g-opt', 'data-testid': 'gateway-errors' }, String(g.errors))
    errors.title = g.requests + ' requests, ' + g.errors + ' errors, ' + g.invalidBlocks + ' invalid blocks'
    tr.append(
      name,
      speedCell(g),
      el('td', { class: 'num g-opt', 'data-testid': 'gateway-inflight' }, String(g.inFlight)),
      el('td', { class: 'num g-opt' }, g.latencyMs > 0 ? Math.round(g.latencyMs) + ' ms' : '–'),
      el('td', { class: 'num g-opt', 'data-testid': 'gateway-received' }, formatBytes(g.bytes)),
      errors,
      el('td', { class: st.cls }, st.text)
    )
    rows.push(tr)
  }
  body.replaceChildren(...rows)
}
