/**
 * The client's constants, the shapes it reads from the service, and its one
 * mutable state object.
 *
 * @module
 */

import type { DownloadRecord, DownloadStatus } from '../../../core/types.js'

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

/** A `progress` event's data (core/events.ts `ProgressEvent`, as JSON). */
export interface ProgressData {
  id: number
  bytes: number
  total: number | null
  speed: number
  gateway: string | null
  files: number | null
}

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

export const state = {
  token: null as string | null,
  /** id → record */
  downloads: new Map<number, DownloadRecord>(),
  /** id → the latest progress event data */
  live: new Map<number, ProgressData>(),
  /** id → a note from the latest retry or repair */
  notes: new Map<number, string>(),
  /** id → row elements */
  rows: new Map<number, Row>(),
  /** id → Date.now() when a status event last changed the record (newer than a list answer sent before it) */
  touched: new Map<number, number>(),
  /** id → { again } for records being fetched one by one */
  fetching: new Map<number, { again: boolean }>(),
  dirty: new Set<number>(),
  /** ids whose record was fetched again because progress came without a total */
  sizeAsked: new Set<number>(),
  frame: 0,
  ws: null as WebSocket | null,
  attempt: 0,
  reconnectTimer: 0,
  gatewaysAt: 0,
  gatewayTimer: 0,
  stopped: false
}

export function isActive (status: DownloadStatus): boolean {
  return ACTIVE.includes(status)
}
