/**
 * Choosing a gateway, behind one interface as aria2's URISelector does: the
 * scored chooser verified mode's pool uses ({@link ScoredSelector}) and the
 * in-order rotation path mode uses (`GatewayRotation` in rotation.ts). Both
 * read the back-off from the process-wide health registry.
 *
 * @module
 */

import type { Gateway } from './gateway.js'

/** A gateway to ask, and how long until it may be asked (0: now). */
export interface Choice<G> {
  gateway: G
  waitMs: number
}

export interface GatewaySelector<G> {
  /**
   * The gateway to ask next among `among` (all when omitted): one usable now
   * (`waitMs` 0), else the one free first and how long until it is.
   * Undefined when none can be asked.
   */
  pick: (now: number, among?: readonly G[]) => Choice<G> | undefined
}

/**
 * Scores gateways by reliability, weighted by their measured throughput and
 * divided by their current load, so that every healthy gateway works in
 * parallel; a gateway backing off or at its request limit is passed over.
 */
export class ScoredSelector implements GatewaySelector<Gateway> {
  readonly #gateways: readonly Gateway[]
  readonly #perGateway: number

  constructor (gateways: readonly Gateway[], perGateway: number) {
    this.#gateways = gateways
    this.#perGateway = perGateway
  }

  /**
   * The best of `among` usable now, else the blocked one free first (with
   * the wait); undefined when every one is at its request limit (a request
   * must end first) or none is left. `load` is what the score is divided by
   * (plus one): by default the requests in flight.
   */
  pick (now: number, among: readonly Gateway[] = this.#gateways, load: (g: Gateway) => number = (g) => g.inFlight, bySpeed = true): Choice<Gateway> | undefined {
    const best = this.best(now, among, load, bySpeed)
    if (best !== undefined) return { gateway: best, waitMs: 0 }
    let soonest: Gateway | undefined
    for (const g of among) {
      if (g.blockedUntil > now && (soonest === undefined || g.blockedUntil < soonest.blockedUntil)) soonest = g
    }
    return soonest === undefined ? undefined : { gateway: soonest, waitMs: soonest.blockedUntil - now }
  }

  /**
   * The best of `among` usable now (not blocked, below its request limit), or
   * undefined; without `bySpeed`, by reliability and load alone (for
   * requests whose pace is not the gateway's).
   */
  best (now: number, among: readonly Gateway[], load: (g: Gateway) => number = (g) => g.inFlight, bySpeed = true): Gateway | undefined {
    let fastest = 0
    for (const g of this.#gateways) if (g.throughputBps !== undefined && g.throughputBps > fastest) fastest = g.throughputBps
    let best: Gateway | undefined
    let bestScore = -1
    for (const g of among) {
      if (g.blockedUntil > now || g.inFlight >= this.#perGateway) continue
      // An unmeasured gateway counts as fast (like an unused one counts as reliable), so each gets tried.
      const speed = !bySpeed || g.throughputBps === undefined || fastest === 0 ? 1 : g.throughputBps / fastest
      // The small floor keeps a gateway that has only failed so far ordered by load rather than tied at 0.
      // Without speed (tree streams, at the walk's pace), reliability weighs a fifth: a gateway whose first
      // requests were out-raced or handed on (reliability 0, no error) still takes its share of the streams
      // (the others carrying one more each); one that fails is backed off or dropped instead.
      const trust = bySpeed ? g.reliability() + 0.01 : 0.8 + 0.2 * g.reliability()
      const score = trust * (0.2 + 0.8 * speed) / (load(g) + 1)
      // without speed, a tie (gateways alike, idle between short streams) goes to the one given fewest so far
      if (score > bestScore || (!bySpeed && score === bestScore && best !== undefined && g.streams < best.streams)) {
        best = g
        bestScore = score
      }
    }
    return best
  }

  /** How long until one of `among` is not blocked: 0 when one is not now (whatever its load). */
  waitEstimate (now: number, among: readonly Gateway[]): number {
    if (among.some((g) => g.blockedUntil <= now)) return 0
    let earliest: number | undefined
    for (const g of among) if (earliest === undefined || g.blockedUntil < earliest) earliest = g.blockedUntil
    return earliest === undefined ? 0 : earliest - now
  }
}
