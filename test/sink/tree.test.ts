import { describe, it, expect } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, readdir, readlink, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { OutputTree } from '../../src/sink/tree.js'
import { isCidgetError } from '../../src/core/errors.js'

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

  it('a write the writer thread cannot make fails alone, with its reason; the writes around it land', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      // an earlier run's staging directory (not fresh: files there are opened and checked), where a directory sits at a
      // file's path, and a FIFO at another (which an open without O_NONBLOCK would wait on for ever)
      await mkdir(join(dir, 'out.cidget-partial', 'd'), { recursive: true })
      execFileSync('mkfifo', [join(dir, 'out.cidget-partial', 'p')])
      const tree = await OutputTree.open(join(dir, 'out'), true)
      const enc = new TextEncoder()
      const results = await Promise.allSettled([
        tree.write(join(tree.root, 'a'), 0, enc.encode('a')),
        tree.write(join(tree.root, 'd'), 0, enc.encode('d')),
        tree.write(join(tree.root, 'b'), 0, enc.encode('b')),
        tree.write(join(tree.root, 'p'), 0, enc.encode('p'))
      ])
      expect(results.map(r => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected'])
      expect((results[3] as PromiseRejectedResult).reason).toMatchObject({ code: 'CIDGET_ERR_UNSAFE_PARTIAL' })
      const err = (results[1] as PromiseRejectedResult).reason as Error
      expect(isCidgetError(err, 'CIDGET_ERR_UNSAFE_PARTIAL'), String(err)).toBe(true)
      expect(err.message).toBe(`Refusing to write ${join(tree.root, 'd')}: it is not a plain file`)
      // the checkpoint makes the two written files durable and touches neither refused path
      await tree.syncAll()
      await tree.close()
      expect(await readFile(join(tree.root, 'a'), 'utf8')).toBe('a')
      expect(await readFile(join(tree.root, 'b'), 'utf8')).toBe('b')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a checkpoint taken while writes wait for the writer\'s buffers fsyncs only files the writer holds (none missing)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      const tree = await OutputTree.open(join(dir, 'out'), true)
      const piece = new Uint8Array(60 * 1024).fill(1)
      // more small writes (up to 64 KiB: the writer thread's) than its buffers hold: the last ones wait for room;
      // fewer than 16 files: each is fsynced
      const writes = Array.from({ length: 12 * 4 }, async (_, w) => { await tree.write(join(tree.root, `f${w % 12}`), Math.floor(w / 12) * piece.length, piece) })
      await tree.syncAll()
      await Promise.all(writes)
      await tree.commit()
      expect(await readdir(join(dir, 'out'))).toHaveLength(12)
      expect((await readFile(join(dir, 'out', 'f11'))).length).toBe(4 * piece.length)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('close waits for a write in progress (its descriptor is not closed under it); a write after close fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      const tree = await OutputTree.open(join(dir, 'out'), true)
      const big = new Uint8Array(8 * 1024 * 1024).fill(7) // past what is written on the event loop's thread
      const writing = tree.write(join(tree.root, 'big'), 0, big)
      await tree.close()
      await writing
      expect((await readFile(join(tree.root, 'big'))).equals(Buffer.from(big))).toBe(true)
      const err: unknown = await tree.write(join(tree.root, 'late'), 0, big).then(() => undefined, (e: unknown) => e)
      expect(isCidgetError(err, 'CIDGET_ERR_FS'), String(err)).toBe(true)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('an fsync of every open file is not cut short by writes that open more files meanwhile', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      const tree = await OutputTree.open(join(dir, 'out'), true)
      const bytes = new TextEncoder().encode('x')
      // as many files open as the cap allows
      for (let f = 0; f < 128; f++) await tree.write(join(tree.root, `a${f}`), 0, bytes)
      // a checkpoint's fsync while the walk writes new files, each of which would evict an idle one
      const sync = tree.syncAll()
      await Promise.all(Array.from({ length: 128 }, async (_, f) => { await tree.write(join(tree.root, `b${f}`), 0, bytes) }))
      await sync
      await tree.commit()
      expect(await readdir(join(dir, 'out'))).toHaveLength(256)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('in a fresh staging directory, a link planted where a file is to be created is refused, not written through', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      await writeFile(join(dir, 'secret'), 'secret')
      const tree = await OutputTree.open(join(dir, 'out'), true)
      await symlink(join(dir, 'secret'), join(tree.root, 'f'))
      const err = await tree.write(join(tree.root, 'f'), 0, new TextEncoder().encode('x')).then(() => undefined, (e: unknown) => e)
      expect(isCidgetError(err, 'CIDGET_ERR_UNSAFE_PARTIAL'), String(err)).toBe(true)
      expect(await readFile(join(dir, 'secret'), 'utf8')).toBe('secret')
      await tree.remove()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a file evicted (fsynced and closed) and written again keeps both writes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      const tree = await OutputTree.open(join(dir, 'out'), true)
      const enc = new TextEncoder()
      await tree.write(join(tree.root, 'first'), 0, enc.encode('ab'))
      // more files than the cap: 'first' is evicted
      for (let f = 0; f < 200; f++) await tree.write(join(tree.root, `f${f}`), 0, enc.encode('x'))
      // the least recently used idle files were closed: no more than the cap are open
      const open = []
      for (const fd of await readdir('/proc/self/fd')) {
        const target = await readlink(join('/proc/self/fd', fd)).catch(() => '')
        if (target.startsWith(dir)) open.push(target)
      }
      expect(open.length).toBeGreaterThan(100)
      expect(open.length).toBeLessThanOrEqual(128 + 1)
      expect(open).not.toContain(join(tree.root, 'first'))
      await tree.write(join(tree.root, 'first'), 2, enc.encode('cd'))
      await tree.syncAll()
      await tree.commit()
      expect(await readFile(join(dir, 'out', 'first'), 'utf8')).toBe('abcd')
      expect(await readdir(join(dir, 'out'))).toHaveLength(201)
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

describe('OutputTree: nothing written or created through a symlink', () => {
  async function refused (p: Promise<unknown>, why: RegExp): Promise<void> {
    const err = await p.then(() => undefined, (e: unknown) => e)
    expect(isCidgetError(err, 'CIDGET_ERR_UNSAFE_PARTIAL'), String(err)).toBe(true)
    expect((err as Error).message).toMatch(why)
  }

  it('refuses a staging directory or partial file that is a symlink', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      await mkdir(join(dir, 'outside'))
      await symlink(join(dir, 'outside'), join(dir, 'tree.cidget-partial'))
      await symlink(join(dir, 'outside', 'vdir'), join(dir, 'dangling.cidget-partial'))
      await symlink(join(dir, 'outside', 'file'), join(dir, 'file.cidget-partial'))
      await refused(OutputTree.open(join(dir, 'tree'), true), /is a symlink/)
      await refused(OutputTree.open(join(dir, 'dangling'), true), /is a symlink/)
      await refused(OutputTree.open(join(dir, 'file'), false), /is a symlink/)
      expect(await readdir(join(dir, 'outside'))).toEqual([])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('creates directories one at a time, never below a link: an entry that is a link, then a directory of the same name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cidget-tree-'))
    try {
      await mkdir(join(dir, 'outside'))
      const tree = await OutputTree.open(join(dir, 'out'), true)
      await tree.symlink(join(tree.root, 'x'), '../outside')
      await refused(tree.mkdir(join(tree.root, 'x')), /is a symlink/)
      // files and links only go into directories made or checked by mkdir
      await refused(tree.write(join(tree.root, 'x', 'authorized_keys'), 0, new TextEncoder().encode('key')), /not checked/)
      await refused(tree.write(join(tree.root, 'x', 'empty'), 0, new Uint8Array(0)), /not checked/)
      await refused(tree.symlink(join(tree.root, 'x', 'l'), 'y'), /not checked/)
      await refused(tree.mkdir(join(tree.root, 'x', 'sub')), /not checked/)
      // a link planted where a file goes is not opened through
      await tree.mkdir(join(tree.root, 'd'))
      await symlink(join(dir, 'outside', 'f'), join(tree.root, 'd', 'f'))
      await refused(tree.write(join(tree.root, 'd', 'f'), 0, new TextEncoder().encode('data')), /is a symlink/)
      await tree.close()
      expect(await readdir(join(dir, 'outside'))).toEqual([])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
