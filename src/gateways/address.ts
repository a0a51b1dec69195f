/**
 * Which addresses a gateway named by an API client may reach. A service
 * (`cidget serve`, `cidget worker`) fetches what its clients name, so a client
 * could point it at the machine itself or its network (an admin port, a cloud
 * metadata endpoint). The guard refuses loopback, private, link-local and other
 * non-public addresses for every connection except to the gateways the
 * operator configured, checking the addresses a name resolves to (not only
 * literal hosts) right before connecting, so a redirect and a name that
 * resolves somewhere else the second time are checked too.
 *
 * @module
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import { CidgetError } from '../core/errors.js'

/** Address ranges no client-named gateway may reach: not globally routable (RFC 6890 and successors). */
const LOCAL = new BlockList()
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (cloud metadata: 169.254.169.254)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4] // reserved, broadcast
] as const) LOCAL.addSubnet(net, prefix, 'ipv4')
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback and IPv4-compatible (::a.b.c.d, deprecated)
  ['::ffff:0:0:0', 96], // IPv4-translated (SIIT)
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local (private)
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8] // multicast
] as const) LOCAL.addSubnet(net, prefix, 'ipv6')

/** The IPv4 address inside an IPv6 one that carries it (mapped, compatible, NAT64, 6to4), or undefined. */
function embeddedIpv4 (ip: string): string | undefined {
  const lower = ip.toLowerCase()
  const dotted = /^(?:::ffff:|::|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower)
  if (dotted !== null) return dotted[1]
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower)
  if (hex !== null) {
    const hi = parseInt(hex[1]!, 16)
    const lo = parseInt(hex[2]!, 16)
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  }
  const sixToFour = /^2002:([0-9a-f]{1,4}):([0-9a-f]{1,4}):/.exec(lower)
  if (sixToFour !== null) {
    const hi = parseInt(sixToFour[1]!, 16)
    const lo = parseInt(sixToFour[2]!, 16)
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  }
  return undefined
}

/** True for an IP address that is not publicly routable: loopback, private, link-local, CGNAT, multicast, reserved. */
export function isLocalAddress (ip: string): boolean {
  const family = isIP(ip)
  if (family === 4) return LOCAL.check(ip, 'ipv4')
  if (family === 6) {
    const v4 = embeddedIpv4(ip)
    if (v4 !== undefined) return LOCAL.check(v4, 'ipv4')
    return LOCAL.check(ip, 'ipv6')
  }
  return false
}

/** Host names that always mean this machine, whatever a resolver says. */
function isLocalName (hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/\.$/, '')
  return h === 'localhost' || h.endsWith('.localhost')
}

/** What a refused connection says: the gateway it was for, never the address it resolved to. */
function refused (hostname: string): CidgetError {
  return new CidgetError('CIDGET_ERR_ADDRESS_REFUSED', `${hostname} leads to a loopback, private or link-local address, which gateways named through the service may not reach`)
}

/** Options of {@link AddressGuard}. */
export interface AddressGuardInit {
  /** Gateways the operator configured (base URLs): their hosts, and subdomains of a host name, on the same port, are trusted. */
  trusted: readonly string[]
  /** Let every gateway reach local addresses too (`--allow-local`). @default false */
  allowLocal?: boolean
  /** Resolves names (tests inject one so that no DNS query leaves the machine). @default dns.lookup */
  lookup?: LookupFunction
}

interface TrustedHost {
  hostname: string
  port: string
  /** A host name (not an IP): its subdomains are trusted too (a subdomain gateway's redirect to CID.ipfs.host). */
  subdomains: boolean
}

function defaultPort (protocol: string): string {
  return protocol === 'https:' ? '443' : '80'
}

/** Brackets off an IPv6 literal as a URL writes it. */
function bare (hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname
}

/**
 * Decides, per connection, whether an origin may be reached: the operator's
 * gateways always, anything else only at public addresses (unless
 * `allowLocal`). Used by the HTTP client's connector, so it sees every
 * connection, the ones redirects lead to included.
 */
export class AddressGuard {
  readonly allowLocal: boolean
  /** The resolver given to the constructor, for the connections that are not checked (undefined: the system's). */
  readonly resolver: LookupFunction | undefined
  readonly #trusted: TrustedHost[]
  readonly #lookup: LookupFunction

  constructor (init: AddressGuardInit) {
    this.allowLocal = init.allowLocal ?? false
    this.resolver = init.lookup
    this.#lookup = init.lookup ?? (dnsLookup as LookupFunction)
    this.#trusted = init.trusted.map(url => {
      const u = new URL(url)
      const hostname = bare(u.hostname).toLowerCase()
      return { hostname, port: u.port === '' ? defaultPort(u.protocol) : u.port, subdomains: isIP(hostname) === 0 }
    })
  }

  /** True when the operator configured this origin (or it is a subdomain of a configured host name, same port). */
  trusts (protocol: string, hostname: string, port: string | number | null | undefined): boolean {
    const h = bare(hostname).toLowerCase().replace(/\.$/, '')
    const p = port === undefined || port === null || port === '' ? defaultPort(protocol) : String(port)
    return this.#trusted.some(t => t.port === p && (t.hostname === h || (t.subdomains && h.endsWith(`.${t.hostname}`))))
  }

  /**
   * Refuses a URL a client names whose host is visibly local (an IP literal
   * in a local range, `localhost`): caught when the download is added, before
   * anything is queued. Names are resolved only when connecting.
   */
  checkUrl (url: string): void {
    if (this.allowLocal) return
    const u = new URL(url)
    if (this.trusts(u.protocol, u.hostname, u.port)) return
    const host = bare(u.hostname)
    if (isLocalName(host) || isLocalAddress(host)) throw refused(u.hostname)
  }

  /**
   * Whether a connection to this origin must be checked, and if the host is an
   * IP literal, the refusal (names are checked by {@link lookup} as they resolve).
   */
  check (protocol: string, hostname: string, port: string | number | null | undefined): { guarded: boolean, error?: CidgetError } {
    if (this.allowLocal || this.trusts(protocol, hostname, port)) return { guarded: false }
    const host = bare(hostname)
    if (isLocalName(host) || isLocalAddress(host)) return { guarded: true, error: refused(hostname) }
    return { guarded: true }
  }

  /**
   * A `lookup` for `net.connect`: resolves as usual and refuses the name when
   * any of its addresses is local (a name that mixes public and local
   * addresses is refused as a whole: which one a connection uses is not ours
   * to pick).
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.#lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err !== null) { callback(err, '', 4); return }
      const list: LookupAddress[] = Array.isArray(addresses) ? addresses : [{ address: addresses, family: 4 }]
      if (list.length === 0 || list.some(a => isLocalAddress(a.address))) {
        callback(refused(hostname), '', 4)
        return
      }
      if (options.all === true) (callback as unknown as (err: null, addresses: LookupAddress[]) => void)(null, list)
      else callback(null, list[0]!.address, list[0]!.family)
    })
  }
}
