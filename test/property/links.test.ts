/**
 * Properties of the on-disk link check (issue 14), against the kernel: random
 * links (to random relative paths through each other, `..` and the tree's own
 * name included) are written in a real tree; wherever the kernel resolves one
 * (realpath), the resolver says the same place or refuses it, and refuses
 * every one the kernel resolves outside; after confineLinks with skip, every
 * link left resolves inside the tree, or nowhere.
 */
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { confineLinks, linksBelow, resolveLink } from '../../src/sink/links.js'
import { params } from './fc.js'

const DIRS = ['', 'a', 'a/b', 'c']
const NAMES = ['l0', 'l1', 'l2', 'l3', 'l4']
const PARTS = ['..', '..', '.', 'a', 'b', 'c', 'file', 'x', 'root.cidget-partial', 'outside', ...NAMES]

const links = fc.uniqueArray(
  fc.record({
    at: fc.constantFrom(...DIRS),
    name: fc.constantFrom(...NAMES),
    target: fc.array(fc.constantFrom(...PARTS), { minLength: 1, maxLength: 7 }).map(ps => ps.join('/'))
  }),
  { minLength: 1, maxLength: 8, selector: l => `${l.at}/${l.name}` }
)

/** The kernel's answer: where the link leads, or undefined when it leads nowhere (ENOENT, ELOOP, ENOTDIR). */
async function kernel (path: string): Promise<string | undefined> {
  return await realpath(path).catch(() => undefined)
}

function within (root: string, p: string): boolean {
  return p === root || p.startsWith(root + sep)
}

describe('resolveLink against the kernel (properties)', () => {
  it('agrees with realpath where the kernel resolves a link, and refuses every link the kernel resolves outside', async () => {
    await fc.assert(fc.asyncProperty(links, async (ls) => {
      const base = await mkdtemp(join(tmpdir(), 'cidget-plinks-'))
      try {
        const root = join(base, 'root.cidget-partial')
        for (const d of DIRS) await mkdir(join(root, d), { recursive: true })
        await mkdir(join(base, 'outside'))
        await writeFile(join(root, 'file'), 'f')
        for (const l of ls) await symlink(l.target, join(root, l.at, l.name))
        const realRoot = await realpath(root)
        for (const l of ls) {
          const path = join(root, l.at, l.name)
          const got = await resolveLink(root, path)
          const real = await kernel(path)
          if (real === undefined) continue
          if (!within(realRoot, real)) expect(got.to, `${l.at}/${l.name} → ${l.target} leads to ${real}`).toBeUndefined()
          if (got.to !== undefined) expect(real, `${l.at}/${l.name} → ${l.target}`).toBe(got.to === '' ? realRoot : join(realRoot, got.to))
        }
        // with skip, what is left resolves inside, or nowhere
        await confineLinks(root, await linksBelow(root), true)
        for (const path of await linksBelow(root)) {
          const real = await kernel(path)
          if (real !== undefined) expect(within(realRoot, real), `${path} leads to ${real}`).toBe(true)
        }
      } finally {
        await rm(base, { recursive: true, force: true })
      }
    }), params(1))
  })
})
