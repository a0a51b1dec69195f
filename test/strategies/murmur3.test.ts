import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { murmur3128 } from '@multiformats/murmur3'
import { murmur3x64First64 } from '../../src/strategies/verified/murmur3.js'
import { hamtHash } from '../../src/strategies/verified/dag.js'

/** The first 8 bytes of `@multiformats/murmur3`'s murmur3-128: what the importer and go-unixfs place names by. */
function reference (key: Uint8Array): string {
  const digest = murmur3128.encode(key)
  if (!(digest instanceof Uint8Array)) throw new TypeError('expected a synchronous digest')
  return Buffer.from(digest.subarray(0, 8)).toString('hex')
}

function ours (key: Uint8Array): string {
  const out = new Uint8Array(8)
  murmur3x64First64(key, out)
  return Buffer.from(out).toString('hex')
}

describe('murmur3x64First64', () => {
  it('gives the library’s first 64 bits for every length of 0 to 80 bytes (every tail, several blocks)', () => {
    for (let length = 0; length <= 80; length++) {
      for (let n = 0; n < 50; n++) {
        const key = randomBytes(length)
        expect(ours(key), `${length} bytes: ${key.toString('hex')}`).toBe(reference(key))
      }
    }
  })

  it('gives it for bytes that exercise the carries (all 0xff, all 0x00, one bit)', () => {
    for (let length = 0; length <= 40; length++) {
      for (const key of [Buffer.alloc(length, 0xff), Buffer.alloc(length, 0), Buffer.from(Array.from({ length }, (_, i) => (i === length - 1 ? 0x80 : 0)))]) {
        expect(ours(key), `${length} bytes: ${key.toString('hex')}`).toBe(reference(key))
      }
    }
  })

  it('hamtHash hashes a name’s UTF-8 bytes, also names longer than its buffer and names with lone surrogates', () => {
    for (const name of ['', 'a', 'file-000123.bin', 'ünïcødé 名前 🎉', 'x'.repeat(1000), 'é'.repeat(600), 'bad\uD800name']) {
      expect(Buffer.from(hamtHash(name)).toString('hex'), name.slice(0, 20)).toBe(reference(new TextEncoder().encode(name)))
    }
  })
})
