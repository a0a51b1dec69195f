/**
 * The one place where errors become HTTP answers: a status from the error's
 * code and kind, and the body `{ error: { code, message } }`.
 */
import { CidgetError, ERROR_CODES, toCidgetError, type ErrorCode } from '../core/errors.js'

/** The body of every error answer of the service. */
export interface ErrorBody {
  error: { code: ErrorCode, message: string }
}

/** The HTTP status of an error code. */
export function httpStatusForCode (code: ErrorCode): number {
  switch (code) {
    case 'CIDGET_ERR_UNAUTHORIZED':
      return 401
    case 'CIDGET_ERR_FOREIGN_ORIGIN':
      return 403
    case 'CIDGET_ERR_UNSUPPORTED_MEDIA_TYPE':
      return 415
    case 'CIDGET_ERR_ADDRESS_REFUSED': // a gateway the client named: its request is at fault
      return 400
    case 'CIDGET_ERR_UNKNOWN_DOWNLOAD':
    case 'CIDGET_ERR_NOT_FOUND': // from the API, only "no such route": the engine records a missing CID on the download instead
      return 404
    case 'CIDGET_ERR_INVALID_TRANSITION':
    case 'CIDGET_ERR_LEASE_HELD':
    case 'CIDGET_ERR_OUTPUT_EXISTS':
    case 'CIDGET_ERR_OUTPUT_IN_USE':
      return 409
    case 'CIDGET_ERR_STATE_UNAVAILABLE':
      return 503
    default:
      return ERROR_CODES[code].kind === 'input' ? 400 : 500
  }
}

/** What fastify throws for a request it refuses before a handler runs (validation, body parsing, size). */
interface FastifyClientError {
  statusCode: number
  message: string
  code?: string
}

function isFastifyClientError (err: unknown): err is FastifyClientError {
  if (err === null || typeof err !== 'object') return false
  const status = (err as { statusCode?: unknown }).statusCode
  return typeof status === 'number' && status >= 400 && status < 500 && typeof (err as { message?: unknown }).message === 'string'
}

/**
 * Any thrown value as the CidgetError the service answers with. Fastify's own
 * client errors (schema validation, unparsable JSON, an oversized body, an
 * unsupported content type) are all `CIDGET_ERR_BAD_OPTION`.
 */
export function toServiceError (err: unknown): CidgetError {
  if (err instanceof CidgetError) return err
  if (isFastifyClientError(err)) {
    return new CidgetError('CIDGET_ERR_BAD_OPTION', err.message, { cause: err })
  }
  return toCidgetError(err)
}

/** The HTTP status and body for any thrown value. */
export function errorResponse (err: unknown): { status: number, body: ErrorBody, error: CidgetError } {
  const error = toServiceError(err)
  return { status: httpStatusForCode(error.code), body: { error: { code: error.code, message: error.message } }, error }
}
