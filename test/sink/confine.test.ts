/** Outputs confined to a directory (the service's and the queue's --dir) look at the partial path too. */
import { describe, it, expect, afterEach } from 'vitest'
import { mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { confinedOutput } from '../../src/sink/confine.js'
import { Downloader } from '../../src/engine/downloader.js'

let dir: string
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

const CID = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

describe('confinedOutput', () => {
  it('refuses an output whose <output>.cidget-partial is a symlink, leading out or dangling', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cidget-confine-'))
    const root = join(dir, 'root')
    const elsewhere = join(dir, 'elsewhere')
    await mkdir(join(root, 'sub'), { recursive: true })
    await mkdir(elsewhere)
    await symlink(join(elsewhere, 'file'), join(root, 'out.cidget-partial'))
    await symlink(elsewhere, join(root, 'sub', 'tree.cidget-partial'))
    await symlink('inside', join(root, 'rel.cidget-partial'))
    for (const output of ['out', 'sub/tree', 'rel']) {
      await expect(confinedOutput(root, output), output).rejects.toMatchObject({ code: 'CIDGET_ERR_OUTSIDE_DIR', message: /partial path .* is a symlink/ })
    }
    expect(await confinedOutput(root, 'other')).toBe(join(root, 'other'))
    expect(await confinedOutput(root, 'sub/')).toBe(join(root, 'sub') + sep)
    expect(await readdir(elsewhere)).toEqual([])
  })

  it('the queue refuses an item whose partial path is a symlink, the default name in a directory included', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cidget-confine-'))
    await mkdir(join(dir, 'sub'))
    await symlink(join(dir, 'elsewhere'), join(dir, 'sub', `${CID}.cidget-partial`))
    await symlink(join(dir, 'elsewhere'), join(dir, 'named.cidget-partial'))
    const dl = await Downloader.open({ state: join(dir, 'state.db'), gateways: ['http://127.0.0.1:9'], recover: false })
    try {
      for (const output of ['sub/', 'named']) {
        await expect(dl.enqueue([{ target: CID, output }], { dir }), output).rejects.toMatchObject({ code: 'CIDGET_ERR_OUTSIDE_DIR', message: /partial path .* is a symlink/ })
      }
      expect(await dl.list()).toEqual([])
    } finally {
      await dl.close()
    }
  })
})
