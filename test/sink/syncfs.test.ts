/**
 * Batched durability of a tree (src/sink/syncfs.ts, OutputTree.syncAll): the
 * files written since a checkpoint are made durable by one syncfs of their
 * file system, not by an fsync each. The `sync -f` a tree runs is found on the
 * PATH; each test puts a script first on it that logs its arguments and then
 * runs the system's own `sync`, or answers as a `sync` without `-f` or as a
 * failing disk would. Each test loads the modules afresh (what `sync` could do
 * is learned once per process).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { execFileSync } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const SYSTEM_SYNC = execFileSync('sh', ['-c', 'command -v sync'], { encoding: 'utf8' }).trim()
const onLinux = process.platform === 'linux'

let dir: string
let bin: string
let log: string
const path0 = process.env.PATH

/** Puts a `sync` first on the PATH that logs its arguments, then runs `body` (sh). */
async function fakeSync (body: string): Promise<void> {
  await writeFile(join(bin, 'sync'), `#!/bin/sh\necho "$@" >> '${log}'\n${body}\n`)
  await chmod(join(bin, 'sync'), 0o755)
}

/** The code of an error of the modules loaded afresh (their CidgetError is not this file's). */
function codeOf (err: unknown): unknown {
  return err instanceof Error && err.name === 'CidgetError' ? (err as Error & { code?: string }).code : err
}

async function calls (): Promise<string[]> {
  return (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(l => l !== '')
}

async function writeFiles (tree: { root: string, write: (p: string, o: number, d: Uint8Array) => Promise<void> }, count: number, from = 0): Promise<void> {
  await Promise.all(Array.from({ length: count }, async (_, i) => {
    await tree.write(join(tree.root, `f${from + i}`), 0, new TextEncoder().encode(`file ${from + i}`))
  }))
}

async function freshTree (): Promise<import('../../src/sink/tree.js').OutputTree> {
  vi.resetModules()
  const { OutputTree } = await import('../../src/sink/tree.js')
  return await OutputTree.open(join(dir, 'out'), true)
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cidget-syncfs-'))
  bin = join(dir, 'bin')
  log = join(dir, 'sync.log')
  await mkdir(bin)
  process.env.PATH = `${bin}:${path0 ?? ''}`
})

afterEach(async () => {
  process.env.PATH = path0
  await rm(dir, { recursive: true, force: true })
})

describe.runIf(onLinux)('a tree made durable by one syncfs', () => {
  it('300 files (more than stay open) take one `sync -f` of the staging directory per checkpoint, not an fsync each', async () => {
    await fakeSync(`exec '${SYSTEM_SYNC}' "$@"`)
    const tree = await freshTree()
    await writeFiles(tree, 300)
    await tree.syncAll()
    expect(await calls()).toEqual([`-f -- ${tree.root}`])
    await writeFiles(tree, 100, 300)
    await tree.commit()
    expect(await calls()).toHaveLength(2)
    const names = await readdir(join(dir, 'out'))
    expect(names).toHaveLength(400)
    expect(await readFile(join(dir, 'out', 'f399'), 'utf8')).toBe('file 399')
  })

  it('checkpoints of three trees on one file system share syncfs calls: those asking while one runs share the next', async () => {
    // each call takes a while: the second and third trees ask while the first's runs
    await fakeSync(`sleep 0.3; exec '${SYSTEM_SYNC}' "$@"`)
    vi.resetModules()
    const { OutputTree } = await import('../../src/sink/tree.js')
    const trees = await Promise.all(['a', 'b', 'c'].map(async n => await OutputTree.open(join(dir, n), true)))
    for (const tree of trees) await writeFiles(tree, 20)
    await Promise.all(trees.map(async tree => { await tree.syncAll() }))
    // one call for the first to ask, one more for the two that asked while it ran (not one each)
    expect(await calls()).toHaveLength(2)
    for (const tree of trees) await tree.remove()
  })

  it('a few files are fsynced each: no process is started for them', async () => {
    await fakeSync(`exec '${SYSTEM_SYNC}' "$@"`)
    const tree = await freshTree()
    await writeFiles(tree, 5)
    await tree.commit()
    expect(await calls()).toEqual([])
    expect(await readdir(join(dir, 'out'))).toHaveLength(5)
  })

  it('a syncfs that fails (a full disk) fails the checkpoint with CIDGET_ERR_DISK_FULL; the next one covers the same files', async () => {
    await fakeSync(`echo "sync: error syncing '$3': No space left on device" >&2; exit 1`)
    const tree = await freshTree()
    await writeFiles(tree, 300)
    const err: unknown = await tree.syncAll().then(() => undefined, (e: unknown) => e)
    expect(codeOf(err)).toBe('CIDGET_ERR_DISK_FULL')
    // the disk has room again: the files closed before the failure are made durable now, by syncfs
    await fakeSync(`exec '${SYSTEM_SYNC}' "$@"`)
    await tree.syncAll()
    expect(await calls()).toHaveLength(2)
    await tree.commit()
    expect(await readdir(join(dir, 'out'))).toHaveLength(300)
  })

  it.each([
    ['Input/output error', 'CIDGET_ERR_FS', /Input\/output error/],
    ['Disk quota exceeded', 'CIDGET_ERR_DISK_FULL', /No space left/]
  ])('syncfs reporting "%s" fails the checkpoint with %s', async (message, code, said) => {
    await fakeSync(`echo "sync: error syncing '$3': ${message}" >&2; exit 1`)
    const tree = await freshTree()
    await writeFiles(tree, 300)
    const err: unknown = await tree.syncAll().then(() => undefined, (e: unknown) => e)
    expect(codeOf(err)).toBe(code)
    expect(String((err as Error).message)).toMatch(said)
    await tree.remove()
  })

  it('a `sync` without -f (or none on the PATH): each file is fsynced, and `sync` is not asked again', async () => {
    await fakeSync('echo "sync: invalid option -- \'f\'" >&2; exit 1')
    const tree = await freshTree()
    await writeFiles(tree, 300)
    await tree.syncAll()
    await writeFiles(tree, 300, 300)
    await tree.commit()
    expect(await calls()).toHaveLength(1)
    expect(await readdir(join(dir, 'out'))).toHaveLength(600)
    expect(await readFile(join(dir, 'out', 'f0'), 'utf8')).toBe('file 0')

    // no `sync` at all
    process.env.PATH = bin
    await rm(join(bin, 'sync'))
    await rm(join(dir, 'out'), { recursive: true })
    const again = await freshTree()
    await writeFiles(again, 300)
    await again.commit()
    expect(await readdir(join(dir, 'out'))).toHaveLength(300)
  })
})
