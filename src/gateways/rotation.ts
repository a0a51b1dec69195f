import type { CidgetError } from '../core/errors.js'
import type { GatewayHealth, HealthRegistry } from './health.js'
import type { Choice, GatewaySelector } from './selector.js'

interface GatewayState {
  failures: number
  timeouts: number
  blockedUntil: number
  dead: CidgetError | undefined
  /** The process-wide back-off of the gateway, when the rotation shares one. */
  health: GatewayHealth | undefined
}

/**
 * The order in which one download tries its gateways (path mode): stay on the
 * current gateway until it fails, then move to the next live one. A gateway is
 * dropped for this download after `maxFailures` failures or at once for a
 * fatal answer (404, a 4xx); `block()` keeps one aside until a time (Retry-After).
 *
 * With a health registry, a gateway another download backs off is passed over
 * until its back-off ends, a Retry-After is known to every download, and one
 * this rotation drops for its failures (not for lacking the content) backs off
 * for the next download too.
 */
export class GatewayRotation implements GatewaySelector<string> {
  readonly #gateways: string[]
  readonly #state = new Map<string, GatewayState>()
  readonly #maxFailures: number
  #index = 0

  constructor (gateways: string[], preferred: string | null, maxFailures: number, health?: HealthRegistry) {
    if (gateways.length === 0) throw new Error('GatewayRotation needs at least one gateway')
    this.#gateways = gateways
    this.#maxFailures = maxFailures
    for (const g of gateways) this.#state.set(g, { failures: 0, timeouts: 0, blockedUntil: 0, dead: undefined, health: health?.get(g) })
    const at = preferred === null ? -1 : gateways.indexOf(preferred)
    if (at !== -1) this.#index = at
  }

  #s (gateway: string): GatewayState {
    const s = this.#state.get(gateway)
    if (s === undefined) throw new Error(`unknown gateway ${gateway}`)
    return s
  }

  get alive (): number {
    let n = 0
    for (const s of this.#state.values()) if (s.dead === undefined) n++
    return n
  }

  /** Errors of the dropped gateways, in list order. */
  get deadErrors (): CidgetError[] {
    const out: CidgetError[] = []
    for (const g of this.#gateways) {
      const d = this.#s(g).dead
      if (d !== undefined) out.push(d)
    }
    return out
  }

  /**
   * The gateway to ask next: the current one if live and not blocked, else the
   * next live unblocked one; when all live ones are blocked, the one free first
   * and how long to wait for it. Undefined when every gateway is dropped.
   */
  pick (now: number): Choice<string> | undefined {
    let soonest: { i: number, until: number } | undefined
    for (let k = 0; k < this.#gateways.length; k++) {
      const i = (this.#index + k) % this.#gateways.length
      const s = this.#s(this.#gateways[i] as string)
      if (s.dead !== undefined) continue
      const until = Math.max(s.blockedUntil, s.health?.blockedUntil ?? 0)
      if (until <= now) {
        this.#index = i
        return { gateway: this.#gateways[i] as string, waitMs: 0 }
      }
      if (soonest === undefined || until < soonest.until) soonest = { i, until }
    }
    if (soonest === undefined) return undefined
    this.#index = soonest.i
    return { gateway: this.#gateways[soonest.i] as string, waitMs: soonest.until - now }
  }

  /** Moves on to the next gateway in the list (live or not; `pick` skips dead ones). */
  advance (): void {
    this.#index = (this.#index + 1) % this.#gateways.length
  }

  /** Counts a failure; drops the gateway after maxFailures. True if it is still live. */
  fail (gateway: string, err: CidgetError): boolean {
    const s = this.#s(gateway)
    s.failures++
    if (s.failures >= this.#maxFailures) this.#die(s, err)
    return s.dead === undefined
  }

  /** Counts a timeout; returns how many this gateway has had in a row. Drops it after maxFailures. */
  timeout (gateway: string, err: CidgetError): number {
    const s = this.#s(gateway)
    s.timeouts++
    if (s.timeouts >= this.#maxFailures) this.#die(s, err)
    return s.timeouts
  }

  /** Dropped after its failures: the next download lets it rest for its back-off too. */
  #die (s: GatewayState, err: CidgetError): void {
    if (s.dead === undefined) s.health?.backOff(err)
    s.dead = err
  }

  /** Drops a gateway for the rest of this download (it lacks the content, or refused it: no back-off for others). */
  drop (gateway: string, err: CidgetError): void {
    this.#s(gateway).dead = err
  }

  /** Keeps a gateway aside until `until` (a Retry-After), for every download that shares its health. */
  block (gateway: string, until: number, err?: CidgetError): void {
    const s = this.#s(gateway)
    s.blockedUntil = Math.max(s.blockedUntil, until)
    s.health?.blockUntil(until, err)
  }

  /** Why a gateway is aside for every download (another download's failure), if it is. */
  asideBecause (gateway: string): CidgetError | undefined {
    return this.#s(gateway).health?.lastError
  }

  /** Bytes arrived: the gateway's failure streak starts over. */
  succeeded (gateway: string): void {
    const s = this.#s(gateway)
    s.failures = 0
    s.timeouts = 0
    s.health?.served()
  }
}
