import { describe, it, expect } from 'vitest'
import { mkdtemp, readFile, rm, readdir, readlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { OutputTree } from '../../src/strategies/verified/tree.js'

describe('OutputTree', () => {
  it('keeps handles consistent under concurrent writes to many files and to one file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      const tree = await OutputTree.open(join(dir, 'out'), true)
      const files = 300 // more than the open-file cap
      const writes: Array<Promise<void>> = []
      for (let f = 0; f < files; f++) {
        for (let part = 0; part < 4; part++) {
          // four concurrent writes per file, interleaved across files, so handles are opened, shared and evicted at once
          writes.push(tree.write(join(tree.root, `f${f}`), part * 3, new TextEncoder().encode(`${part}${part}${part}`)))
        }
      }
      await Promise.all(writes)
      await tree.commit()
      // no handle is left open behind the tree's back (a lost handle would only be closed by GC)
      const open = []
      for (const fd of await readdir('/proc/self/fd')) {
        const target = await readlink(join('/proc/self/fd', fd)).catch(() => '')
        if (target.startsWith(dir)) open.push(target)
      }
      expect(open).toEqual([])
      expect(await readdir(join(dir, 'out'))).toHaveLength(files)
      for (const f of [0, 150, 299]) expect(await readFile(join(dir, 'out', `f${f}`), 'utf8')).toBe('000111222333')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('writes a block given in pieces at its offset, next to blocks given whole', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      const tree = await OutputTree.open(join(dir, 'out.bin'), false)
      const data = Uint8Array.from({ length: 9000 }, (_, i) => (i * 7) & 0xff)
      await Promise.all([
        tree.write(tree.root, 0, data.subarray(0, 1000)),
        // three pieces, one of them empty
        tree.write(tree.root, 1000, [data.subarray(1000, 1500), data.subarray(1500, 1500), data.subarray(1500, 4000)]),
        // more pieces than one system call takes (IOV_MAX is 1024 on Linux)
        tree.write(tree.root, 4000, Array.from({ length: 5000 }, (_, i) => data.subarray(4000 + i, 4001 + i)))
      ])
      await tree.commit()
      expect(Buffer.from(await readFile(join(dir, 'out.bin'))).equals(Buffer.from(data))).toBe(true)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
