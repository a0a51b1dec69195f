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
/** Which action a status allows (mirrors the engine's transitions). */
export const ALLOWED: Readonly<Record<Action, readonly DownloadStatus[]>> = {
  pause: ['pending', 'in_progress', 'resuming'],
  resume: ['paused', 'failed'],
  cancel: ['pending', 'in_progress', 'resuming', 'paused', 'failed'],
  remove: ['pending', 'in_progress', 'resuming', 'paused', 'success', 'failed', 'cancelled']
}
export const ACTION_LABELS: Readonly<Record<Action, string>> = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel', remove: 'Remove' }
export const ACTIONS = Object.keys(ACTION_LABELS) as Action[]
export const PAGE_LIMIT = 500
export const MAX_PAGES = 100
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

/** The elements of one download's row that change. */
export interface Row {
  tr: HTMLTableRowElement
  name: HTMLElement
  sub: HTMLElement
  out: HTMLElement
  status: HTMLElement
  error: HTMLElement
  bar: HTMLElement
  fill: HTMLElement
  text: HTMLElement
  note: HTMLElement
  buttons: Record<Action, HTMLButtonElement>
  busy: boolean
}

export interface State {
  token: string | null
  /** id → record */
  downloads: Map<number, DownloadRecord>
  /** id → the latest progress event data */
  live: Map<number, ProgressData>
  /** id → a note from the latest retry or repair */
  notes: Map<number, string>
  /** id → row elements */
  rows: Map<number, Row>
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
