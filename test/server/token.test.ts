/**
 * The service's token file (issue 14, items 6 and 7): made once, private, and
 * refused when someone else could have set it.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { chmod, chown, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadOrCreateToken, readTokenFile } from '../../src/server/token.js'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'cidget-token-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('token file', () => {
  it('is made once, 0600, in a directory made 0700; later starts read it and say it is not new', async () => {
    const file = join(dir, 'home', '.cidget', 'token')
    const first = await loadOrCreateToken(file)
    expect(first.created).toBe(true)
    expect(first.token).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect((await stat(join(dir, 'home', '.cidget'))).mode & 0o777).toBe(0o700)
    expect(await loadOrCreateToken(file)).toEqual({ token: first.token, created: false })
    expect(await readTokenFile(file)).toBe(first.token)
  })

  it('refuses a symlink, a file writable by group or others, and one that is not a file', async () => {
    const real = join(dir, 'real')
    await writeFile(real, 'planted-token\n', { mode: 0o600 })
    const link = join(dir, 'token')
    await symlink(real, link)
    await expect(readTokenFile(link)).rejects.toMatchObject({ code: 'CIDGET_ERR_STATE', message: expect.stringMatching(/is a symlink/) })
    await expect(loadOrCreateToken(link)).rejects.toMatchObject({ code: 'CIDGET_ERR_STATE' })
    // a dangling link is refused too, not written through
    const dangling = join(dir, 'dangling')
    await symlink(join(dir, 'nowhere'), dangling)
    await expect(loadOrCreateToken(dangling)).rejects.toMatchObject({ code: 'CIDGET_ERR_STATE' })
    await expect(stat(join(dir, 'nowhere'))).rejects.toMatchObject({ code: 'ENOENT' })

    for (const mode of [0o620, 0o602, 0o666]) {
      await chmod(real, mode)
      await expect(readTokenFile(real), mode.toString(8)).rejects.toMatchObject({ code: 'CIDGET_ERR_STATE', message: expect.stringMatching(/writable by .*chmod 600/) })
    }
    await chmod(real, 0o640)
    expect(await readTokenFile(real)).toBe('planted-token')
    await expect(readTokenFile(dir)).rejects.toMatchObject({ code: 'CIDGET_ERR_STATE', message: expect.stringMatching(/not a regular file/) })
  })

  it.runIf(process.getuid?.() === 0)('refuses a file another user owns (as root: chown)', async () => {
    const file = join(dir, 'token')
    await writeFile(file, 'someone-elses\n', { mode: 0o600 })
    await chown(file, 12345, 12345)
    await expect(readTokenFile(file)).rejects.toMatchObject({ code: 'CIDGET_ERR_STATE', message: expect.stringMatching(/another user/) })
  })
})
