import { CidgetError } from '../core/errors.js'
import { parseRetryAfter } from '../core/retry.js'
import { parseContentLength, parseContentRange, parseUnsatisfiedRange } from '../gateways/headers.js'
import type { HttpResponse } from '../gateways/http.js'
import type { DownloadRecord } from '../core/types.js'

/**
 * What a gateway's answer to a path-mode request means for the data held: a body to read
 * (`expected` bytes when it says; a 200 to a Range request restarts from 0 first), the whole
 * file already here, or a refused range (416) to restart from 0 for.
 */
export type Answer =
  | { kind: 'body', expected: number | undefined, size: number | null, rangeIgnored: CidgetError | undefined }
  | { kind: 'complete', size: number }
  | { kind: 'refused', error: CidgetError }

export interface Asked {
  gateway: string
  /** Bytes held: the Range asked for starts here (0: no Range). */
  offset: number
  /** The file's size as known before this answer. */
  size: number | null
  /** Read for a Retry-After given as a date. */
  now: () => number
  maxRetryAfterMs: number
}

/**
 * Reads an answer's status and headers against what was asked. Throws (after discarding the
 * body) for a Content-Range that does not match and for an error status.
 */
export function readAnswer (res: HttpResponse, asked: Asked): Answer {
  const { gateway, offset, size } = asked
  if (res.status === 200) {
    const length = parseContentLength(res.headers['content-length'])
    // The gateway ignored the range (or the If-Range validator failed): never append.
    const rangeIgnored = offset > 0 ? new CidgetError('CIDGET_ERR_RANGE_IGNORED', `${gateway} answered a Range request with 200`, { gateway }) : undefined
    return { kind: 'body', expected: length, size: length ?? size, rangeIgnored }
  }
  if (res.status === 206) {
    const cr = parseContentRange(res.headers['content-range'])
    const length = parseContentLength(res.headers['content-length'])
    if (cr === undefined || cr.start !== offset || (cr.total !== undefined && size !== null && cr.total !== size) ||
        (length !== undefined && length !== cr.end - cr.start + 1)) {
      res.discard()
      throw new CidgetError('CIDGET_ERR_RANGE_MISMATCH',
        `${gateway}: asked for bytes ${offset}- and got Content-Range "${res.headers['content-range'] ?? ''}"` +
        (size !== null ? ` (size ${size})` : ''), { gateway })
    }
    return { kind: 'body', expected: cr.end - cr.start + 1, size: cr.total ?? size, rangeIgnored: undefined }
  }
  res.discard()
  if (res.status === 416 && offset > 0) {
    const total = parseUnsatisfiedRange(res.headers['content-range'])
    // everything is already here
    if ((size !== null && offset === size) || total === offset) return { kind: 'complete', size: offset }
    return { kind: 'refused', error: new CidgetError('CIDGET_ERR_RANGE_NOT_SATISFIABLE', `${gateway} answered 416 at offset ${offset}`, { gateway }) }
  }
  throw statusError(res, gateway, asked.now(), asked.maxRetryAfterMs)
}

/** The error for an HTTP answer that is not 200/206/416. */
function statusError (res: HttpResponse, gateway: string, now: number, maxRetryAfterMs: number): CidgetError {
  const status = res.status
  if (status === 404 || status === 410) {
    return new CidgetError('CIDGET_ERR_NOT_FOUND', `${gateway}: HTTP ${status}, content not found`, { gateway, status })
  }
  const retryAfterMs = parseRetryAfter(res.headers['retry-after'], now, maxRetryAfterMs)
  const wait = retryAfterMs === undefined ? '' : ` (Retry-After ${Math.round(retryAfterMs)} ms)`
  return new CidgetError('CIDGET_ERR_HTTP_STATUS', `${gateway}: HTTP ${status}${wait}`, {
    gateway, status, ...(retryAfterMs === undefined ? {} : { retryAfterMs })
  })
}

/** The error of a run whose every gateway is dropped: not found everywhere, or the last failure. */
export function noGatewayLeft (record: DownloadRecord, dead: readonly CidgetError[], lastError: CidgetError | undefined): CidgetError {
  if (dead.length > 0 && dead.every(e => e.code === 'CIDGET_ERR_NOT_FOUND')) {
    return new CidgetError('CIDGET_ERR_NOT_FOUND', `No gateway has ${record.cid}${record.path} (${dead.length} tried)`)
  }
  const last = lastError ?? dead[dead.length - 1]
  return new CidgetError(last?.code ?? 'CIDGET_ERR_NETWORK',
    `All ${record.gateways.length} gateway(s) failed; last error: ${last?.message ?? 'unknown'}`, { cause: last })
}
