import { link, lstat, mkdir, readdir, readlink, rename, rm, symlink, copyFile } from 'node:fs/promises'
import { constants } from 'node:fs'
import { dirname, join } from 'node:path'
import { fsError, isCidgetError, systemCode } from '../../core/errors.js'
import type { UpdateReport } from '../../core/types.js'
import { renameIntoPlace } from '../../sink/partial.js'
import type { DagReader } from './reader.js'
import type { Seeded } from './seed.js'

/** Where the old version waits while the new one is renamed into place. */
export const OLD_SUFFIX = '.cidget-old'
/** Paths a report names at most (the counts are whole). */
const MAX_NAMED = 100

/**
 * An update's swap, two renames: the old output aside, the new one into place,
 * then the old one deleted. A run that finds the old one aside (it was stopped
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
  if (await present(output)) await rename(output, old).catch((err: unknown) => { throw fsError(err, `move ${output} aside`) })
  await renameIntoPlace(staging, output)
  await rm(old, { recursive: true, force: true }).catch((err: unknown) => { throw fsError(err, `remove ${old}`) })
}

/** What was kept, fetched, removed and carried over, from the seeding and the walk's total. */
export function updateReport (seeded: Pick<Seeded, 'keptFiles' | 'keptBytes' | 'reusedBytes'>, written: number, tree: CarriedOver): UpdateReport {
  return {
    keptFiles: seeded.keptFiles,
    keptBytes: seeded.keptBytes,
    reusedBytes: seeded.reusedBytes,
    fetchedBytes: Math.max(0, written - seeded.keptBytes - seeded.reusedBytes),
    removed: tree.removed,
    removedCount: tree.removedCount,
    carried: tree.carried,
    carriedCount: tree.carriedCount
  }
}

export interface CarriedOver {
  removed: string[]
  removedCount: number
  carried: string[]
  carriedCount: number
}

/**
 * The old output's entries that the new version (in `staging`) does not have:
 * those of the old version (`previous`, its CID and path) are removed with
 * it; the others were never part of it (added by hand) and are carried over
 * into the new version (hard-linked, or copied; links as links), their
 * directories made. Nothing of the old output is changed.
 */
export async function carryOver (staging: string, old: string, previous: { cid: string, path: string }, reader: DagReader): Promise<CarriedOver> {
  const out: CarriedOver = { removed: [], removedCount: 0, carried: [], carriedCount: 0 }
  if (!(await lstat(old).then((s) => s.isDirectory(), () => false))) return out
  const inOld = async (rel: string): Promise<boolean> => {
    try {
      await reader.resolve(previous.cid, previous.path + rel)
      return true
    } catch (err) {
      if (isCidgetError(err, 'CIDGET_ERR_NOT_FOUND')) return false
      throw err
    }
  }
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(old, rel), { withFileTypes: true })) {
      const r = `${rel}/${entry.name}`
      const there = await lstat(join(staging, r)).then((s) => s, () => undefined)
      if (there !== undefined) {
        // the new version has it: what the user added inside a directory of both is looked for below
        if (there.isDirectory() && entry.isDirectory()) await walk(r)
        continue
      }
      if (await inOld(r)) {
        out.removedCount++
        if (out.removed.length < MAX_NAMED) out.removed.push(r.slice(1))
        if (entry.isDirectory()) await walk(r) // what the user added in it is carried over
        continue
      }
      await carry(join(old, r), join(staging, r))
      out.carriedCount++
      if (out.carried.length < MAX_NAMED) out.carried.push(r.slice(1))
    }
  }
  await walk('')
  return out
}

/** Copies `from` (a file, a link or a directory of the user's) to `to`, files hard-linked where possible. */
async function carry (from: string, to: string): Promise<void> {
  try {
    await mkdir(dirname(to), { recursive: true })
    const st = await lstat(from)
    if (st.isDirectory()) {
      await mkdir(to)
      for (const name of await readdir(from)) await carry(join(from, name), join(to, name))
    } else if (st.isSymbolicLink()) {
      await symlink(await readlink(from), to)
    } else if (st.isFile()) {
      await link(from, to).catch(async (err: unknown) => {
        if (systemCode(err) === 'EEXIST') throw err
        await copyFile(from, to, constants.COPYFILE_EXCL)
      })
    }
  } catch (err) {
    throw fsError(err, `carry ${from} over to ${to}`)
  }
}

async function present (path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return false
    throw fsError(err, `look for ${path}`)
  }
}
