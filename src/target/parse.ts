import { CID } from 'multiformats/cid'
import { bases } from 'multiformats/basics'
import type { MultibaseDecoder } from 'multiformats/bases/interface'
import { CidgetError } from '../core/errors.js'

/** What the user asked for, reduced to a CID and a path inside it. */
export interface Target {
  /** The CID in its canonical string form (CIDv0 stays `Qm…`, CIDv1 is base32). */
  cid: string
  /** Path inside the CID: '' for the root, otherwise '/a/b' (decoded, no empty, '.' or '..' segments). */
  path: string
  /** The gateway the target URL named (origin plus any prefix before /ipfs/), if any. */
  gateway?: string
  /** The input as given. */
  input: string
}

// One decoder for every multibase prefix multiformats knows (base32, base58btc, base36, base64, …).
const decoders = new Map<string, { decode: (text: string) => Uint8Array<ArrayBuffer> }>(
  Object.values(bases).map(b => [b.prefix, b.decoder as unknown as { decode: (text: string) => Uint8Array<ArrayBuffer> }])
)
const anyBase: MultibaseDecoder<string> = {
  decode (text: string): Uint8Array<ArrayBuffer> {
    // by code point: a prefix can lie outside the BMP (base256emoji's is 🚀)
    const prefix = String.fromCodePoint(text.codePointAt(0) ?? 0)
    const d = decoders.get(prefix)
    if (d === undefined) throw new Error(`unknown multibase prefix "${prefix}"`)
    return d.decode(text)
  }
}

/**
 * Longest CID text accepted. Real CIDs are far shorter (a sha2-512 CID in base2
 * is about 560 characters); the bound keeps base58 and base36 decoding, which is
 * quadratic in the length, from stalling on a huge argument.
 */
const MAX_CID_LENGTH = 4096

function bad (input: string, why: string): CidgetError {
  const shown = input.length > 80 ? `${input.slice(0, 77)}…` : input
  return new CidgetError('CIDGET_ERR_BAD_TARGET', `Invalid target "${shown}": ${why}`)
}

/** Parses a CID string (any multibase; CIDv0 base58btc). Throws CIDGET_ERR_BAD_TARGET. */
export function parseCid (text: string, input = text): CID {
  if (text === '') throw bad(input, 'no CID')
  if (text.length > MAX_CID_LENGTH) throw bad(input, `the CID is longer than ${MAX_CID_LENGTH} characters`)
  try {
    return text.startsWith('Qm') || text.startsWith('1') ? CID.parse(text) : CID.parse(text, anyBase)
  } catch (err) {
    throw bad(input, `"${text}" is not a CID (${(err as Error).message})`)
  }
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

/**
 * Parses a target: a CID (`bafy…`, `Qm…`, optionally followed by `/path`), an
 * `/ipfs/CID[/path]` path, an `ipfs://CID[/path]` URL, a path-gateway URL
 * (`https://host[/prefix]/ipfs/CID[/path]`) or a subdomain-gateway URL
 * (`https://CID.ipfs.host/path`). Throws CidgetError CIDGET_ERR_BAD_TARGET.
 */
export function parseTarget (input: string): Target {
  const text = input.trim()
  if (text === '') throw bad(input, 'empty')
  if (text.startsWith('/ipfs/')) return cidAndPath(text.slice('/ipfs/'.length), input)
  if (text.startsWith('/ipns/') || text.startsWith('ipns://')) {
    throw bad(input, 'IPNS names are not supported; give the /ipfs/ CID they point to')
  }
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
    const sub = /^([^.]+)\.ipfs\.(.+)$/.exec(url.hostname)
    if (sub !== null && sub[1] !== undefined && sub[2] !== undefined) {
      const cid = parseCid(sub[1], input)
      const port = url.port === '' ? '' : `:${url.port}`
      return { cid: cid.toString(), path: parsePath(url.pathname, input), gateway: `${url.protocol}//${sub[2]}${port}`, input }
    }
    throw bad(input, 'a gateway URL must contain /ipfs/CID or be a CID.ipfs.host subdomain URL')
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(text) && !/^[a-zA-Z0-9]+$/.test(text.split('/')[0] ?? '')) {
    throw bad(input, 'unsupported URL scheme')
  }
  return cidAndPath(text, input)
}

/** The file name a download of this target gets by default: the last path segment, else the CID. */
export function defaultName (target: Target): string {
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
