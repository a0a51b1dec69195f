/**
 * DNSLink: the `_dnslink.<domain>` TXT record (`dnslink=/ipfs/…` or
 * `dnslink=/ipns/…`), read over DNS-over-HTTPS (the JSON API, `Accept:
 * application/dns-json`) or from the system resolver. Unlike an IPNS record,
 * nothing in the answer is signed: what it says is as trustworthy as the
 * resolver that said it.
 *
 * @module
 */

import { Resolver } from 'node:dns/promises'
import { CidgetError, systemCode } from '../core/errors.js'
import { readBody, type HttpClient } from '../gateways/http.js'

export const DNS_JSON_TYPE = 'application/dns-json'
/** Largest DNS-over-HTTPS answer read (a TXT answer is a few hundred bytes). */
export const MAX_DOH_ANSWER_BYTES = 64 * 1024
/** `--dns-resolver system`: the operating system's resolver instead of DNS-over-HTTPS. */
export const SYSTEM_RESOLVER = 'system'
const TXT = 16
const NXDOMAIN = 3

/** The TXT strings of a name, or `undefined` when the name does not exist (NXDOMAIN) or has none. */
export type TxtLookup = (name: string, signal?: AbortSignal) => Promise<string[] | undefined>

function malformed (resolver: string, why: string): CidgetError {
  return new CidgetError('CIDGET_ERR_NAME_NOT_RESOLVED', `${resolver}: ${why}`, { gateway: resolver })
}

/** JSON `data` of a TXT answer: one or more quoted strings (`"a" "b"`), joined; unquoted text as it is. */
export function txtData (data: string): string {
  const parts = [...data.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => (m[1] ?? '').replace(/\\(.)/g, '$1'))
  return parts.length === 0 ? data : parts.join('')
}

/** Reads TXT records of a name from the DNS-over-HTTPS JSON endpoint `resolver` (`https://host/dns-query`). */
export function dohLookup (http: HttpClient, resolver: string): TxtLookup {
  return async (name, signal) => {
    const url = new URL(resolver)
    url.searchParams.set('name', name)
    url.searchParams.set('type', 'TXT')
    const res = await http.request(url.toString(), { gateway: resolver, headers: { accept: DNS_JSON_TYPE }, ...(signal === undefined ? {} : { signal }) })
    if (res.status !== 200) {
      res.discard()
      throw new CidgetError('CIDGET_ERR_HTTP_STATUS', `${resolver}: HTTP ${res.status} for the TXT records of ${name}`, { gateway: resolver, status: res.status })
    }
    const body = await readBody(res, MAX_DOH_ANSWER_BYTES, () => malformed(resolver, `the answer for ${name} is over ${MAX_DOH_ANSWER_BYTES} bytes`))
    let answer: unknown
    try {
      answer = JSON.parse(body.toString('utf8'))
    } catch {
      throw malformed(resolver, `the answer for ${name} is not JSON`)
    }
    if (typeof answer !== 'object' || answer === null || typeof (answer as { Status?: unknown }).Status !== 'number') {
      throw malformed(resolver, `the answer for ${name} is not a DNS JSON answer (no Status)`)
    }
    const { Status: status, Answer: records } = answer as { Status: number, Answer?: unknown }
    if (status === NXDOMAIN) return undefined
    if (status !== 0) throw malformed(resolver, `DNS status ${status} for ${name}`)
    if (records === undefined) return undefined
    if (!Array.isArray(records)) throw malformed(resolver, `the answer for ${name} has an Answer that is not a list`)
    const out: string[] = []
    for (const r of records as unknown[]) {
      if (typeof r !== 'object' || r === null) continue
      const { type, data } = r as { type?: unknown, data?: unknown }
      // CNAMEs the resolver followed come first; only the TXT records count
      if (type === TXT && typeof data === 'string') out.push(txtData(data))
    }
    return out.length === 0 ? undefined : out
  }
}

/** Reads TXT records of a name from the operating system's resolver. */
export function systemLookup (resolver = new Resolver()): TxtLookup {
  return async (name) => {
    try {
      return (await resolver.resolveTxt(name)).map((parts) => parts.join(''))
    } catch (err) {
      const code = systemCode(err)
      if (code === 'ENOTFOUND' || code === 'ENODATA') return undefined
      throw new CidgetError('CIDGET_ERR_NAME_NOT_RESOLVED', `system resolver: ${code ?? String(err)} for the TXT records of ${name}`, { cause: err, gateway: SYSTEM_RESOLVER })
    }
  }
}

/**
 * The DNSLink path of `domain` from its TXT records: of the `dnslink=` values
 * that are `/ipfs/…` or `/ipns/…` paths, the first in byte order (so that
 * every resolver's order gives the same answer); `undefined` when there is none.
 */
export function dnslinkValue (txts: readonly string[]): string | undefined {
  const values = txts
    .filter((t) => t.startsWith('dnslink='))
    .map((t) => t.slice('dnslink='.length).trim())
    .filter((v) => /^\/(ipfs|ipns)\/[^/]/.test(v))
    .sort()
  return values[0]
}

/**
 * Looks up the DNSLink of `domain`: `_dnslink.<domain>` first, then the domain
 * itself (where DNSLink was published before `_dnslink` existed). Returns the
 * path, or `undefined` when neither has one.
 */
export async function lookupDnslink (lookup: TxtLookup, domain: string, signal?: AbortSignal): Promise<string | undefined> {
  for (const name of [`_dnslink.${domain}`, domain]) {
    const txts = await lookup(name, signal)
    const value = txts === undefined ? undefined : dnslinkValue(txts)
    if (value !== undefined) return value
  }
  return undefined
}
