/**
 * The token (from `#token=…`, kept in this tab's session) and calls to the
 * REST API with it.
 *
 * @module
 */

import { state, TOKEN_KEY } from './state.js'

export class ApiError extends Error {
  readonly status: number
  readonly code: string

  constructor (status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** The HTTP status of a failed call, undefined for anything else thrown. */
export function statusOf (err: unknown): number | undefined {
  return err instanceof ApiError ? err.status : undefined
}

export function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** What to do when the service refuses the token: set by main.ts (it stops the connection and asks). */
let unauthorized: (reason: string) => void = () => {}

export function onUnauthorized (handler: (reason: string) => void): void {
  unauthorized = handler
}

export function storeToken (value: string | null): void {
  state.token = value
  try {
    if (value === null) sessionStorage.removeItem(TOKEN_KEY)
    else sessionStorage.setItem(TOKEN_KEY, value)
  } catch { /* storage disabled: keep it in memory */ }
}

/** The token from '#token=…' (then dropped from the address bar), or from this tab's session. */
export function initialToken (): string | null {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash)
  if (m !== null) {
    const raw = m[1] ?? ''
    let t = ''
    try { t = decodeURIComponent(raw) } catch { t = raw }
    if (t !== '') storeToken(t)
    history.replaceState(null, '', location.pathname + location.search)
  }
  try { return sessionStorage.getItem(TOKEN_KEY) } catch { return state.token }
}

/** A call to the service: the parsed JSON answer (null for none), or an ApiError. */
export async function api<T = unknown> (method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  if (state.token) headers.Authorization = 'Bearer ' + state.token
  const init: RequestInit = { method, headers, cache: 'no-store' }
  // the service takes a state-changing request only as JSON, also one without a body
  if (method !== 'GET') headers['Content-Type'] = 'application/json'
  if (body !== undefined) init.body = JSON.stringify(body)
  let res: Response
  try {
    res = await fetch(path, init)
  } catch {
    throw new ApiError(0, 'NETWORK', 'The service cannot be reached')
  }
  if (res.status === 401) {
    const hadToken = Boolean(headers.Authorization)
    storeToken(null)
    unauthorized(hadToken ? 'The service refused the token. Enter the token that cidget token prints.' : 'This service needs its access token.')
    throw new ApiError(401, 'UNAUTHORIZED', 'The service refused the token')
  }
  if (res.status === 204) return null as T
  const text = await res.text()
  let data: unknown = null
  if (text !== '') {
    try { data = JSON.parse(text) } catch { data = null }
  }
  if (!res.ok) {
    const e = errorBody(data)
    throw new ApiError(res.status, e.code || 'HTTP_' + res.status, e.message || res.statusText || 'Request failed')
  }
  return data as T
}

/** The service's `{ error: { code, message } }`, or empty strings. */
function errorBody (data: unknown): { code: string, message: string } {
  const e = data !== null && typeof data === 'object' ? (data as { error?: unknown }).error : undefined
  if (!e || typeof e !== 'object') return { code: '', message: '' }
  const { code, message } = e as { code?: unknown, message?: unknown }
  return { code: code ? String(code) : '', message: message ? String(message) : '' }
}
