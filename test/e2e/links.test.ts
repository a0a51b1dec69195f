/**
 * Issue 14, items 1 and 2: no byte written and no file created through a
 * symlink, and no link a tree writes that leads out of it, through other
 * links too. The CLI as a user runs it, against a real test gateway.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { createHash } from 'node:crypto'
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative, sep } from 'node:path'
import { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import { MemoryBlocks, addDirectory, addFile, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { runCli, lastRecord, KiB, putBlock, symlinkNode, directoryNode, listTree } from '../helpers.js'

let cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.reverse()) await c()
  cleanups = []
})

/** The chain: a1/…/a8, and a8/l1 → ../../../../../../../.. (the tree's own root, lexically and on disk). */
const CHAIN = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8']
const L1 = [...CHAIN, 'l1'].join('/')
/** Read lexically, `L1/..` is a8; on disk it is the parent of the tree. */
const VIA_CHAIN = (rest: string): string => `${L1}/../${rest}`
/** Lexically the tree's root; on disk nine levels above it, which is `/` for a tree in /tmp/x/y. */
const TO_ROOT = `${L1}/${Array(CHAIN.length + 1).fill('..').join('/')}`

/** The hostile tree of the step 1. */
async function hostileTree (blocks: MemoryBlocks): Promise<CID> {
  let chain = await directoryNode(blocks, [['l1', await symlinkNode(blocks, Array(CHAIN.length).fill('..').join('/'))]])
  for (const name of CHAIN.slice(1).reverse()) chain = await directoryNode(blocks, [[name, chain]])
  return await directoryNode(blocks, [
    ['a1', chain],
    ['esc_passwd', await symlinkNode(blocks, `${TO_ROOT}/etc/passwd`)],
    ['esc_root', await symlinkNode(blocks, TO_ROOT)],
    ['readme.txt', await putBlock(blocks, new TextEncoder().encode('hello'), rawCodec.code)],
    ['vcar.cidget-partial', await symlinkNode(blocks, VIA_CHAIN('outside/secret-car'))],
    ['vdir.cidget-partial', await symlinkNode(blocks, VIA_CHAIN('outside/vdir'))],
    ['victim.cidget-partial', await symlinkNode(blocks, VIA_CHAIN('outside/secret'))]
  ])
}

interface Setup { gateway: TestGateway, dir: string, outside: string, env: NodeJS.ProcessEnv, args: string[] }

async function setup (blocks: MemoryBlocks): Promise<Setup> {
  const gateway = await startTestGateway({ blocks })
  const dir = await mkdtemp(join(tmpdir(), 'cidget-links-'))
  cleanups.push(async () => {
    await gateway.close()
    await rm(dir, { recursive: true, force: true })
  })
  // what must stay as it is: a file, a file for CAR output, and a directory with one file
  const outside = join(dir, 'outside')
  await mkdir(outside)
  await writeFile(join(outside, 'secret'), 'do not touch')
  await writeFile(join(outside, 'secret-car'), 'do not touch either')
  const env = { HOME: dir, CIDGET_STATE: join(dir, 'state.db'), CIDGET_INITIAL_BACKOFF_MS: '10', CIDGET_HEDGE_AFTER_MS: '0' }
  return { gateway, dir, outside, env, args: ['-g', gateway.url, '--json'] }
}

/** Every entry below `root`: its kind, size, mtime and content hash. */
async function snapshot (root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const name of await listTree(root)) {
    const p = join(root, name)
    const s = await lstat(p)
    if (s.isSymbolicLink()) out[name] = `link ${await readlink(p)}`
    else if (s.isDirectory()) out[name] = `dir ${s.mtimeMs}`
    else out[name] = `file ${s.size} ${s.mtimeMs} ${createHash('sha256').update(await readFile(p)).digest('hex')}`
  }
  return out
}

/** Every symlink below `root`, with where it resolves on disk (realpath), relative to root's realpath. */
async function linksResolved (root: string): Promise<Record<string, string>> {
  const real = await realpath(root)
  const out: Record<string, string> = {}
  for (const name of await listTree(root)) {
    if (!(await lstat(join(root, name))).isSymbolicLink()) continue
    const to = await realpath(join(root, name))
    out[name] = to === real || to.startsWith(real + sep) ? relative(real, to) : `OUTSIDE ${to}`
  }
  return out
}

describe('issue 14: links that lead out of the output', () => {
  it('step 1: a tree whose links leave it through a chain of links is refused; --skip-symlinks leaves those links out', async () => {
    const blocks = new MemoryBlocks()
    const root = await hostileTree(blocks)
    const s = await setup(blocks)
    const before = await snapshot(s.dir)
    const passwd = await stat('/etc/passwd').catch(() => undefined)
    const plant = join(s.dir, 'plant')

    const r = await runCli(['get', `/ipfs/${root.toString()}`, '-o', plant, ...s.args], { env: s.env })
    expect(r.code, r.stderr).toBe(1)
    expect(lastRecord(r.stdout)).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_UNSAFE_SYMLINK' })
    await expect(lstat(plant)).rejects.toThrow(/ENOENT/)
    // nothing of it is kept: no link that leads out stays on disk for a later write to go through
    await expect(lstat(`${plant}.cidget-partial`)).rejects.toThrow(/ENOENT/)

    // the same download again, leaving unsafe links out
    const again = await runCli(['get', `/ipfs/${root.toString()}`, '-o', plant, '--skip-symlinks', ...s.args], { env: s.env })
    expect(again.code, again.stderr).toBe(0)
    expect(lastRecord(again.stdout)).toMatchObject({ status: 'success' })
    expect(await linksResolved(plant)).toEqual({ [L1]: '' })
    expect((await readdir(plant)).sort()).toEqual(['a1', 'readme.txt'])

    // a fresh download with --skip-symlinks writes the same
    const fresh = join(s.dir, 'fresh')
    const other = await runCli(['get', `/ipfs/${root.toString()}`, '-o', fresh, '--skip-symlinks', ...s.args], { env: s.env })
    expect(other.code, other.stderr).toBe(0)
    expect(await linksResolved(fresh)).toEqual({ [L1]: '' })
    expect((await readdir(fresh)).sort()).toEqual(['a1', 'readme.txt'])

    const after = await snapshot(s.dir)
    for (const [name, what] of Object.entries(before)) expect(after[name], name).toBe(what)
    if (passwd !== undefined) expect(await stat('/etc/passwd')).toMatchObject({ size: passwd.size, mtimeMs: passwd.mtimeMs })
    expect(Object.keys(after).filter(n => n.startsWith('outside'))).toEqual(Object.keys(before).filter(n => n.startsWith('outside')))
  })

  /** The links step 1 wrote before the fix, made by hand: `plant/<name>.cidget-partial` → (chain) → outside/… */
  async function plantChain (s: Setup): Promise<string> {
    const plant = join(s.dir, 'plant')
    await mkdir(join(plant, ...CHAIN), { recursive: true })
    await symlink(Array(CHAIN.length).fill('..').join('/'), join(plant, L1))
    await symlink(VIA_CHAIN('outside/secret'), join(plant, 'victim.cidget-partial'))
    await symlink(VIA_CHAIN('outside/secret-car'), join(plant, 'vcar.cidget-partial'))
    await symlink(VIA_CHAIN('outside/vdir'), join(plant, 'vdir.cidget-partial'))
    // the planted links do lead out
    expect(await realpath(join(plant, 'victim.cidget-partial'))).toBe(await realpath(join(s.outside, 'secret')))
    return plant
  }

  async function content (blocks: MemoryBlocks): Promise<{ file: CID, tree: CID }> {
    return {
      file: await addFile(blocks, seededBytes(300 * KiB, 4)),
      tree: await addDirectory(blocks, [
        { path: 'authorized_keys', content: new TextEncoder().encode('ssh-ed25519 AAAA attacker') },
        { path: 'sub/more.txt', content: new TextEncoder().encode('more') }
      ])
    }
  }

  /** Runs each download, all of which must be refused with CIDGET_ERR_UNSAFE_PARTIAL and write nothing outside. */
  async function expectRefused (s: Setup, runs: Array<[string, string[]]>): Promise<void> {
    const before = await snapshot(s.outside)
    for (const [what, args] of runs) {
      const r = await runCli([...args, ...s.args], { env: s.env })
      expect(r.code, `${what}: ${r.stderr}`).toBe(1)
      expect(lastRecord(r.stdout), what).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_UNSAFE_PARTIAL' })
      expect(await snapshot(s.outside), what).toEqual(before)
    }
    expect(await readFile(join(s.outside, 'secret'), 'utf8')).toBe('do not touch')
    expect(await readFile(join(s.outside, 'secret-car'), 'utf8')).toBe('do not touch either')
    await expect(stat(join(s.outside, 'vdir'))).rejects.toThrow(/ENOENT/)
  }

  it('step 2: a partial path that is a link through a chain of links is refused in path, verified, CAR and directory modes', async () => {
    const blocks = new MemoryBlocks()
    const { file, tree } = await content(blocks)
    const s = await setup(blocks)
    const plant = await plantChain(s)
    await expectRefused(s, [
      ['path mode', ['get', file.toString(), '-o', join(plant, 'victim'), '--mode', 'path']],
      ['verified file', ['get', file.toString(), '-o', join(plant, 'victim')]],
      ['CAR', ['get', file.toString(), '--car', join(plant, 'vcar')]],
      ['directory', ['get', tree.toString(), '-o', join(plant, 'vdir')]]
    ])
    // the links are left as they were, and nothing is at the outputs
    expect((await lstat(join(plant, 'victim.cidget-partial'))).isSymbolicLink()).toBe(true)
    for (const name of ['victim', 'vcar', 'vdir']) await expect(lstat(join(plant, name))).rejects.toThrow(/ENOENT/)
  })

  it('a plain symlink at <output>.cidget-partial is refused in path, verified, CAR and directory modes', async () => {
    const blocks = new MemoryBlocks()
    const { file, tree } = await content(blocks)
    const s = await setup(blocks)
    const out = join(s.dir, 'out')
    await mkdir(out)
    await symlink(join(s.outside, 'secret'), join(out, 'p.cidget-partial'))
    await symlink(join(s.outside, 'secret-car'), join(out, 'c.cidget-partial'))
    await symlink(join(s.outside, 'vdir'), join(out, 'd.cidget-partial'))
    await symlink(s.outside, join(out, 'e.cidget-partial'))
    await expectRefused(s, [
      ['path mode', ['get', file.toString(), '-o', join(out, 'p'), '--mode', 'path']],
      ['verified file', ['get', file.toString(), '-o', join(out, 'p')]],
      ['CAR', ['get', file.toString(), '--car', join(out, 'c')]],
      ['directory (dangling link)', ['get', tree.toString(), '-o', join(out, 'd')]],
      ['directory (link to a directory)', ['get', tree.toString(), '-o', join(out, 'e')]]
    ])
  })
})
