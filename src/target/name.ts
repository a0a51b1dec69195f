/**
 * What follows `/ipns/`: the key of an IPNS name (a libp2p-key CID such as
 * `k51…`, or a peer ID in base58, `12D3Koo…`, `Qm…`) or a domain whose
 * DNSLink names the content.
 *
 * @module
 */

import { peerIdFromCID, peerIdFromString } from '@libp2p/peer-id'
import { base36 } from 'multiformats/bases/base36'
import { CidgetError } from '../core/errors.js'
import { parseCid } from './cid.js'

/** The multicodec of a CID that carries a public key's multihash. */
const LIBP2P_KEY = 0x72
/** RFC 1035: a domain name is at most 253 characters in text form, a label at most 63. */
const MAX_DOMAIN = 253
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/

export type IpnsName =
  | {
    kind: 'key'
    /** The name in its canonical form: the libp2p-key CID in base36 (`k51…`). */
    name: string
    /** The key's multihash (the routing key is `/ipns/` followed by it). */
    multihash: Uint8Array
  }
  | {
    kind: 'dnslink'
    /** The domain, lower-cased, without a trailing dot. */
    name: string
  }

function bad (input: string, why: string): CidgetError {
  const shown = input.length > 80 ? `${input.slice(0, 77)}…` : input
  return new CidgetError('CIDGET_ERR_BAD_TARGET', `Invalid target "${shown}": ${why}`)
}

/** Whether `text` is a domain name DNSLink could be published under (letters, digits, hyphens, at least two labels). */
export function isDomain (text: string): boolean {
  const d = text.toLowerCase().replace(/\.$/, '')
  if (d.length === 0 || d.length > MAX_DOMAIN) return false
  const labels = d.split('.')
  return labels.length >= 2 && labels.every((l) => LABEL.test(l)) && !/^\d+$/.test(labels[labels.length - 1] ?? '')
}

/**
 * Parses the name of an `/ipns/` path. Throws CIDGET_ERR_BAD_TARGET for text
 * that is neither a key nor a domain (a CID of content, an IP address, a bare
 * word), naming `input` in the message.
 */
export function parseIpnsName (text: string, input = text): IpnsName {
  if (text === '') throw bad(input, 'no name after /ipns/')
  if (text.includes('.')) {
    if (!isDomain(text)) throw bad(input, `"${text}" is not a domain name`)
    return { kind: 'dnslink', name: text.toLowerCase().replace(/\.$/, '') }
  }
  let peer
  try {
    if (text.startsWith('1') || text.startsWith('Q')) {
      peer = peerIdFromString(text)
    } else {
      const cid = parseCid(text, input)
      if (cid.code !== LIBP2P_KEY) throw bad(input, `"${text}" is a CID of content, not of a key (use /ipfs/${text})`)
      peer = peerIdFromCID(cid)
    }
  } catch (err) {
    if (err instanceof CidgetError) throw err
    throw bad(input, `"${text}" is neither a key (k51…, 12D3Koo…) nor a domain name`)
  }
  return { kind: 'key', name: peer.toCID().toString(base36), multihash: peer.toMultihash().bytes }
}

/**
 * A name as a subdomain gateway writes it in one DNS label: a key as it is, a
 * domain with its dots as `-` and its hyphens as `--` (`en-wikipedia--on--ipfs-org`
 * is `en.wikipedia-on-ipfs.org`).
 */
export function fromSubdomainLabel (label: string): string {
  if (label.includes('.') || !label.includes('-')) return label
  return label.replace(/--|-/g, (m) => m === '--' ? '-' : '.')
}
