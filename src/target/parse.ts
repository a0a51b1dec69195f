import { CidgetError } from '../core/errors.js'
import { bad, parseCid } from './cid.js'
import { fromSubdomainLabel, parseIpnsName } from './name.js'

export { parseCid } from './cid.js'

/** What the user asked for, reduced to a CID and a path inside it, or to a name and a path after it. */
export interface Target {
  /** The CID in its canonical string form (CIDv0 stays `Qm…`, CIDv1 is base32); '' for a name (resolved when the download starts). */
  cid: string
  /** Path inside the CID: '' for the root, otherwise '/a/b' (decoded, no empty, '.' or '..' segments); '' for a name. */
  path: string
  /**
   * An /ipns/ name and the path after it, canonical: `/ipns/k51…/a/b` (a key in base36) or
   * `/ipns/example.org/a/b` (a DNSLink domain, lower case).
   */
  name?: string
  /** The gateway the target URL named (origin plus any prefix before /ipfs/), if any. */
  gateway?: string
  /** The input as given. */
  input: string
}

/** Decodes and checks path segments; refuses '.', '..', NUL and separators inside a segment. */
function parsePath (raw: string, input: string): string {
  const segments: string[] = []
  for (const seg of raw.split('/')) {
    if (seg === '') continue
    let name: string
    try {
      name = decodeURIComponent(seg)
    } catch {
      throw bad(input, `bad percent-encoding in "${seg}"`)
    }
    if (name === '.' || name === '..') throw bad(input, `path segment "${name}" is not allowed`)
    if (name.includes('\0')) throw bad(input, 'path contains a NUL byte')
    // as in names from a DAG: a control character in a name would reach the file system and terminals
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused here
    if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) throw bad(input, 'a path segment contains a control character')
    if (name.includes('/') || name.includes('\\')) throw bad(input, `path segment "${name}" contains a separator`)
    segments.push(name)
  }
  return segments.length === 0 ? '' : '/' + segments.join('/')
}

/** Splits "CID/rest" into the CID and the path. */
function cidAndPath (rest: string, input: string): Target {
  const clean = rest.replace(/[?#].*$/s, '')
  const slash = clean.indexOf('/')
  const cidText = slash === -1 ? clean : clean.slice(0, slash)
  const cid = parseCid(cidText, input)
  return { cid: cid.toString(), path: parsePath(slash === -1 ? '' : clean.slice(slash), input), input }
}

/** Splits "NAME/rest" into a name target. */
function nameAndPath (rest: string, input: string): Target {
  const clean = rest.replace(/[?#].*$/s, '')
  const slash = clean.indexOf('/')
  const name = parseIpnsName(slash === -1 ? clean : clean.slice(0, slash), input)
  return { cid: '', path: '', name: `/ipns/${name.name}${parsePath(slash === -1 ? '' : clean.slice(slash), input)}`, input }
}

/**
 * Parses a target: a CID (`bafy…`, `Qm…`, optionally followed by `/path`), an
 * `/ipfs/CID[/path]` path, an `ipfs://CID[/path]` URL, a path-gateway URL
 * (`https://host[/prefix]/ipfs/CID[/path]`) or a subdomain-gateway URL
 * (`https://CID.ipfs.host/path`); or a name: `/ipns/NAME[/path]`, `ipns://NAME[/path]`,
 * `https://host/ipns/NAME[/path]`, `https://NAME.ipns.host/path` (NAME a key, `k51…` or
 * `12D3Koo…`, or a DNSLink domain; in a subdomain, a domain's dots are `-` and its hyphens `--`).
 * Throws CidgetError CIDGET_ERR_BAD_TARGET.
 */
export function parseTarget (input: string): Target {
  const text = input.trim()
  if (text === '') throw bad(input, 'empty')
  if (text.startsWith('/ipfs/')) return cidAndPath(text.slice('/ipfs/'.length), input)
  if (text.startsWith('/ipns/')) return nameAndPath(text.slice('/ipns/'.length), input)
  if (/^ipns:\/\//i.test(text)) return nameAndPath(text.slice('ipns://'.length), input)
  if (/^ipfs:\/\//i.test(text)) return cidAndPath(text.slice('ipfs://'.length), input)
  if (/^https?:\/\//i.test(text)) {
    let url: URL
    try {
      url = new URL(text)
    } catch {
      throw bad(input, 'not a valid URL')
    }
    const at = url.pathname.indexOf('/ipfs/')
    if (at !== -1) {
      const t = cidAndPath(url.pathname.slice(at + '/ipfs/'.length), input)
      return { ...t, gateway: url.origin + url.pathname.slice(0, at) }
    }
    const ipns = url.pathname.indexOf('/ipns/')
    if (ipns !== -1) {
      const t = nameAndPath(url.pathname.slice(ipns + '/ipns/'.length), input)
      return { ...t, gateway: url.origin + url.pathname.slice(0, ipns) }
    }
    const named = /^([^.]+)\.ipns\.(.+)$/.exec(url.hostname)
    if (named !== null && named[1] !== undefined && named[2] !== undefined) {
      const name = parseIpnsName(fromSubdomainLabel(named[1]), input)
      const port = url.port === '' ? '' : `:${url.port}`
      return { cid: '', path: '', name: `/ipns/${name.name}${parsePath(url.pathname, input)}`, gateway: `${url.protocol}//${named[2]}${port}`, input }
    }
    const sub = /^([^.]+)\.ipfs\.(.+)$/.exec(url.hostname)
    if (sub !== null && sub[1] !== undefined && sub[2] !== undefined) {
      const cid = parseCid(sub[1], input)
      const port = url.port === '' ? '' : `:${url.port}`
      return { cid: cid.toString(), path: parsePath(url.pathname, input), gateway: `${url.protocol}//${sub[2]}${port}`, input }
    }
    throw bad(input, 'a gateway URL must contain /ipfs/CID or /ipns/NAME, or be a CID.ipfs.host or NAME.ipns.host subdomain URL')
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(text) && !/^[a-zA-Z0-9]+$/.test(text.split('/')[0] ?? '')) {
    throw bad(input, 'unsupported URL scheme')
  }
  return cidAndPath(text, input)
}

/** The file name a download of this target gets by default: the last path segment, else the CID (or the name). */
export function defaultName (target: Target): string {
  if (target.name !== undefined) return target.name.slice(target.name.lastIndexOf('/') + 1)
  if (target.path === '') return target.cid
  const last = target.path.slice(target.path.lastIndexOf('/') + 1)
  return last === '' ? target.cid : last
}

/** Normalises a gateway base URL: http(s) only, no trailing slash, no trailing /ipfs. */
export function normalizeGateway (url: string): string {
  let u: URL
  try {
    u = new URL(url.trim())
  } catch {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Invalid gateway URL "${url}"`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Gateway URL "${url}" must be http or https`)
  }
  if (u.search !== '' || u.hash !== '') {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Gateway URL "${url}" must not have a query or fragment`)
  }
  let path = u.pathname.replace(/\/+$/, '')
  if (path.endsWith('/ipfs')) path = path.slice(0, -'/ipfs'.length)
  return u.origin + path
}

/** The path-gateway URL of a target on a gateway. */
export function gatewayUrl (gateway: string, cid: string, path: string): string {
  const encoded = path.split('/').map(s => encodeURIComponent(s)).join('/')
  return `${gateway}/ipfs/${cid}${encoded}`
}
