import { describe, it, expect } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FileHasher } from '../../src/sink/file-hash.js'
import { seededBytes } from '../../src/testing/index.js'
import { sha256 } from '../helpers.js'

describe('FileHasher', () => {
  type Case = [string, (n: number) => number[]]
  const cases: Case[] = [
    ['in order', (n: number) => Array.from({ length: n }, (_, i) => i)],
    ['shuffled within a window', (n: number) => Array.from({ length: n }, (_, i) => i ^ 3)],
    ['reversed', (n: number) => Array.from({ length: n }, (_, i) => n - 1 - i)],
    ['with pieces never reported (a gap)', (n: number) => Array.from({ length: n }, (_, i) => i).filter(i => i % 5 !== 2)]
  ]
  it.each(cases.flatMap(([name, order]) => [
    [name, false, order] as const,
    [name, true, order] as const
  ]))('hashes a file written %s (worker thread: %s)', async (_name, worker, order) => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-fh-'))
    try {
      // 9 MiB in 100 KB pieces: the worker is told to read on every 4 MiB of prefix
      const data = seededBytes(9 * 1024 * 1024 + 17, 5)
      const file = join(dir, 'f')
      await writeFile(file, data)
      const piece = 100_000
      const count = Math.ceil(data.byteLength / piece)
      const h = new FileHasher(file, data.byteLength, worker)
      const seq = order(count).filter(i => i < count)
      for (const i of seq) h.written(i * piece, Math.min(piece, data.byteLength - i * piece))
      let firstMissing = 0
      while (seq.includes(firstMissing)) firstMissing++
      expect(h.prefix).toBe(Math.min(data.byteLength, firstMissing * piece))
      expect(await h.digest(data.byteLength, new AbortController().signal)).toBe(sha256(data))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it.each([false, true])('a file it cannot read is a coded error (worker thread: %s)', async (worker) => {
    const h = new FileHasher('/nonexistent/cidget/file', 10, worker)
    await expect(h.digest(10, new AbortController().signal)).rejects.toMatchObject({ code: 'CIDGET_ERR_FS' })
  })

  it('a file shorter than it should be is a coded error, not a wrong hash', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-fh-'))
    try {
      const file = join(dir, 'f')
      await writeFile(file, seededBytes(1000, 1))
      const h = new FileHasher(file, 2000, true)
      h.written(0, 2000)
      await expect(h.digest(2000, new AbortController().signal)).rejects.toMatchObject({ code: 'CIDGET_ERR_FS' })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
