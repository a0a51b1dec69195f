/**
 * JSON schemas of the API's requests (every object closed with
 * `additionalProperties: false`) and the one formatter of their errors.
 */
import type { FastifySchemaValidationError, SchemaErrorDataVar } from 'fastify/types/schema.js'
import { MODES, STATUSES, type DownloadStatus, type Mode } from '../core/types.js'
import { CLEARABLE_STATUSES, type ClearableStatus } from '../engine/clear.js'

/** Page size of `GET /api/downloads`. */
export const LIST_LIMIT = { default: 100, max: 1000 } as const

export interface AddBody {
  target: string
  output?: string
  mode?: Mode
  sha256?: string
  gateways?: string[]
  priority?: number
  limitRate?: number | string
}

/** A bandwidth limit in a request: bytes per second, or curl's syntax (`500K`, `2M`); null or 0: none. */
const rateSchema = {
  anyOf: [
    { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    { type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*[kKmMgG]?\\s*$', maxLength: 32 },
    { type: 'null' }
  ]
} as const

export interface ClearBody { status: ClearableStatus[] }

/** `POST /api/downloads/clear`: the statuses of the records to remove. */
export const clearBodySchema = {
  type: 'object',
  required: ['status'],
  additionalProperties: false,
  properties: { status: { type: 'array', minItems: 1, maxItems: 3, uniqueItems: true, items: { enum: [...CLEARABLE_STATUSES] } } }
} as const

export interface LimitBody { limitRate: number | string | null }

export const limitBodySchema = {
  type: 'object',
  required: ['limitRate'],
  additionalProperties: false,
  properties: { limitRate: rateSchema }
} as const

export const addBodySchema = {
  type: 'object',
  required: ['target'],
  additionalProperties: false,
  properties: {
    target: { type: 'string', minLength: 1, maxLength: 4096 },
    output: { type: 'string', minLength: 1, maxLength: 4096 },
    mode: { type: 'string', enum: [...MODES] },
    sha256: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' },
    gateways: { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 2048 } },
    priority: { type: 'integer', minimum: -1_000_000, maximum: 1_000_000 },
    limitRate: rateSchema
  }
} as const

export interface ListQuery {
  status?: DownloadStatus
  limit?: number
  cursor?: string
}

export const listQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: { type: 'string', enum: [...STATUSES] },
    limit: { type: 'integer', minimum: 1, maximum: LIST_LIMIT.max },
    cursor: { type: 'string', pattern: '^[0-9]{1,15}$' }
  }
} as const

export interface IdParams { id: number }

export const idParamsSchema = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: { id: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER } }
} as const

/** Routes without a query string still refuse one with unknown keys. */
export const noQuerySchema = { type: 'object', additionalProperties: false, properties: {} } as const

export interface DeleteQuery { deleteFile?: boolean }

export const deleteQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { deleteFile: { type: 'boolean' } }
} as const

export interface EventsQuery { token?: string }

export const eventsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { token: { type: 'string', maxLength: 1024 } }
} as const

const PART_NAMES: Record<SchemaErrorDataVar, string> = { body: 'body', querystring: 'query', params: 'path', headers: 'headers' }

/** One readable message for a failed validation: `body has an unknown field "x"`, `query.limit must be <= 1000`. */
export function formatValidationErrors (errors: FastifySchemaValidationError[], dataVar: SchemaErrorDataVar): Error {
  const messages = errors.map((e) => {
    const where = PART_NAMES[dataVar] + e.instancePath.replace(/\//g, '.')
    if (e.keyword === 'additionalProperties') return `${where} has an unknown field "${String(e.params.additionalProperty)}"`
    if (e.keyword === 'required') return `${where} needs the field "${String(e.params.missingProperty)}"`
    if (e.keyword === 'enum') return `${where} must be one of ${(e.params.allowedValues as unknown[]).map(String).join(', ')}`
    if (e.keyword === 'pattern' && e.instancePath === '/sha256') return `${where} must be 64 hex digits`
    return `${where} ${e.message ?? 'is invalid'}`
  })
  return Object.assign(new Error(messages.join('; ')), { statusCode: 400 })
}
