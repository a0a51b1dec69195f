import { describe, it, expect } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PrefixHasher } from '../../src/strategies/verified/prefix-hash.js'
import { seededBytes } from '../../src/testing/index.js'
import { sha256 } from '../helpers.js'

describe('PrefixHasher', () => {
  it.each([
    ['in order', 1 << 20, (n: number) => Array.from({ length: n }, (_, i) => i)],
    ['shuffled within a window', 1 << 20, (n: number) => Array.from({ length: n }, (_, i) => i ^ 3)],
    ['reversed, over budget (read back from disk)', 8 * 1024, (n: number) => Array.from({ length: n }, (_, i) => n - 1 - i)],
    ['with pieces missing (an earlier run wrote them)', 1 << 20, (n: number) => Array.from({ length: n }, (_, i) => i).filter(i => i % 5 !== 2)]
  ])('hashes the file %s', async (_name, budget, order) => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-ph-'))
    try {
      const data = seededBytes(64 * 1000 + 17, 5)
      const file = join(dir, 'f')
      await writeFile(file, data)
      const piece = 1000
      const count = Math.ceil(data.byteLength / piece)
      const h = new PrefixHasher(budget)
      for (const i of order(count)) {
        if (i >= count) continue
        h.add(i * piece, data.subarray(i * piece, Math.min(data.byteLength, (i + 1) * piece)))
      }
      expect(await h.digest(file, data.byteLength, new AbortController().signal)).toBe(sha256(data))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
