/**
 * The event socket: opened after the list loads, reopened with backoff when
 * it drops, stopped when the service wants a token.
 *
 * @module
 */

import { messageOf, statusOf } from './api.js'
import { announce, byId, setConnection, showMessage } from './dom.js'
import { refreshDownloads } from './downloads.js'
import { onEvent } from './events.js'
import { refreshGateways } from './gateways.js'
import { refreshLimit } from './limit.js'
import { state, type AuthState } from './state.js'

export function stopSocket (): void {
  clearTimeout(state.reconnectTimer)
  state.reconnectTimer = 0
  const ws = state.ws
  state.ws = null
  if (ws !== null) ws.close()
}

/**
 * Asking for the token hides the rest of the page: without it there is
 * nothing to show, and an empty list would read as "no downloads".
 */
function setAuth (auth: AuthState): void {
  state.auth = auth
  document.body.dataset.auth = auth
  byId('token-section').hidden = auth !== 'needed'
  byId('app').hidden = auth === 'needed'
  const submit = byId('token-submit', HTMLButtonElement)
  submit.disabled = false
  submit.textContent = 'Connect'
}

/** Stops everything and shows the token form with `reason`, until a token works. */
export function askToken (reason: string): void {
  stopSocket()
  state.stopped = true
  setConnection('unauthorized', 'Not connected: token needed')
  byId('token-reason').textContent = reason
  setAuth('needed')
  byId('token-input').focus()
}

/** The service took the token (or wants none): the page shows what it has. */
function authorized (): void {
  if (state.auth === 'ok') return
  const asked = state.auth === 'needed'
  setAuth('ok')
  if (asked) announce('Connected')
  refreshLimit().catch(() => {})
}

function connect (): void {
  if (state.stopped) return
  clearTimeout(state.reconnectTimer)
  const url = new URL('/api/events', location.href)
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
  if (state.token) url.searchParams.set('token', state.token)
  let ws: WebSocket
  try {
    ws = new WebSocket(url.toString())
  } catch {
    scheduleReconnect()
    return
  }
  state.ws = ws
  ws.addEventListener('open', () => {
    if (state.ws !== ws) return
    state.attempt = 0
    setConnection('live', 'Live')
    // events may have been missed while disconnected (or before this socket opened)
    Promise.all([refreshDownloads(), refreshGateways()]).catch((err: unknown) => {
      if (statusOf(err) !== 401) showMessage('Could not load the downloads: ' + messageOf(err))
    })
  })
  ws.addEventListener('message', (ev) => {
    if (state.ws !== ws) return
    let msg: unknown
    try { msg = JSON.parse(String(ev.data)) } catch { return }
    onEvent(msg)
  })
  ws.addEventListener('close', () => {
    if (state.ws !== ws) return
    state.ws = null
    scheduleReconnect()
  })
}

/** Exponential backoff with jitter: 0.5 s, 1 s, 2 s … up to 15 s. */
function scheduleReconnect (): void {
  if (state.stopped) return
  const base = Math.min(15000, 500 * Math.pow(2, state.attempt))
  const ms = Math.round(base / 2 + Math.random() * base / 2)
  state.attempt++
  setConnection('offline', 'Disconnected, retrying in ' + Math.ceil(ms / 1000) + ' s…')
  clearTimeout(state.reconnectTimer)
  state.reconnectTimer = setTimeout(reconnect, ms)
}

/** Checks the service answers and takes the token first: a refused WebSocket says neither. */
function reconnect (): void {
  if (state.stopped) return
  if (state.attempt > 0) setConnection('connecting', 'Reconnecting…')
  refreshDownloads().then(() => {
    authorized()
    connect()
  }, (err: unknown) => {
    if (statusOf(err) === 401) return
    scheduleReconnect()
  })
}

/** Loads the list first (it shows at once, and a 401 asks for the token), then opens the socket. */
export function start (): void {
  state.stopped = false
  state.attempt = 0
  setConnection('connecting', 'Connecting…')
  reconnect()
}
