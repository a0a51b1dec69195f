/**
 * A target's file streamed in order, verified, with nothing on disk and
 * nothing in the state (`Downloader.stream`, `cidget get … -o -`).
 *
 * @module
 */
import { CidgetError } from '../core/errors.js'
import type { HttpClient } from '../gateways/http.js'
import { normalizeGateway, parseTarget } from '../target/parse.js'
import { streamVerifiedFile, type StreamResult } from '../strategies/verified/stream.js'
import { dedupe, normalizeSha256 } from './intake.js'
import { resolveNow } from './names.js'
import type { Settings } from './options.js'
import type { Runner } from './run.js'

/** Options of `Downloader.stream`. */
export interface StreamOptions {
  /** Takes the file's bytes in order; resolves when it can take more. */
  write: (bytes: Uint8Array) => Promise<void>
  /** Gateways for this stream. @default the Downloader's (a gateway URL target's own first) */
  gateways?: string[]
  /** Expected SHA-256 (hex): checked at the end (the bytes are out by then: the stream then fails with CIDGET_ERR_HASH_MISMATCH). */
  sha256?: string
  signal?: AbortSignal
  /** After each write: bytes written and the size the file declares. */
  onProgress?: (written: number, total: number) => void
  /** A failed request that another gateway (or a later attempt) takes over. */
  onRetry?: (event: { gateway: string, code: string, message: string, systemCode: string | null, delayMs: number }) => void
}

/** What a finished stream wrote. */
export interface StreamOutcome extends StreamResult {
  /** The name it was resolved from (`/ipns/…`), if any, and the CID and path it resolved to. */
  name: string | null
  root: string
  path: string
}

export interface StreamDeps {
  http: HttpClient
  settings: Settings
  runner: Runner
  checkGateways: (gateways: string[]) => string[]
}

/** Streams the file `targetText` names (see {@link StreamOptions}). */
export async function streamTarget (deps: StreamDeps, targetText: string, opts: StreamOptions): Promise<StreamOutcome> {
  const { settings } = deps
  const target = parseTarget(targetText)
  const sha256 = opts.sha256 === undefined ? null : normalizeSha256(opts.sha256)
  const gateways = deps.checkGateways(opts.gateways !== undefined && opts.gateways.length > 0
    ? opts.gateways.map(normalizeGateway)
    : target.gateway !== undefined ? dedupe([normalizeGateway(target.gateway), ...settings.gateways]) : settings.gateways)
  const internal = new AbortController()
  const onAbort = (): void => { internal.abort(opts.signal?.reason) }
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const at = target.name === undefined ? { cid: target.cid, path: target.path } : await resolveNow(target.name, gateways, deps.http, settings)
    const pool = deps.runner.pool(gateways, { block: () => {}, retry: (e) => { opts.onRetry?.(e) }, gateway: () => {} })
    deps.runner.findProviders(pool, at.cid, internal.signal, () => {})
    const result = await streamVerifiedFile({
      cid: at.cid,
      path: at.path,
      blocks: pool,
      limits: settings.limits,
      concurrency: settings.blockConcurrency,
      runBlocks: settings.runBlocks ?? 16,
      signal: internal.signal,
      write: opts.write,
      ...(opts.onProgress === undefined ? {} : { onBytes: opts.onProgress })
    })
    if (sha256 !== null && result.sha256 !== sha256) {
      throw new CidgetError('CIDGET_ERR_HASH_MISMATCH', `The content of ${at.cid}${at.path} is verified against its CID, but its SHA-256 is ${result.sha256}, not the expected ${sha256}`)
    }
    return { ...result, name: target.name ?? null, root: at.cid, path: at.path }
  } catch (err) {
    if (internal.signal.aborted && opts.signal?.aborted === true) throw opts.signal.reason
    throw err
  } finally {
    // nothing of it goes on in the background
    internal.abort(new CidgetError('CIDGET_ERR_CANCELLED', 'the stream ended'))
    opts.signal?.removeEventListener('abort', onAbort)
  }
}
