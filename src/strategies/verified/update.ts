import { link, lstat, open, readdir, readlink, rename, rm, symlink, copyFile } from 'node:fs/promises'
import { makeDirs } from '../../sink/dirs.js'
import { dirname, join } from 'node:path'
import { fsError, isCidgetError, systemCode } from '../../core/errors.js'
import type { UpdateReport } from '../../core/types.js'
import { present, renameIntoPlace } from '../../sink/partial.js'
import type { DagReader } from './reader.js'
import type { Seeded } from './seed.js'

/** Where the old version waits while the new one is renamed into place. */
export const OLD_SUFFIX = '.cidget-old'
/** Paths a report names at most (the counts are whole). */
const MAX_NAMED = 100

/**
 * An update's swap of a directory, two renames: the old output aside, the new
 * one into place, then the old one deleted (a file: one rename over the old). A run that finds the old one aside (it was stopped
 * between the renames) puts it back when nothing is in place (the update then
 * resumes and swaps again), or deletes it when the new one is: either way one
 * whole version is at the output at every moment but between the renames.
 */
export async function settleSwap (output: string): Promise<void> {
  const old = output + OLD_SUFFIX
  if (!await present(old)) return
  if (await present(output)) await rm(old, { recursive: true, force: true }).catch((err: unknown) => { throw fsError(err, `remove ${old}`) })
  else await rename(old, output).catch((err: unknown) => { throw fsError(err, `move ${old} back to ${output}`) })
}

/** Puts the finished new version (`staging`) in place of the old one at `output` (see {@link settleSwap}). */
export async function swapIn (staging: string, output: string): Promise<void> {
  const old = output + OLD_SUFFIX
  await rm(old, { recursive: true, force: true }).catch((err: unknown) => { throw fsError(err, `remove ${old}`) })
  // a file replaces the old one in one rename: there is no moment without one
  if (!(await lstat(staging)).isDirectory() && !(await lstat(output).then((s) => s.isDirectory(), () => false))) {
    await renameIntoPlace(staging, output)
    return
  }
  if (await present(output)) await rename(output, old).catch((err: unknown) => { throw fsError(err, `move ${output} aside`) })
  await renameIntoPlace(staging, output)
  await rm(old, { recursive: true, force: true }).catch((err: unknown) => { throw fsError(err, `remove ${old}`) })
}

/** What was kept, fetched, removed and carried over, from the seeding and the walk's total. */
export function updateReport (seeded: Pick<Seeded, 'keptFiles' | 'keptBytes' | 'reusedBytes'>, written: number, tree: CarriedOver, complete: boolean): UpdateReport {
  return {
    keptFiles: seeded.keptFiles,
    keptBytes: seeded.keptBytes,
    reusedBytes: seeded.reusedBytes,
    fetchedBytes: Math.max(0, written - seeded.keptBytes - seeded.reusedBytes),
    removed: tree.removed,
    removedCount: tree.removedCount,
    carried: tree.carried,
    carriedCount: tree.carriedCount,
    previousUnknown: tree.previousUnknown,
    complete
  }
}

export interface CarriedOver {
  removed: string[]
  removedCount: number
  carried: string[]
  carriedCount: number
  previousUnknown: boolean
}

/** Where a file of yours goes when the new version has something else at its path. */
export const LOCAL_SUFFIX = '.cidget-local'

/**
 * The old output's entries that the new version (in `staging`) does not have:
 * those of the old version (`previous`, its CID and path) are removed with it;
 * the others were never part of it (added by hand) and are carried over into
 * the new version (hard-linked, or copied; links as links), their directories
 * made. One of yours at a path the new version now uses goes beside it with
 * LOCAL_SUFFIX. When the old version cannot be read (`previous` unknown, or
 * its directories on no gateway any more), nothing is deleted: every entry the
 * new version lacks is carried over. Nothing of the old output is changed.
 */
export async function carryOver (staging: string, old: string, previous: { cid: string, path: string } | undefined, reader: DagReader): Promise<CarriedOver> {
  const out: CarriedOver = { removed: [], removedCount: 0, carried: [], carriedCount: 0, previousUnknown: previous === undefined }
  if (!(await lstat(old).then((s) => s.isDirectory(), () => false))) return out
  const inOld = async (rel: string): Promise<boolean> => {
    if (previous === undefined) return false
    try {
      await reader.resolve(previous.cid, previous.path + rel)
      return true
    } catch (err) {
      // the path is not in the old version: its directories were read, and have no such entry
      // (the reader's own "not found in", or the exporter's answer wrapped as "Resolving …"; a block that no
      // gateway has is a CIDGET_ERR_NOT_FOUND of the pool's, as it is)
      if (isCidgetError(err, 'CIDGET_ERR_NOT_FOUND') && (err.message.includes(' not found in ') || err.message.startsWith('Resolving '))) return false
      if (isCidgetError(err) && err.kind !== 'aborted' && err.kind !== 'state') {
        out.previousUnknown = true // on no gateway any more: keep, do not guess
        return false
      }
      throw err
    }
  }
  const carried = async (from: string, to: string, rel: string): Promise<void> => {
    await carry(from, to)
    out.carriedCount++
    if (out.carried.length < MAX_NAMED) out.carried.push(rel)
  }
  const walk = async (rel: string, into: string): Promise<void> => {
    for (const entry of await readdir(join(old, rel), { withFileTypes: true })) {
      const r = `${rel}/${entry.name}`
      const target = `${into}/${entry.name}`
      const there = await lstat(join(staging, target)).then((s) => s, () => undefined)
      if (there !== undefined) {
        if (there.isDirectory() && entry.isDirectory()) {
          await walk(r, target) // what the user added inside a directory of both
          continue
        }
        const mine = await lstat(join(old, r))
        // the new version's file kept from this very one (a hard link): part of both
        if (mine.ino === there.ino && mine.dev === there.dev) continue
        if (await inOld(r)) {
          // replaced by the new version; what the user added inside an old directory stays theirs
          if (entry.isDirectory()) await walk(r, `${target}${LOCAL_SUFFIX}`)
          continue
        }
        await carried(join(old, r), join(staging, target + LOCAL_SUFFIX), target.slice(1) + LOCAL_SUFFIX)
        continue
      }
      if (await inOld(r)) {
        out.removedCount++
        if (out.removed.length < MAX_NAMED) out.removed.push(r.slice(1))
        if (entry.isDirectory()) await walk(r, target) // what the user added in it is carried over
        continue
      }
      await carried(join(old, r), join(staging, target), target.slice(1))
    }
  }
  await walk('', '')
  return out
}

/** Copies `from` (a file, a link or a directory of the user's) to `to`, files hard-linked where possible, else copied whole then renamed. */
async function carry (from: string, to: string): Promise<void> {
  try {
    await makeDirs(dirname(to))
    const st = await lstat(from)
    if (st.isDirectory()) {
      await makeDirs(to)
      for (const name of await readdir(from)) await carry(join(from, name), join(to, name))
    } else if (st.isSymbolicLink()) {
      await rm(to, { force: true })
      await symlink(await readlink(from), to)
    } else if (st.isFile()) {
      await rm(to, { force: true }) // a copy cut short by a kill
      await link(from, to).catch(async (err: unknown) => {
        if (systemCode(err) === 'EEXIST') throw err
        // a copy under another name, durable, then renamed: never a part of the file at its name
        const tmp = to + '.cidget-tmp'
        await copyFile(from, tmp)
        const fh = await open(tmp, 'r+')
        try { await fh.sync() } finally { await fh.close() }
        await rename(tmp, to)
      })
    }
  } catch (err) {
    throw fsError(err, `carry ${from} over to ${to}`)
  }
}
