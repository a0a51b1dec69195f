/**
 * The list of `cidget add --from FILE`: one download a line, either a bare
 * target or a JSON object `{"target", "output", "sha256", "mode", "priority",
 * "gateways"}`; blank lines and lines starting with `#` are skipped. The whole
 * list is checked before anything is queued, and a bad line is named by its
 * number.
 */
import { readFile } from 'node:fs/promises'
import { isAbsolute, resolve, sep } from 'node:path'
import { CidgetError, toCidgetError } from '../core/errors.js'
import { MODES, type Mode } from '../core/types.js'
import type { QueueItem } from '../engine/downloader.js'
import { normalizeGateway, parseTarget } from '../target/parse.js'
import { isWithin } from '../sink/confine.js'

/** Priorities a download may have (those the service accepts). */
export const PRIORITY_RANGE = { min: -1_000_000, max: 1_000_000 } as const

/** One download of the list and the line it came from (1-based). */
export interface QueueLine {
  line: number
  item: QueueItem
}

const KEYS = new Set(['target', 'output', 'sha256', 'mode', 'priority', 'gateways'])

/** Reads `--from FILE` (`-`: standard input) as text. */
export async function readSource (file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = []
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks).toString('utf8')
  }
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Cannot read --from ${file}: ${(err as Error).message}`, { cause: err })
  }
}

/** How the list names itself in messages: the file, or "standard input". */
export function sourceName (file: string): string {
  return file === '-' ? 'standard input' : file
}

/**
 * Checks what can be checked without the state or the file system: the
 * target, mode, SHA-256, priority, gateways, and that the output is a path
 * relative to the queue's directory that does not leave it. Throws the
 * problem's CidgetError.
 */
export function checkItem (item: QueueItem, dir = 'the directory downloads are queued in'): QueueItem {
  parseTarget(item.target)
  if (item.mode !== undefined && !MODES.includes(item.mode)) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `mode must be verified, path or car, got ${JSON.stringify(item.mode)}`)
  }
  const out: QueueItem = { ...item }
  if (item.sha256 !== undefined) {
    const h = item.sha256.trim()
    if (!/^[0-9a-fA-F]{64}$/.test(h)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `sha256 must be 64 hex digits, got ${JSON.stringify(item.sha256)}`)
    out.sha256 = h.toLowerCase()
  }
  if (item.priority !== undefined && (!Number.isInteger(item.priority) || item.priority < PRIORITY_RANGE.min || item.priority > PRIORITY_RANGE.max)) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `priority must be an integer from ${PRIORITY_RANGE.min} to ${PRIORITY_RANGE.max}, got ${JSON.stringify(item.priority)}`)
  }
  if (item.gateways !== undefined) {
    if (item.gateways.length > 64) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `gateways lists ${item.gateways.length} URLs; at most 64`)
    for (const g of item.gateways) normalizeGateway(g)
  }
  if (item.output !== undefined) checkOutput(item.output, dir)
  return out
}

/** The output must name a path inside the queue's directory (`dir` names it), whatever that directory is. */
function checkOutput (output: string, dir: string): void {
  if (output === '') throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'output must not be empty')
  if (output.includes('\0')) throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'The output path contains a NUL byte')
  const outside = (why: string): CidgetError => new CidgetError('CIDGET_ERR_OUTSIDE_DIR', `Output "${output}" is outside ${dir}: ${why}`)
  if (isAbsolute(output) || /^[a-zA-Z]:[\\/]/.test(output) || output.startsWith('\\')) throw outside('give a path relative to it')
  const root = resolve(sep, 'queue-root')
  if (!isWithin(root, resolve(root, output))) throw outside('it leaves the directory')
}

/** A JSON line as a QueueItem, or the reason it is not one. */
function fromJson (text: string): QueueItem {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `not valid JSON: ${(err as Error).message}`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'a JSON line must be an object like {"target": "bafy…"}')
  }
  const o = value as Record<string, unknown>
  for (const key of Object.keys(o)) {
    if (!KEYS.has(key)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `unknown field "${key}" (fields: ${[...KEYS].join(', ')})`)
  }
  const item: QueueItem = { target: '' }
  if (typeof o.target !== 'string' || o.target.trim() === '') throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'the field "target" must be a non-empty string')
  item.target = o.target.trim()
  for (const key of ['output', 'sha256', 'mode'] as const) {
    const v = o[key]
    if (v === undefined || v === null) continue
    if (typeof v !== 'string') throw new CidgetError('CIDGET_ERR_BAD_OPTION', `the field "${key}" must be a string, got ${JSON.stringify(v)}`)
    if (key === 'mode') item.mode = v as Mode
    else item[key] = v
  }
  if (o.priority !== undefined && o.priority !== null) {
    if (typeof o.priority !== 'number') throw new CidgetError('CIDGET_ERR_BAD_OPTION', `the field "priority" must be an integer, got ${JSON.stringify(o.priority)}`)
    item.priority = o.priority
  }
  if (o.gateways !== undefined && o.gateways !== null) {
    if (!Array.isArray(o.gateways) || !o.gateways.every(g => typeof g === 'string')) {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'the field "gateways" must be a list of URLs')
    }
    item.gateways = o.gateways as string[]
  }
  return item
}

/**
 * Parses and checks the whole list. `defaults` fill in what a line leaves out
 * (the command's --mode, --priority, --gateway); `dir` names the directory
 * outputs are relative to, for messages. The first bad line throws its
 * CidgetError with a message that starts `<source> line <n>`.
 */
export function parseQueue (text: string, source: string, defaults: Pick<QueueItem, 'mode' | 'priority' | 'gateways'> = {}, dir?: string): QueueLine[] {
  const out: QueueLine[] = []
  const lines = text.split('\n')
  for (const [i, raw] of lines.entries()) {
    const line = i + 1
    const t = raw.trim()
    if (t === '' || t.startsWith('#')) continue
    let item: QueueItem | undefined
    try {
      item = t.startsWith('{') ? fromJson(t) : { target: t }
      if (item.mode === undefined && defaults.mode !== undefined) item.mode = defaults.mode
      if (item.priority === undefined && defaults.priority !== undefined) item.priority = defaults.priority
      if (item.gateways === undefined && defaults.gateways !== undefined) item.gateways = defaults.gateways
      out.push({ line, item: checkItem(item, dir) })
    } catch (err) {
      throw lineError(err, source, line, item?.target)
    }
  }
  return out
}

/** The error of one line: same code, message prefixed by where it is. */
export function lineError (err: unknown, source: string, line: number, target?: string): CidgetError {
  const e = toCidgetError(err)
  // a bad target's own message quotes it already
  const shown = target === undefined || e.code === 'CIDGET_ERR_BAD_TARGET' ? '' : ` (${JSON.stringify(target.length > 80 ? `${target.slice(0, 77)}…` : target)})`
  const where = `${source} line ${line}${shown}`
  return new CidgetError(e.code, `${where}: ${e.message}`, { cause: err })
}
