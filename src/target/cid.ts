/**
 * CIDs as users and gateways write them: any multibase, CIDv0 in base58btc.
 *
 * @module
 */

import { CID } from 'multiformats/cid'
import { bases } from 'multiformats/basics'
import type { MultibaseDecoder } from 'multiformats/bases/interface'
import { CidgetError } from '../core/errors.js'

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

export function bad (input: string, why: string): CidgetError {
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

