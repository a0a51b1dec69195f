/**
 * Resolving an `/ipns/` path to the CID and path it names, through IPNS
 * records (verified) and DNSLink, following chains (`dnslink=/ipns/k51…`, a
 * record whose value is another name) to a bound and refusing loops.
 *
 * @module
 */

import { CidgetError, toCidgetError } from '../core/errors.js'
import type { HttpClient } from '../gateways/http.js'
import { parseCid } from '../target/parse.js'
import { SYSTEM_RESOLVER, dohLookup, lookupDnslink, systemLookup, type TxtLookup } from './dnslink.js'
import { betterRecord, fetchIpnsRecord, verifyIpnsRecord, type IpnsRecordAnswer, type RecordSource } from './ipns.js'
import { parseIpnsName } from '../target/name.js'

/** Names followed before a chain is refused as too long (each `/ipns/` step counts). */
export const MAX_NAME_DEPTH = 16
/** Once one valid record arrived, how long the other sources still have to send a newer one. */
export const DEFAULT_SETTLE_MS = 1500

export interface NameResolverInit {
  http: HttpClient
  /** Trustless gateways asked for IPNS records (`?format=ipns-record`). */
  gateways: readonly string[]
  /** Delegated routers asked for IPNS records (`/routing/v1/ipns/…`). */
  routers: readonly string[]
  /** DNS-over-HTTPS JSON endpoints, or `system`, asked in order for DNSLink. */
  dnsResolvers: readonly string[]
  /** See {@link DEFAULT_SETTLE_MS}. */
  settleMs?: number
  /** See {@link MAX_NAME_DEPTH}. */
  maxDepth?: number
  now?: () => number
  /** TXT lookups by resolver URL (tests); default DNS-over-HTTPS through `http`, or the system resolver. */
  lookups?: (resolver: string) => TxtLookup
  /** Told of each source that failed or sent a record that does not verify (its mark); the resolution goes on. */
  onProblem?: (source: string, err: CidgetError) => void
}

/** What a name resolved to, as the state keeps it. */
export interface Resolution {
  /** The name as given, canonical: `/ipns/k51…` or `/ipns/example.org` (no path). */
  name: string
  /** The CID the chain ends at, and the path inside it (the chain's paths and the one after the name). */
  cid: string
  path: string
  /** The first IPNS record on the way (the name's own, for a key): its sequence (decimal) and validity. */
  sequence: string | null
  validity: string | null
  /** The record's validity in ms since the epoch, when there is one. */
  validUntil: number | null
  resolvedAt: number
  /** Each step: `/ipns/…` then what it pointed to, ending with `/ipfs/…`. */
  chain: string[]
}

interface Step { value: string, record: IpnsRecordAnswer | undefined }

export class NameResolver {
  readonly #init: NameResolverInit
  readonly #now: () => number

  constructor (init: NameResolverInit) {
    this.#init = init
    this.#now = init.now ?? Date.now
  }

  /**
   * Resolves `/ipns/<name>` followed by `rest` ('' or '/a/b'). Throws
   * CIDGET_ERR_BAD_TARGET (a name that is neither a key nor a domain, or a
   * value that is not a path), CIDGET_ERR_NAME_NOT_RESOLVED (no source gave a
   * valid answer: the message says what each said), CIDGET_ERR_NAME_LOOP.
   */
  async resolve (name: string, rest = '', signal?: AbortSignal): Promise<Resolution> {
    const first = parseIpnsName(name, `/ipns/${name}${rest}`)
    const canonical = `/ipns/${first.name}`
    const chain: string[] = [canonical + rest]
    const seen = new Set<string>()
    let record: IpnsRecordAnswer | undefined
    let current = first
    let path = rest
    for (;;) {
      if (seen.has(current.name)) {
        throw new CidgetError('CIDGET_ERR_NAME_LOOP', `/ipns/${first.name} leads back to /ipns/${current.name}: ${chain.join(' → ')}`)
      }
      if (seen.size >= (this.#init.maxDepth ?? MAX_NAME_DEPTH)) {
        throw new CidgetError('CIDGET_ERR_NAME_LOOP', `/ipns/${first.name} goes through more than ${seen.size} names: ${chain.join(' → ')}`)
      }
      seen.add(current.name)
      const step = current.kind === 'key'
        ? await this.#ipns(current.name, current.multihash, signal)
        : { value: await this.#dnslink(current.name, signal), record: undefined }
      record ??= step.record
      const value = step.value.replace(/\/+$/, '')
      const full = value + path
      chain.push(full)
      const m = /^\/(ipfs|ipns)\/([^/]+)(.*)$/s.exec(full)
      if (m === null) throw new CidgetError('CIDGET_ERR_BAD_TARGET', `/ipns/${current.name} points to "${value.slice(0, 100)}", not an /ipfs/ or /ipns/ path`)
      const [, ns, head = '', tail = ''] = m
      if (ns === 'ipfs') {
        const cid = parseCid(head, full)
        return {
          name: canonical,
          cid: cid.toString(),
          path: tail.replace(/\/+$/, ''),
          sequence: record === undefined ? null : record.sequence.toString(),
          validity: record?.validity ?? null,
          validUntil: record?.validUntil ?? null,
          resolvedAt: this.#now(),
          chain
        }
      }
      current = parseIpnsName(head, full)
      path = tail
    }
  }

  /** The best valid record of a key from every gateway and router at once (see {@link DEFAULT_SETTLE_MS}). */
  async #ipns (name: string, multihash: Uint8Array, signal?: AbortSignal): Promise<Step> {
    const sources: RecordSource[] = [
      ...this.#init.gateways.map((url) => ({ kind: 'gateway' as const, url })),
      ...this.#init.routers.map((url) => ({ kind: 'router' as const, url }))
    ]
    if (sources.length === 0) throw new CidgetError('CIDGET_ERR_NAME_NOT_RESOLVED', `No gateway or router to ask for the record of /ipns/${name}`)
    const stop = new AbortController()
    const onAbort = (): void => { stop.abort(signal?.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
    const problems: string[] = []
    let best: IpnsRecordAnswer | undefined
    let settle: ReturnType<typeof setTimeout> | undefined
    try {
      await new Promise<void>((resolve) => {
        let left = sources.length
        const finish = (): void => { if (--left === 0) resolve() }
        for (const source of sources) {
          (async () => {
            const bytes = await fetchIpnsRecord(this.#init.http, source, name, stop.signal)
            const answer = await verifyIpnsRecord(bytes, multihash, source.url, this.#now())
            best = best === undefined ? answer : betterRecord(best, answer)
            settle ??= setTimeout(resolve, this.#init.settleMs ?? DEFAULT_SETTLE_MS)
          })().catch((err: unknown) => {
            if (stop.signal.aborted) return
            const e = toCidgetError(err)
            problems.push(e.message)
            this.#init.onProblem?.(source.url, e)
          }).finally(finish)
        }
      })
    } finally {
      clearTimeout(settle)
      signal?.removeEventListener('abort', onAbort)
      stop.abort()
    }
    signal?.throwIfAborted()
    if (best === undefined) {
      throw new CidgetError('CIDGET_ERR_NAME_NOT_RESOLVED', `No valid IPNS record for /ipns/${name}: ${summary(problems)}`)
    }
    return { value: best.value, record: best }
  }

  /** The DNSLink of a domain, from the first resolver that answers. */
  async #dnslink (domain: string, signal?: AbortSignal): Promise<string> {
    const resolvers = this.#init.dnsResolvers
    if (resolvers.length === 0) throw new CidgetError('CIDGET_ERR_NAME_NOT_RESOLVED', `No DNS resolver to ask for the DNSLink of ${domain}`)
    const problems: string[] = []
    for (const resolver of resolvers) {
      const lookup = this.#init.lookups?.(resolver) ??
        (resolver === SYSTEM_RESOLVER ? systemLookup() : dohLookup(this.#init.http, resolver))
      let value: string | undefined
      try {
        value = await lookupDnslink(lookup, domain, signal)
      } catch (err) {
        signal?.throwIfAborted()
        const e = toCidgetError(err)
        problems.push(e.message)
        this.#init.onProblem?.(resolver, e)
        continue
      }
      if (value === undefined) {
        throw new CidgetError('CIDGET_ERR_NAME_NOT_RESOLVED', `${domain} has no DNSLink (no "dnslink=/ipfs/…" or "dnslink=/ipns/…" TXT record at _dnslink.${domain}, says ${resolver})`)
      }
      return value
    }
    throw new CidgetError('CIDGET_ERR_NAME_NOT_RESOLVED', `No DNS resolver answered for ${domain}: ${summary(problems)}`)
  }
}

/** The sources' problems in one line, at most five of them. */
function summary (problems: readonly string[]): string {
  if (problems.length === 0) return 'no source answered'
  const shown = problems.slice(0, 5).join('; ')
  return problems.length > 5 ? `${shown}; and ${problems.length - 5} more` : shown
}
