/**
 * The engine's events and their payloads: types only, so that the dashboard's
 * browser client (which reads them as JSON from `/api/events`) imports them too.
 *
 * @module
 */

import type { DownloadRecord, DownloadStatus } from './types.js'

export interface ProgressEvent {
  id: number
  /** Bytes received and written so far (not necessarily durable yet). */
  bytes: number
  /** Total size, when known. */
  total: number | null
  /**
   * While the total is unknown (a directory), the size its root's links declare:
   * unverified (a DAG may declare anything) and counting the DAG's own bytes, so
   * shown as an estimate (`~`); null otherwise.
   */
  estimate: number | null
  /** Bytes per second, smoothed. */
  speed: number
  gateway: string | null
  /** Directories: files (and symlinks) complete so far; null for a single file. */
  files: number | null
}

export interface StatusEvent {
  id: number
  status: DownloadStatus
  previous: DownloadStatus | null
  error: string | null
  errorCode: string | null
}

/** A recovery action the engine took after a failure. */
export interface RetryEvent {
  id: number
  /** The error that triggered it. */
  code: string
  message: string
  /** The system's code under it (ENOTFOUND, ECONNREFUSED, ECONNRESET…), when the network failed; null otherwise. */
  systemCode: string | null
  gateway: string | null
  /** resume: same offset; restart: from 0; switch: another gateway; wait: backoff or Retry-After. */
  action: 'resume' | 'restart' | 'switch' | 'wait'
  /** Offset the next request starts at. */
  offset: number
  /** Milliseconds waited before the next request. */
  delayMs: number
}

/** Path mode: ranges of the finished file that did not match the CID and were rewritten from verified blocks. */
export interface RepairEvent {
  id: number
  blocks: number
  bytes: number
}

/** An /ipns/ name resolved when its download started: what the run fetches (and a resume continues). */
export interface ResolvedEvent {
  id: number
  /** The name and the path after it, as recorded (`/ipns/example.org/a.bin`). */
  name: string
  cid: string
  path: string
  /** The IPNS record's sequence (decimal) and validity, when the name went through one. */
  sequence: string | null
  validity: string | null
}

/** A gateway's health changed for a download: dropped (invalid block), blocked (Retry-After, backoff), healthy again; or a provider found by routing was added. */
export interface GatewayEvent {
  id: number
  gateway: string
  state: 'dropped' | 'blocked' | 'healthy' | 'added'
  reason: string
}

export interface CidgetEvents {
  'cidget:download:added': [DownloadRecord]
  'cidget:download:status': [StatusEvent]
  'cidget:download:progress': [ProgressEvent]
  'cidget:download:retry': [RetryEvent]
  'cidget:download:repaired': [RepairEvent]
  'cidget:download:resolved': [ResolvedEvent]
  'cidget:gateway': [GatewayEvent]
}
