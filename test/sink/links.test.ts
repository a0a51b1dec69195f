/**
 * The links a tree writes resolve inside it on disk, through other links too
 * (issue 14, items 1 and 2): the resolver on hand-made trees, then verified
 * downloads of hostile DAGs from a real test gateway.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { lstat, mkdir, mkdtemp, readFile, readlink, realpath, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import { MemoryBlocks, addFile, seededBytes, startTestGateway } from '../../src/testing/index.js'
import { Downloader, type DownloaderInit } from '../../src/engine/downloader.js'
import { confineLinks, linksBelow, resolveLink, MAX_LINK_HOPS } from '../../src/sink/links.js'
import { isCidgetError } from '../../src/core/errors.js'
import { putBlock, symlinkNode, directoryNode, listTree } from '../helpers.js'

let cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

async function tempDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cidget-links-'))
  cleanups.push(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

describe('resolveLink', () => {
  /** root/a/b (directories), root/a/l1 → .. (the root), root/file.txt, and `links` written in root. */
  async function root (links: Record<string, string>): Promise<string> {
    const r = join(await tempDir(), 'out.cidget-partial')
    await mkdir(join(r, 'a', 'b'), { recursive: true })
    await symlink('..', join(r, 'a', 'l1'))
    await writeFile(join(r, 'file.txt'), 'x')
    for (const [name, target] of Object.entries(links)) await symlink(target, join(r, name))
    return r
  }

  const cases: Array<[string, string, Record<string, string>, string | RegExp]> = [
    ['a link inside the tree', 'a/b', {}, 'a/b'],
    ['a link to the root through a link', 'a/l1', {}, ''],
    ['a chain of links that stays inside', 'a/l1/a/l1/a/b/../missing', {}, 'a/missing'],
    ['a chain that reads as inside but leads out on disk', 'a/l1/../secret', {}, /leads out/],
    ['a dangling link inside', 'nothing/here', {}, 'nothing/here'],
    ['a missing component, then ".." back into the tree', 'nothing/../a/l1/a/b', {}, 'a/b'],
    ['a missing component, then ".." out of the tree', 'nothing/../../x', {}, /leads out/],
    ['below a file, read lexically', 'file.txt/../a/b', {}, 'a/b'],
    ['out of the root and back in by its name', '../out.cidget-partial/a', {}, /leads out/],
    ['through a link with an absolute target', 'abs/x', { abs: '/etc' }, /absolute target/],
    ['a loop', 'p', { p: 'q', q: 'p' }, new RegExp(`more than ${MAX_LINK_HOPS} links`)],
    ['an absolute target', '/etc/passwd', {}, /absolute target/]
  ]
  for (const [name, target, links, expected] of cases) {
    it(name, async () => {
      const r = await root(links)
      await symlink(target, join(r, 'link'))
      const got = await resolveLink(r, join(r, 'link'))
      if (typeof expected === 'string') {
        expect(got.to, got.why).toBe(expected)
      } else {
        expect(got.to).toBeUndefined()
        expect(got.why).toMatch(expected)
      }
    })
  }

  it('confineLinks refuses a link that leads out, or removes it with skip; the others stay', async () => {
    const r = await root({ out: 'a/l1/../../x', in: 'a/l1/a/b', through: 'out/y' })
    const links = await linksBelow(r)
    expect(links.map(l => l.slice(r.length + 1)).sort()).toEqual(['a/l1', 'in', 'out', 'through'])
    const err = await confineLinks(r, links, false).then(() => undefined, (e: unknown) => e)
    expect(isCidgetError(err, 'CIDGET_ERR_UNSAFE_SYMLINK'), String(err)).toBe(true)
    expect((err as Error).message).toMatch(/resolved on disk/)
    expect((await confineLinks(r, links, true)).sort()).toEqual(['out', 'through'].map(n => join(r, n)))
    expect((await linksBelow(r)).map(l => l.slice(r.length + 1)).sort()).toEqual(['a/l1', 'in'])
  })
})

describe('verified directories: links resolved on disk', () => {
  async function download (blocks: MemoryBlocks, root: CID, init: DownloaderInit = {}): Promise<{ dir: string, out: string, status: string, errorCode: string | null, error: string | null }> {
    const gateway = await startTestGateway({ blocks })
    cleanups.push(async () => { await gateway.close() })
    const dir = await tempDir()
    await mkdir(join(dir, 'outside'))
    await writeFile(join(dir, 'outside', 'secret'), 'secret')
    const dl = await Downloader.open({ routers: [], state: join(dir, 'state.db'), gateways: [gateway.url], hedgeAfterMs: 0, initialBackoffMs: 1, ...init })
    cleanups.push(async () => { await dl.close() })
    const out = join(dir, 'tree')
    const done = await (await dl.add(root.toString(), { output: out })).done
    // nothing was written or created outside the output
    expect(await listTree(join(dir, 'outside'))).toEqual(['secret'])
    return { dir, out, status: done.status, errorCode: done.errorCode, error: done.error }
  }

  it('refuses a link that leads out through another link, and with skipSymlinks leaves it out', async () => {
    const blocks = new MemoryBlocks()
    const root = await directoryNode(blocks, [
      ['a', await directoryNode(blocks, [['l1', await symlinkNode(blocks, '..')]])],
      ['escape', await symlinkNode(blocks, 'a/l1/../outside/secret')],
      ['inside', await symlinkNode(blocks, 'a/l1/a')],
      ['text.txt', await putBlock(blocks, new TextEncoder().encode('text'), rawCodec.code)]
    ])
    const failed = await download(blocks, root)
    expect(failed).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_UNSAFE_SYMLINK' })
    expect(failed.error).toMatch(/escape → "a\/l1\/\.\.\/outside\/secret" \(through a\/l1\)/)
    await expect(lstat(failed.out)).rejects.toThrow(/ENOENT/)

    const skipped = await download(blocks, root, { skipSymlinks: true })
    expect(skipped.status, skipped.error ?? '').toBe('success')
    expect(await listTree(skipped.out)).toEqual(['a', 'a/l1', 'inside', 'text.txt'])
    const real = await realpath(skipped.out)
    for (const l of ['a/l1', 'inside']) expect((await realpath(join(skipped.out, l)) + sep).startsWith(real + sep)).toBe(true)
    expect(await readlink(join(skipped.out, 'inside'))).toBe('a/l1/a')
  })

  it('refuses an entry that is a link and a directory of the same name, and creates nothing through the link', async () => {
    const blocks = new MemoryBlocks()
    const key = await putBlock(blocks, new TextEncoder().encode('ssh-ed25519 AAAA attacker'), rawCodec.code)
    const root = await directoryNode(blocks, [
      ['x', await symlinkNode(blocks, '../outside')],
      ['x', await directoryNode(blocks, [['authorized_keys', key]])]
    ])
    const got = await download(blocks, root)
    expect(got).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_UNSAFE_NAME' })
  })

  it('a link through a loop of links is refused', async () => {
    const blocks = new MemoryBlocks()
    const root = await directoryNode(blocks, [['p', await symlinkNode(blocks, 'q')], ['q', await symlinkNode(blocks, 'p')]])
    const got = await download(blocks, root)
    expect(got).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_UNSAFE_SYMLINK' })
    await expect(lstat(got.out)).rejects.toThrow(/ENOENT/)
  })
})

describe('a partial file or staging directory that no recorded progress counts', () => {
  it('is emptied first: none of its bytes or files end up in the output (a plain file planted at <output>.cidget-partial)', async () => {
    const blocks = new MemoryBlocks()
    const data = seededBytes(1000, 3)
    const file = await addFile(blocks, data)
    const tree = await directoryNode(blocks, [['a.txt', await putBlock(blocks, new TextEncoder().encode('a'), rawCodec.code)]])
    const gateway = await startTestGateway({ blocks })
    cleanups.push(async () => { await gateway.close() })
    const d = await tempDir()
    await writeFile(join(d, 'file.cidget-partial'), Buffer.alloc(5000, 0x41))
    await mkdir(join(d, 'tree.cidget-partial', 'planted'), { recursive: true })
    await writeFile(join(d, 'tree.cidget-partial', 'a.txt'), 'planted bytes after the first')
    await symlink('..', join(d, 'tree.cidget-partial', 'planted', 'up'))
    const dl = await Downloader.open({ routers: [], state: join(d, 'state.db'), gateways: [gateway.url], hedgeAfterMs: 0, initialBackoffMs: 1 })
    cleanups.push(async () => { await dl.close() })
    const f = await (await dl.add(file.toString(), { output: join(d, 'file') })).done
    expect(f.status, f.error ?? '').toBe('success')
    expect(Buffer.from(await readFile(join(d, 'file'))).equals(Buffer.from(data))).toBe(true)
    const t = await (await dl.add(tree.toString(), { output: join(d, 'tree') })).done
    expect(t.status, t.error ?? '').toBe('success')
    expect(await listTree(join(d, 'tree'))).toEqual(['a.txt'])
    expect(await readFile(join(d, 'tree', 'a.txt'), 'utf8')).toBe('a')
  })
})
