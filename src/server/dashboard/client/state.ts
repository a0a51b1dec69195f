/**
 * The client's constants, the shapes it reads from the service, and its one
 * mutable state object.
 *
 * @module
 */

import type { DownloadRecord, DownloadStatus } from '../../../core/types.js'
import type { ProgressEvent } from '../../../core/event-types.js'

export type { DownloadRecord, DownloadStatus }

export const TOKEN_KEY = 'cidget.token'
export const ACTIVE: readonly DownloadStatus[] = ['pending', 'in_progress', 'resuming']

export type Action = 'pause' | 'resume' | 'cancel' | 'remove'
/**
 * The actions a row offers for each status (the engine's transitions, cut to what makes sense):
 * Pause and Cancel while it runs or waits, Resume and Cancel when paused, Retry (resume) and
 * Remove once failed, Remove once done or cancelled.
 */
export const ALLOWED: Readonly<Record<Action, readonly DownloadStatus[]>> = {
  pause: ['pending', 'in_progress', 'resuming'],
  resume: ['paused', 'failed'],
  cancel: ['pending', 'in_progress', 'resuming', 'paused'],
  remove: ['success', 'failed', 'cancelled']
}
export const ACTION_LABELS: Readonly<Record<Action, string>> = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel', remove: 'Remove' }
export const ACTIONS = Object.keys(ACTION_LABELS) as Action[]

/** The list's filters; each status is in one of the four besides `all` (cancelled ones with the failed). */
export type Filter = 'all' | 'active' | 'paused' | 'done' | 'failed'
export const FILTERS: readonly Filter[] = ['all', 'active', 'paused', 'done', 'failed']
export const FILTER_OF: Readonly<Record<DownloadStatus, Exclude<Filter, 'all'>>> = {
  pending: 'active',
  in_progress: 'active',
  resuming: 'active',
  paused: 'paused',
  success: 'done',
  failed: 'failed',
  cancelled: 'failed'
}

/** Records loaded per request of the list, and at most this many requests. */
export const PAGE_LIMIT = 500
export const MAX_PAGES = 100
/** Rows shown at once: the list is drawn a page at a time, however many records there are. */
export const VIEW_PAGE_SIZE = 50
export const GATEWAY_POLL_MS = 2000
export const GATEWAY_IDLE_POLL_MS = 10000

/** A `progress` event's data: the engine's ProgressEvent, as JSON. */
export type ProgressData = ProgressEvent

/** A row of `GET /api/gateways` (the fields the table shows). */
export interface GatewayRow {
  url: string
  requests: number
  errors: number
  invalidBlocks: number
  inFlight: number
  latencyMs: number
  throughputBps: number
  bytes: number
  blockedUntil: number
  dropped: boolean
}

/** The elements of one download's row that change, and the row under it with the error's message. */
export interface Row {
  tr: HTMLTableRowElement
  name: HTMLElement
  sub: HTMLElement
  out: HTMLElement
  status: HTMLElement
  code: HTMLButtonElement
  detail: HTMLTableRowElement
  detailCode: HTMLElement
  detailText: HTMLElement
  bar: HTMLElement
  fill: HTMLElement
  text: HTMLElement
  note: HTMLElement
  buttons: Record<Action, HTMLButtonElement>
  busy: boolean
}

/** Where the page stands with the service's token: asking for it hides everything else. */
export type AuthState = 'checking' | 'needed' | 'ok'

export interface State {
  token: string | null
  /** id → record */
  downloads: Map<number, DownloadRecord>
  /** id → the latest progress event data */
  live: Map<number, ProgressData>
  /** id → a note from the latest retry or repair */
  notes: Map<number, string>
  /** id → row elements, for the rows on the page shown */
  rows: Map<number, Row>
  /** ids whose error message is shown under their row */
  expanded: Set<number>
  filter: Filter
  /** the search box's text, lower case */
  search: string
  /** the page of the list shown, 0 for the newest */
  page: number
  /** the list (filter, search, page) must be drawn again at the next frame */
  viewDirty: boolean
  /** the list has been loaded once (until then the table says it is loading) */
  loaded: boolean
  auth: AuthState
  /** id → Date.now() when a status event last changed the record (newer than a list answer sent before it) */
  touched: Map<number, number>
  /** id → { again } for records being fetched one by one */
  fetching: Map<number, { again: boolean }>
  /** ids to redraw at the next frame */
  dirty: Set<number>
  /** ids whose record was fetched again because progress came without a total */
  sizeAsked: Set<number>
  /** the pending redraw (animation frame or timer), 0 for none */
  frame: number
  ws: WebSocket | null
  /** reconnections since the socket was last live */
  attempt: number
  reconnectTimer: number
  /** Date.now() of the latest gateways request */
  gatewaysAt: number
  gatewayTimer: number
  /** set while the page waits for a token: no socket, no polling */
  stopped: boolean
}

export const state: State = {
  token: null,
  downloads: new Map(),
  live: new Map(),
  notes: new Map(),
  rows: new Map(),
  expanded: new Set(),
  filter: 'all',
  search: '',
  page: 0,
  viewDirty: true,
  loaded: false,
  auth: 'checking',
  touched: new Map(),
  fetching: new Map(),
  dirty: new Set(),
  sizeAsked: new Set(),
  frame: 0,
  ws: null,
  attempt: 0,
  reconnectTimer: 0,
  gatewaysAt: 0,
  gatewayTimer: 0,
  stopped: false
}

export function isActive (status: DownloadStatus): boolean {
  return ACTIVE.includes(status)
}
