/**
 * Choosing the fault for a request: the rules, their budgets and seeded
 * draws, and which faults can apply to which requests.
 *
 * @module
 */

import { CidgetError } from '../../core/errors.js'
import type { Fault, FaultRule, RequestRecord } from './types.js'

interface RuleState {
  rule: FaultRule
  applied: number
  random: () => number
}

/** The rules of one gateway, in order, each with its budget and PRNG. */
export class FaultRules {
  #rules: RuleState[] = []

  /** Appends a rule (after the existing ones). */
  add (rule: FaultRule): void {
    this.#rules.push(ruleState(rule))
  }

  /** Replaces all rules; budgets and PRNGs start afresh. */
  set (rules: FaultRule[]): void {
    this.#rules = rules.map(ruleState)
  }

  clear (): void {
    this.#rules = []
  }

  /** The fault of the first rule that matches, applies, has budget left and wins its draw; that rule is charged. */
  pick (record: RequestRecord): Fault | null {
    for (const state of this.#rules) {
      const { rule } = state
      if (rule.times !== undefined && state.applied >= rule.times) continue
      if (!ruleMatches(rule, record) || !faultApplies(rule.fault, record)) continue
      if (rule.probability !== undefined && !(state.random() < rule.probability)) continue
      state.applied++
      return rule.fault
    }
    return null
  }
}

function ruleState (rule: FaultRule): RuleState {
  validateRule(rule)
  return { rule, applied: 0, random: seededRandom(rule.seed ?? 1) }
}

function validateRule (rule: FaultRule): void {
  const bad = (what: string): never => {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `fault rule: ${what}`)
  }
  const { fault } = rule
  if (rule.times !== undefined && (!Number.isSafeInteger(rule.times) || rule.times < 0)) bad('times must be a non-negative integer')
  if (rule.probability !== undefined && !(rule.probability >= 0 && rule.probability <= 1)) bad('probability must be between 0 and 1')
  switch (fault.type) {
    case 'reset':
    case 'stall':
      if (!(fault.afterBytes >= 0)) bad(`${fault.type}.afterBytes must be >= 0`)
      break
    case 'flip':
      if (fault.atByte !== undefined && !(fault.atByte >= 0)) bad('flip.atByte must be >= 0')
      break
    case 'status':
      if (!Number.isInteger(fault.status) || fault.status < 100 || fault.status > 599) bad('status.status must be an HTTP status')
      break
    case 'throttle':
      if (!(fault.bytesPerSecond > 0)) bad('throttle.bytesPerSecond must be > 0')
      break
    case 'latency':
      if (!(fault.ms >= 0)) bad('latency.ms must be >= 0')
      break
    case 'ignore-range':
    case 'range-not-satisfiable':
    case 'wrong-block':
    case 'refuse':
    case 'no-length':
    case 'endless':
    case 'bad-content-range':
    case 'ignore-scope':
      break
    default:
      bad(`unknown fault type ${(fault as { type: unknown }).type as string}`)
  }
}

function ruleMatches (rule: FaultRule, record: RequestRecord): boolean {
  const m = rule.match
  if (m === undefined) return true
  if (m.method !== undefined && m.method.toUpperCase() !== record.method.toUpperCase()) return false
  if (m.format !== undefined && m.format !== record.format) return false
  if (m.ranged !== undefined && m.ranged !== (record.range !== null)) return false
  if (m.query !== undefined) {
    const query = new URLSearchParams(record.url.split('?')[1] ?? '')
    for (const [name, value] of Object.entries(m.query)) if (query.get(name) !== value) return false
  }
  if (m.path !== undefined) {
    if (typeof m.path === 'string') return m.path === record.path
    m.path.lastIndex = 0 // a /g or /y RegExp keeps state between test() calls
    return m.path.test(record.path)
  }
  return true
}

/** Whether a fault makes sense for this request; one that does not is not applied (and not counted). */
function faultApplies (fault: Fault, record: RequestRecord): boolean {
  switch (fault.type) {
    case 'reset':
    case 'stall':
    case 'flip':
    case 'throttle':
    case 'no-length':
    case 'endless':
      return record.method === 'GET'
    case 'ignore-range':
      return (record.range !== null && (record.method === 'GET' || record.method === 'HEAD')) ||
        (record.format === 'car' && record.url.includes('entity-bytes='))
    case 'bad-content-range':
      return record.range !== null && (record.method === 'GET' || record.method === 'HEAD')
    case 'range-not-satisfiable':
      return record.method === 'GET' || record.method === 'HEAD'
    case 'wrong-block':
      return record.format === 'raw' || record.format === 'car'
    case 'ignore-scope':
      return record.format === 'car'
    default:
      return true
  }
}

/**
 * A small seeded PRNG (mulberry32), uniform in [0, 1): the fault draws of the
 * test gateway, and any test that must replay the same random choices.
 */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
