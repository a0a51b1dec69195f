/**
 * `/metrics` in the Prometheus text format (version 0.0.4). Counters count
 * from the start of this process; the download gauges come from the store.
 */
import type { Downloader } from '../engine/downloader.js'
import { ACTIVE_STATUSES } from '../core/types.js'
import type { ProgressEvent, RepairEvent, RetryEvent, StatusEvent } from '../core/events.js'

/** Counts what the engine's events tell: bytes received and verification failures. */
export class MetricsCollector {
  /** Bytes received by this process, all downloads. */
  bytes = 0
  /** SHA-256 mismatches (each corrupt download a path-mode run threw away, and each that failed for it). */
  hashMismatches = 0
  /** Path mode: blocks of finished files that did not match the CID (and were rewritten). */
  repairedBlocks = 0
  /** Per running download: the bytes its last progress event reported (the point new bytes count from). */
  readonly #last = new Map<number, number>()
  readonly #detach: Array<() => void> = []

  constructor (dl: Downloader) {
    const status = (e: StatusEvent): void => {
      const starts = ACTIVE_STATUSES.includes(e.status) && (e.previous === null || !ACTIVE_STATUSES.includes(e.previous))
      if (starts) {
        // a run starts: it counts from the download's durable size (0 for a fresh one)
        this.#last.delete(e.id)
        if (e.status === 'in_progress') this.#last.set(e.id, 0)
        else {
          void dl.get(e.id).then(rec => {
            if (rec !== undefined && !this.#last.has(e.id)) this.#last.set(e.id, rec.currentSize)
          }, () => {})
        }
      } else if (!ACTIVE_STATUSES.includes(e.status)) {
        this.#last.delete(e.id)
      }
      if (e.status === 'failed' && e.errorCode === 'CIDGET_ERR_HASH_MISMATCH') this.hashMismatches++
    }
    const progress = (e: ProgressEvent): void => {
      const last = this.#last.get(e.id)
      // bytes that went down mean a restart from 0: what it reports now is all new
      if (last !== undefined) this.bytes += e.bytes >= last ? e.bytes - last : e.bytes
      this.#last.set(e.id, e.bytes)
    }
    const retry = (e: RetryEvent): void => {
      if (e.code === 'CIDGET_ERR_HASH_MISMATCH') this.hashMismatches++
    }
    const repaired = (e: RepairEvent): void => { this.repairedBlocks += e.blocks }
    dl.on('cidget:download:status', status)
    dl.on('cidget:download:progress', progress)
    dl.on('cidget:download:retry', retry)
    dl.on('cidget:download:repaired', repaired)
    this.#detach.push(
      () => { dl.off('cidget:download:status', status) },
      () => { dl.off('cidget:download:progress', progress) },
      () => { dl.off('cidget:download:retry', retry) },
      () => { dl.off('cidget:download:repaired', repaired) }
    )
  }

  close (): void {
    for (const d of this.#detach.splice(0)) d()
    this.#last.clear()
  }
}

/** A label value with `\`, `"` and newlines escaped. */
function label (v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function num (n: number): string {
  return Number.isFinite(n) ? String(n) : 'NaN'
}

/** The whole `/metrics` text. */
export async function renderMetrics (dl: Downloader, metrics: MetricsCollector): Promise<string> {
  const counts = await dl.store.countByStatus()
  const gateways = dl.gatewayStats()
  const out: string[] = []
  const family = (name: string, type: 'counter' | 'gauge', help: string, samples: Array<[labels: string, value: number]>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, value] of samples) out.push(`${name}${labels} ${num(value)}`)
  }
  family('cidget_bytes_downloaded_total', 'counter', 'Bytes received from gateways by this process, all downloads.', [['', metrics.bytes]])
  family('cidget_downloads', 'gauge', 'Downloads in the state store, by status.',
    Object.entries(counts).map(([status, n]) => [`{status="${label(status)}"}`, n]))
  family('cidget_gateway_requests_total', 'counter', 'Block requests to each gateway by this process.',
    gateways.map(g => [`{gateway="${label(g.url)}"}`, g.requests]))
  family('cidget_gateway_errors_total', 'counter', 'Failed block requests to each gateway by this process (invalid blocks included).',
    gateways.map(g => [`{gateway="${label(g.url)}"}`, g.errors]))
  family('cidget_gateway_bytes_total', 'counter', 'Verified block bytes received from each gateway by this process.',
    gateways.map(g => [`{gateway="${label(g.url)}"}`, g.bytes]))
  family('cidget_gateway_latency_ms', 'gauge', 'Smoothed (EWMA) time per block request of each gateway, in milliseconds; 0 until measured.',
    gateways.map(g => [`{gateway="${label(g.url)}"}`, g.latencyMs]))
  const invalid = gateways.reduce((sum, g) => sum + g.invalidBlocks, 0)
  family('cidget_verification_failures_total', 'counter', 'Data that failed verification: blocks that did not match their CID, SHA-256 mismatches, and path-mode blocks repaired after the CID check.',
    [['', invalid + metrics.hashMismatches + metrics.repairedBlocks]])
  return out.join('\n') + '\n'
}
