import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { CidgetError } from '../core/errors.js'
import { DEFAULT_POLICY, type DownloadPolicy } from '../core/policy.js'
import { checkProxyUrl } from '../gateways/proxy.js'
import type { DagLimits } from '../strategies/verified/index.js'

/** The settings a config file or CIDGET_* variables may carry. */
export type Settings = Partial<DownloadPolicy> & {
  state?: string
  gateways?: string[]
  routers?: string[]
  dnsResolvers?: string[]
  userAgent?: string
  proxy?: string
  concurrency?: number
  leaseMs?: number
  heartbeatMs?: number
  blockConcurrency?: number
  runBlocks?: number
  hedgeAfterMs?: number
  limits?: Partial<DagLimits>
}

const NUMBER_KEYS = [...Object.keys(DEFAULT_POLICY), 'concurrency', 'leaseMs', 'heartbeatMs', 'blockConcurrency', 'runBlocks', 'hedgeAfterMs'] as const
/** The DAG limits: flat keys in the file and the environment, the Downloader's `limits` inside. */
export const LIMIT_KEYS = ['maxEntries', 'maxDepth', 'maxSize'] as const
const KEYS = new Set<string>([...NUMBER_KEYS, ...LIMIT_KEYS, 'state', 'gateways', 'routers', 'dnsResolvers', 'userAgent', 'proxy'])

/** `maxResumeAttempts` → `CIDGET_MAX_RESUME_ATTEMPTS`. */
export function envName (key: string): string {
  return 'CIDGET_' + key.replace(/[A-Z]/g, c => '_' + c).toUpperCase()
}

function num (key: string, value: unknown, from: string): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: ${key} must be a non-negative number, got ${JSON.stringify(value)}`)
  }
  return n
}

function positiveInt (key: string, value: unknown, from: string): number {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: ${key} must be a positive integer, got ${JSON.stringify(value)}`)
  }
  return n
}

function merge (into: Settings, raw: Record<string, unknown>, from: string): void {
  for (const [key, value] of Object.entries(raw)) {
    if (!KEYS.has(key)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: unknown setting "${key}"`)
    if (key === 'userAgent') {
      if (typeof value !== 'string' || value.trim() === '' || /[\r\n\0]/.test(value)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: userAgent must be one line of text`)
      into.userAgent = value
    } else if (key === 'proxy') {
      if (typeof value !== 'string' || value.trim() === '') throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: proxy must be a URL (http://[user:password@]host:port)`)
      into.proxy = checkProxyUrl(value, `${from}: proxy`)
    } else if (key === 'state') {
      if (typeof value !== 'string' || value === '') throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: state must be a file path or a postgres:// URL`)
      into.state = value
    } else if (key === 'gateways') {
      const list = typeof value === 'string' ? value.split(',').map(s => s.trim()).filter(s => s !== '') : value
      if (!Array.isArray(list) || list.length === 0 || !list.every(g => typeof g === 'string')) {
        throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: gateways must be a non-empty list of URLs`)
      }
      into.gateways = list as string[]
    } else if (key === 'routers' || key === 'dnsResolvers') {
      // routers may be an empty list (names then resolve through the gateways and DNS only)
      const list = typeof value === 'string' ? value.split(',').map(s => s.trim()).filter(s => s !== '') : value
      if (!Array.isArray(list) || (key === 'dnsResolvers' && list.length === 0) || !list.every(g => typeof g === 'string')) {
        throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: ${key} must be a ${key === 'dnsResolvers' ? 'non-empty ' : ''}list of URLs`)
      }
      into[key] = list as string[]
    } else if ((LIMIT_KEYS as readonly string[]).includes(key)) {
      into.limits = { ...into.limits, [key]: positiveInt(key, value, from) }
    } else {
      (into as Record<string, number>)[key] = num(key, value, from)
    }
  }
}

/**
 * Settings from, in order: `~/.cidget/config.json` (or `CIDGET_CONFIG`), then
 * `CIDGET_*` variables. Flags are applied by each command on top.
 */
export function loadSettings (env: NodeJS.ProcessEnv = process.env): Settings {
  const out: Settings = {}
  const file = env.CIDGET_CONFIG ?? join(homedir(), '.cidget', 'config.json')
  let text: string | undefined
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if (env.CIDGET_CONFIG !== undefined) {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Cannot read config file ${file}: ${(err as Error).message}`)
    }
  }
  if (text !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Config file ${file} is not valid JSON: ${(err as Error).message}`)
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Config file ${file} must hold a JSON object`)
    }
    merge(out, parsed as Record<string, unknown>, file)
  }
  const fromEnv: Record<string, unknown> = {}
  for (const key of KEYS) {
    const v = env[envName(key)]
    // CIDGET_ROUTERS set and empty: no routers (as `routers: []` in the file); other empty variables are unset
    if (v !== undefined && (v !== '' || key === 'routers')) fromEnv[key] = v
  }
  merge(out, fromEnv, 'environment')
  return out
}
