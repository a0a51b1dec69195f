/**
 * The CLI's client of a running `cidget serve`: `cidget add` and the
 * `--server` forms of list, status, pause, resume, cancel and rm. API errors
 * come back as the CidgetErrors they were on the server, so the exit codes are
 * the same as when the command runs locally.
 */
import { request } from 'undici'
import { CidgetError, ERROR_CODES, type ErrorCode } from '../core/errors.js'
import type { StatusEvent } from '../core/events.js'
import { FINAL_STATUSES, type DownloadRecord, type DownloadStatus } from '../core/types.js'
import { defaultStatePath } from '../engine/downloader.js'
import type { ServiceEvent } from '../server/events.js'
import type { DownloadPage } from '../server/routes.js'
import { readTokenFile, tokenFile, checkToken } from '../server/token.js'
import { loadSettings } from './config.js'
import type { ClearableStatus, ClearReport } from '../engine/clear.js'
import type { AddBody } from '../server/schemas.js'

/** Where `cidget add` looks for the service when neither `--server` nor `CIDGET_SERVER` says. */
export const DEFAULT_SERVER = 'http://127.0.0.1:7690'

/** Flags of every command that can act through the service. */
export interface RemoteFlags {
  server?: string
  token?: string
}

/** The body of `POST /api/downloads`, as the service validates it. */
export type AddRequest = AddBody

function normalizeServer (url: string): string {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--server must be a URL like ${DEFAULT_SERVER}, got "${url}"`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--server must be http or https, got "${url}"`)
  return u.origin + u.pathname.replace(/\/+$/, '')
}

export class RemoteClient {
  readonly url: string
  readonly #token: string | undefined

  constructor (url: string, token: string | undefined) {
    this.url = normalizeServer(url)
    this.#token = token
  }

  /**
   * A client for `--server` (else `CIDGET_SERVER`, else the default) with the
   * token of `--token`, else `CIDGET_TOKEN`, else the token file next to the
   * default state (`CIDGET_STATE` or the config file's `state` count), else none.
   */
  static async from (flags: RemoteFlags, env: NodeJS.ProcessEnv = process.env): Promise<RemoteClient> {
    const server = flags.server ?? (env.CIDGET_SERVER !== undefined && env.CIDGET_SERVER !== '' ? env.CIDGET_SERVER : DEFAULT_SERVER)
    let token: string | undefined
    if (flags.token !== undefined) token = checkToken(flags.token, '--token')
    else if (env.CIDGET_TOKEN !== undefined && env.CIDGET_TOKEN !== '') token = checkToken(env.CIDGET_TOKEN, 'CIDGET_TOKEN')
    else token = await readTokenFile(tokenFile(loadSettings(env).state ?? defaultStatePath()))
    return new RemoteClient(server, token)
  }

  async #call<T> (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let res: Awaited<ReturnType<typeof request>>
    try {
      res = await request(this.url + path, {
        method,
        headers: {
          ...(this.#token === undefined ? {} : { authorization: `Bearer ${this.#token}` }),
          // the service takes a state-changing request only as JSON, also one without a body
          ...(method === 'GET' ? {} : { 'content-type': 'application/json' })
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        headersTimeout: 60_000,
        bodyTimeout: 60_000
      })
    } catch (err) {
      throw new CidgetError('CIDGET_ERR_NETWORK', `Cannot reach the cidget service at ${this.url}: ${(err as Error).message}`, { cause: err })
    }
    const text = await res.body.text()
    if (res.statusCode >= 200 && res.statusCode < 300) return (text === '' ? undefined : JSON.parse(text)) as T
    throw apiError(res.statusCode, text, this.url)
  }

  async add (body: AddRequest): Promise<DownloadRecord> {
    return await this.#call('POST', '/api/downloads', body)
  }

  async get (id: number): Promise<DownloadRecord> {
    return await this.#call('GET', `/api/downloads/${id}`)
  }

  async list (opts: { status?: DownloadStatus, limit?: number, cursor?: string | null } = {}): Promise<DownloadPage> {
    const q = new URLSearchParams()
    if (opts.status !== undefined) q.set('status', opts.status)
    if (opts.limit !== undefined) q.set('limit', String(opts.limit))
    if (opts.cursor !== undefined && opts.cursor !== null) q.set('cursor', opts.cursor)
    const qs = q.toString()
    return await this.#call('GET', `/api/downloads${qs === '' ? '' : `?${qs}`}`)
  }

  /** Every download (with this status, and an id above `afterId`), page by page, at most `limit`. */
  async listAll (opts: { status?: DownloadStatus, limit?: number, afterId?: number } = {}): Promise<DownloadRecord[]> {
    const out: DownloadRecord[] = []
    const want = opts.limit ?? Number.MAX_SAFE_INTEGER
    // the service's cursor is the last id of the page before
    let cursor: string | null = opts.afterId === undefined || opts.afterId <= 0 ? null : String(opts.afterId)
    do {
      const page: DownloadPage = await this.list({ ...(opts.status === undefined ? {} : { status: opts.status }), limit: Math.min(1000, want - out.length), cursor })
      out.push(...page.items)
      cursor = page.nextCursor
    } while (cursor !== null && out.length < want)
    return out
  }

  async pause (id: number): Promise<DownloadRecord> {
    return await this.#call('POST', `/api/downloads/${id}/pause`)
  }

  async resume (id: number): Promise<DownloadRecord> {
    return await this.#call('POST', `/api/downloads/${id}/resume`)
  }

  async cancel (id: number): Promise<DownloadRecord> {
    return await this.#call('POST', `/api/downloads/${id}/cancel`)
  }

  async remove (id: number, deleteFile: boolean): Promise<void> {
    await this.#call('DELETE', `/api/downloads/${id}${deleteFile ? '?deleteFile=true' : ''}`)
  }

  /** Removes every download of these ended statuses: the ids removed, and those left with why. */
  async clear (status: readonly ClearableStatus[]): Promise<ClearReport> {
    return await this.#call<ClearReport>('POST', '/api/downloads/clear', { status })
  }

  /**
   * Opens the event stream (SSE) and resolves once the server has subscribed
   * it: every event after that reaches `onEvent`. `close()` ends the stream.
   */
  async events (onEvent: (e: ServiceEvent) => void): Promise<{ close: () => void, ended: Promise<void> }> {
    const controller = new AbortController()
    let res: Awaited<ReturnType<typeof request>>
    try {
      res = await request(`${this.url}/api/events`, {
        headers: { accept: 'text/event-stream', ...(this.#token === undefined ? {} : { authorization: `Bearer ${this.#token}` }) },
        signal: controller.signal,
        bodyTimeout: 0
      })
    } catch (err) {
      throw new CidgetError('CIDGET_ERR_NETWORK', `Cannot reach the cidget service at ${this.url}: ${(err as Error).message}`, { cause: err })
    }
    if (res.statusCode !== 200) throw apiError(res.statusCode, await res.body.text(), this.url)
    const ended = (async () => {
      let buf = ''
      try {
        for await (const chunk of res.body) {
          buf += (chunk as Buffer).toString('utf8')
          let end: number
          while ((end = buf.indexOf('\n\n')) !== -1) {
            const frame = buf.slice(0, end)
            buf = buf.slice(end + 2)
            const data = frame.split('\n').find(l => l.startsWith('data:'))
            if (data !== undefined) onEvent(JSON.parse(data.slice(5).trim()) as ServiceEvent)
          }
        }
      } catch (err) {
        if (!controller.signal.aborted) throw new CidgetError('CIDGET_ERR_NETWORK', `The event stream of ${this.url} broke: ${(err as Error).message}`, { cause: err })
      }
    })()
    return { close: () => { controller.abort() }, ended }
  }

  /**
   * Resumes downloads and waits until each has stopped (success, failed,
   * cancelled or paused again), as a local `cidget resume` does. Downloads
   * another process holds are skipped. Returns their final records.
   */
  async resumeAndWait (ids: number[], skipHeld: boolean): Promise<DownloadRecord[]> {
    const waiting = new Map<number, () => void>()
    const stopped = new Set<number>()
    const stream = await this.events((e) => {
      if (e.type !== 'status') return
      const s = e.data as StatusEvent
      if (FINAL_STATUSES.includes(s.status) || s.status === 'paused') {
        stopped.add(s.id)
        waiting.get(s.id)?.()
      }
    })
    try {
      const started: number[] = []
      for (const id of ids) {
        try {
          await this.resume(id)
          started.push(id)
        } catch (err) {
          if (skipHeld && err instanceof CidgetError && err.code === 'CIDGET_ERR_LEASE_HELD') continue
          throw err
        }
      }
      const broke = stream.ended.then(() => { throw new CidgetError('CIDGET_ERR_NETWORK', `The event stream of ${this.url} ended before the downloads did`) })
      await Promise.race([broke, Promise.all(started.map(async id => {
        if (stopped.has(id)) return
        await new Promise<void>(resolve => { waiting.set(id, resolve) })
      }))])
      return await Promise.all(started.map(async id => await this.get(id)))
    } finally {
      stream.close()
    }
  }
}

/** An error answer of the service as the CidgetError it was. */
function apiError (status: number, text: string, url: string): CidgetError {
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown, message?: unknown } }
    const code = body.error?.code
    const message = body.error?.message
    if (typeof code === 'string' && code in ERROR_CODES && typeof message === 'string') return new CidgetError(code as ErrorCode, message)
  } catch {
    // not the service's error shape: reported below
  }
  return new CidgetError('CIDGET_ERR_HTTP_STATUS', `${url} answered HTTP ${status}, which is not a cidget service answer`, { status })
}
