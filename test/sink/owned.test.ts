/** Partial files and staging directories: never opened or created through a symlink, and only a plain file or directory of this user. */
import { describe, it, expect, afterEach } from 'vitest'
import { execFileSync } from 'node:child_process'
import { chown, link, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { closeSync, constants, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createOwnedFd, createOwnedFdSync, openOwnedFd, openOwnedFdSync, openOwnedFile, ownedDirectory } from '../../src/sink/owned.js'
import { PartialFile } from '../../src/sink/partial.js'
import { isCidgetError } from '../../src/core/errors.js'

let dir: string
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

async function setup (): Promise<{ outside: string }> {
  dir = await mkdtemp(join(tmpdir(), 'cidget-owned-'))
  const outside = join(dir, 'outside')
  await mkdir(outside)
  await writeFile(join(outside, 'secret'), 'secret')
  return { outside }
}

async function refused (p: Promise<unknown>, why: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(isCidgetError(err, 'CIDGET_ERR_UNSAFE_PARTIAL'), String(err)).toBe(true)
  expect((err as Error).message).toMatch(why)
}

const isRoot = process.getuid?.() === 0

describe('openOwnedFile and PartialFile.open', () => {
  it('creates a missing file and opens the same one again', async () => {
    await setup()
    const fh = await openOwnedFile(join(dir, 'p'), constants.O_RDWR)
    await fh.write('abc', 0)
    await fh.close()
    const again = await PartialFile.open(join(dir, 'x'), '')
    await again.close()
    const file = await PartialFile.open(join(dir, 'p'), '')
    expect(await file.size()).toBe(3)
    await file.close()
  })

  it('createOwnedFd (and on the calling thread) makes a new file, and leaves anything already there (a file, a link, dangling or not) to the checked open', async () => {
    const { outside } = await setup()
    await symlink(join(outside, 'secret'), join(dir, 'to-file'))
    await symlink(join(outside, 'made'), join(dir, 'dangling'))
    for (const [n, create] of [createOwnedFd, createOwnedFdSync].entries()) {
      const fd = await create(join(dir, `new${n}`), constants.O_WRONLY)
      expect(fd).toBeTypeOf('number')
      writeSync(fd as number, 'abc')
      closeSync(fd as number)
      expect(await readFile(join(dir, `new${n}`), 'utf8')).toBe('abc')
      for (const name of [`new${n}`, 'to-file', 'dangling']) expect(await create(join(dir, name), constants.O_WRONLY)).toBeUndefined()
    }
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret')
    await expect(stat(join(outside, 'made'))).rejects.toThrow(/ENOENT/)
  })

  it('openOwnedFd (and on the calling thread) refuses a symlink, a directory, a FIFO and a file with another hard link', async () => {
    const { outside } = await setup()
    await symlink(join(outside, 'secret'), join(dir, 'link'))
    await mkdir(join(dir, 'd'))
    execFileSync('mkfifo', [join(dir, 'fifo')])
    await link(join(outside, 'secret'), join(dir, 'hard'))
    for (const open of [openOwnedFd, async (p: string, a: number) => openOwnedFdSync(p, a)]) {
      await refused(open(join(dir, 'link'), constants.O_WRONLY), /is a symlink/)
      await refused(open(join(dir, 'd'), constants.O_WRONLY), /not a plain file/)
      await refused(open(join(dir, 'fifo'), constants.O_WRONLY), /not a plain file/)
      await refused(open(join(dir, 'hard'), constants.O_WRONLY), /2 hard links/)
      const fd = await open(join(dir, 'plain'), constants.O_WRONLY)
      closeSync(fd)
    }
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret')
  })

  it('refuses a symlink (to a file, to a directory, dangling), and writes nothing through it', async () => {
    const { outside } = await setup()
    const before = await stat(join(outside, 'secret'))
    await symlink(join(outside, 'secret'), join(dir, 'to-file.cidget-partial'))
    await symlink(outside, join(dir, 'to-dir.cidget-partial'))
    await symlink(join(outside, 'new'), join(dir, 'dangling.cidget-partial'))
    for (const name of ['to-file', 'to-dir', 'dangling']) {
      await refused(PartialFile.open(join(dir, name)), /is a symlink/)
    }
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret')
    expect((await stat(join(outside, 'secret'))).mtimeMs).toBe(before.mtimeMs)
    await expect(stat(join(outside, 'new'))).rejects.toThrow(/ENOENT/)
  })

  it('refuses a directory, a FIFO and a file with another hard link', async () => {
    const { outside } = await setup()
    await mkdir(join(dir, 'd.cidget-partial'))
    await refused(PartialFile.open(join(dir, 'd')), /not a plain file/)
    execFileSync('mkfifo', [join(dir, 'f.cidget-partial')])
    // O_WRONLY on a FIFO without a reader would block forever without O_NONBLOCK
    await refused(openOwnedFile(join(dir, 'f.cidget-partial'), constants.O_WRONLY), /not a plain file/)
    await refused(PartialFile.open(join(dir, 'f')), /not a plain file/)
    await link(join(outside, 'secret'), join(dir, 'h.cidget-partial'))
    await refused(PartialFile.open(join(dir, 'h')), /2 hard links/)
    expect(await readFile(join(outside, 'secret'), 'utf8')).toBe('secret')
  })

  it.runIf(isRoot)('refuses a file of another user', async () => {
    await setup()
    await writeFile(join(dir, 'o.cidget-partial'), 'theirs')
    await chown(join(dir, 'o.cidget-partial'), 4321, 4321)
    await refused(PartialFile.open(join(dir, 'o')), /belongs to user 4321/)
  })
})

describe('ownedDirectory', () => {
  it('creates a directory or accepts a real one; refuses a link, a file, or another user\'s', async () => {
    const { outside } = await setup()
    expect(await ownedDirectory(join(dir, 'new'))).toBe(true)
    expect(await ownedDirectory(join(dir, 'new'))).toBe(false)
    await symlink(outside, join(dir, 'link'))
    await refused(ownedDirectory(join(dir, 'link')), /is a symlink/)
    await symlink(join(outside, 'missing'), join(dir, 'dangling'))
    await refused(ownedDirectory(join(dir, 'dangling')), /is a symlink/)
    await expect(stat(join(outside, 'missing'))).rejects.toThrow(/ENOENT/)
    await writeFile(join(dir, 'file'), '')
    await refused(ownedDirectory(join(dir, 'file')), /not a directory/)
    if (isRoot) {
      await mkdir(join(dir, 'theirs'))
      await chown(join(dir, 'theirs'), 4321, 4321)
      await refused(ownedDirectory(join(dir, 'theirs')), /belongs to user 4321/)
    }
  })
})
