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
})
