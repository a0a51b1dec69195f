/** Outputs confined to a directory (the service's and the queue's --dir) look at the partial path too. */
import { describe, it, expect, afterEach } from 'vitest'
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { confinedOutput } from '../../src/sink/confine.js'
import { Downloader } from '../../src/engine/downloader.js'
import { MemoryBlocks, addFile, seededBytes, startTestGateway } from '../../src/testing/index.js'

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
    const dl = await Downloader.open({ routers: [], state: join(dir, 'state.db'), gateways: ['http://127.0.0.1:9'], recover: false })
    try {
      for (const output of ['sub/', 'named']) {
        await expect(dl.enqueue([{ target: CID, output }], { dir }), output).rejects.toMatchObject({ code: 'CIDGET_ERR_OUTSIDE_DIR', message: /partial path .* is a symlink/ })
      }
      expect(await dl.list()).toEqual([])
    } finally {
      await dl.close()
    }
  })

  it('refuses an output that goes through another download\'s partial data, which may hold links not checked yet', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cidget-confine-'))
    for (const output of ['a.cidget-partial/esc/victim', 'sub/b.cidget-partial/x']) {
      await expect(confinedOutput(dir, output), output).rejects.toMatchObject({ code: 'CIDGET_ERR_OUTSIDE_DIR', message: /partial data/ })
    }
    expect(await confinedOutput(dir, 'a.cidget-partial')).toBe(join(dir, 'a.cidget-partial'))
  })

  it('a link that appears on the way after a download was queued is found when it starts, and when its file is deleted (service.dir)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cidget-confine-'))
    const root = join(dir, 'root')
    const outside = join(dir, 'outside')
    await mkdir(root)
    await mkdir(outside)
    await writeFile(join(outside, 'keep'), 'the user\'s')
    const blocks = new MemoryBlocks()
    const cid = await addFile(blocks, seededBytes(10_000))
    const gateway = await startTestGateway({ blocks })
    const dl = await Downloader.open({ routers: [], state: join(dir, 'state.db'), gateways: [gateway.url], recover: false, service: { dir: root, allowLocal: true } })
    try {
      const [queued] = await dl.enqueue([{ target: cid.toString(), output: 'sub/victim' }], { dir: root })
      // `sub` did not exist when it was queued; now it is a link out (planted by anything that writes in root)
      await symlink(outside, join(root, 'sub'))
      const job = await dl.claimNext({ under: root })
      expect(job?.id).toBe(queued?.id)
      const done = await job!.done
      expect(done).toMatchObject({ status: 'failed', errorCode: 'CIDGET_ERR_OUTSIDE_DIR' })
      expect((await readdir(outside)).sort()).toEqual(['keep'])
      expect(gateway.requests).toEqual([]) // refused before anything was fetched
      await expect(dl.remove(queued!.id, { deleteFile: true })).rejects.toMatchObject({ code: 'CIDGET_ERR_OUTSIDE_DIR' })
      expect((await readdir(outside)).sort()).toEqual(['keep'])
    } finally {
      await dl.close()
      await gateway.close()
    }
  })
})
