/**
 * The on-disk check of the symlinks a tree writes. A link's target checked as
 * text (names.ts checkSymlink) can still lead out through other links: with
 * `a/l → ..` (the root, read on disk), `x → a/l/../secret` reads as
 * `a/secret` but resolves to the root's parent. So once the tree is written,
 * before it is renamed onto the output, each link is resolved on disk as the
 * kernel would, following the others.
 */
import { lstat, open, readdir, readlink, unlink } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative, sep } from 'node:path'
import { CidgetError, fsError, systemCode } from '../core/errors.js'

/** Links followed in one resolution before it counts as a loop (Linux's MAXSYMLINKS). */
export const MAX_LINK_HOPS = 40

export interface LinkResolution {
  /** Where it leads, relative to the root (components that do not exist included), or undefined when it leaves the root. */
  to: string | undefined
  /** Why it is refused, when it is. */
  why?: string
  /** The links followed, the link itself first. */
  via: string[]
}

/**
 * Resolves the symlink at `link` (below `root`) on disk: each component is
 * looked at with lstat, links are followed (at most MAX_LINK_HOPS), and from
 * the first component that does not exist on the path is read lexically (as
 * if it were a directory made later), `..` included. Leaving the root at any
 * step, an absolute target or a loop is refused: the root is renamed onto the
 * output afterwards, so a path out of it and back in would not lead back.
 */
export async function resolveLink (root: string, link: string): Promise<LinkResolution> {
  const via = [link]
  // real directories below the root, then components that do not exist (read lexically)
  const at = relative(root, dirname(link)).split(sep).filter(p => p !== '')
  const missing: string[] = []
  const refused = (why: string): LinkResolution => ({ to: undefined, why, via })
  let todo = await targetParts(link)
  if (todo === undefined) return refused('it has an absolute target')
  while (todo.length > 0) {
    const part = todo.shift() as string
    if (part === '' || part === '.') continue
    if (part === '..') {
      if (missing.length > 0) missing.pop()
      else if (at.length > 0) at.pop()
      else return refused('it leads out of the output directory')
      continue
    }
    if (missing.length > 0) {
      missing.push(part)
      continue
    }
    const path = join(root, ...at, part)
    let isLink: boolean
    try {
      isLink = (await lstat(path)).isSymbolicLink()
    } catch (err) {
      const code = systemCode(err)
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw fsError(err, `inspect ${path}`)
      missing.push(part)
      continue
    }
    if (!isLink) {
      at.push(part) // a file followed by more components: ENOTDIR below it, so those are read lexically
      continue
    }
    if (via.length >= MAX_LINK_HOPS) return refused(`more than ${MAX_LINK_HOPS} links are followed (a loop?)`)
    via.push(path)
    const parts = await targetParts(path)
    if (parts === undefined) return refused(`it leads through ${relative(root, path)}, which has an absolute target`)
    todo = [...parts, ...todo]
  }
  return { to: [...at, ...missing].join('/'), via }
}

/** A link's target split into components; undefined for an absolute target. */
async function targetParts (path: string): Promise<string[] | undefined> {
  let target: string
  try {
    target = await readlink(path)
  } catch (err) {
    throw fsError(err, `read symlink ${path}`)
  }
  return isAbsolute(target) ? undefined : target.split('/')
}

/**
 * Checks `links` (symlinks below `root`) on disk. One that leads out is
 * refused with CIDGET_ERR_UNSAFE_SYMLINK, or with `skip` removed. Returns the
 * links removed. All are resolved before any is removed: a link that goes
 * through a refused one is refused too (it reads the same target from the
 * same directory), so removing one never makes another lead out.
 */
export async function confineLinks (root: string, links: readonly string[], skip: boolean): Promise<string[]> {
  const refused: string[] = []
  for (const link of links) {
    const r = await resolveLink(root, link)
    if (r.to !== undefined) continue
    if (!skip) {
      const target = await readlink(link).catch(() => '?')
      const shown = JSON.stringify(target.length > 80 ? target.slice(0, 77) + '…' : target)
      const path = r.via.length > 1 ? ` (through ${r.via.slice(1).map(p => relative(root, p)).join(', ')})` : ''
      throw new CidgetError('CIDGET_ERR_UNSAFE_SYMLINK', `Refusing symlink ${relative(root, link)} → ${shown}${path}: resolved on disk, ${r.why ?? 'it leads out'}`)
    }
    refused.push(link)
  }
  for (const link of refused) {
    try {
      await unlink(link)
    } catch (err) {
      throw fsError(err, `remove symlink ${link}`)
    }
  }
  // the removals are durable before the directory is renamed into place
  for (const d of new Set(refused.map(p => dirname(p)))) await syncDir(d)
  return refused
}

async function syncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => undefined)
  try {
    await fh?.sync()
  } catch {
    // some file systems refuse fsync on directories
  } finally {
    await fh?.close()
  }
}

/** Every symlink below `dir` (links to directories are not descended into). */
export async function linksBelow (dir: string): Promise<string[]> {
  const out: string[] = []
  const dirs = [dir]
  while (dirs.length > 0) {
    const d = dirs.pop() as string
    let entries
    try {
      entries = await readdir(d, { withFileTypes: true })
    } catch (err) {
      throw fsError(err, `list ${d}`)
    }
    for (const e of entries) {
      if (e.isSymbolicLink()) out.push(join(d, e.name))
      else if (e.isDirectory()) dirs.push(join(d, e.name))
    }
  }
  return out
}
