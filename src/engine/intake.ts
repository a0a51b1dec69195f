/**
 * What goes into the queue: a target and its options checked and turned into
 * a new download record (mode, output path, gateways, expected hash).
 *
 * @module
 */

import { join, resolve, sep } from 'node:path'
import { access, stat } from 'node:fs/promises'
import { constants as fsConstants } from 'node:fs'
import { CidgetError, isCidgetError, systemCode, toCidgetError } from '../core/errors.js'
import { MODES, type Mode, type NewDownload } from '../core/types.js'
import { parseTarget, defaultName, type Target } from '../target/parse.js'
import { exists } from '../sink/partial.js'
import { DeadlinePassed, kernelFileSystem, makeDirs } from '../sink/dirs.js'
import { raceAbort } from '../core/async.js'
import { checkConfined, confinedOutput } from '../sink/confine.js'
import type { QueueItem } from './options.js'

export function checkMode (mode: Mode): void {
  if (!MODES.includes(mode)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Unknown mode "${String(mode)}" (verified, path or car)`)
}

/** The output's name when none is given: a CAR download's ends in .car. */
export function outputName (target: Target, mode: Mode): string {
  return mode === 'car' ? `${defaultName(target)}.car` : defaultName(target)
}

export function normalizeSha256 (hex: string): string {
  const h = hex.trim().toLowerCase()
  if (!/^[0-9a-f]{64}$/.test(h)) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--sha256 must be 64 hex digits, got "${hex}"`)
  return h
}

export function dedupe (list: string[]): string[] {
  return [...new Set(list)]
}

/** How long the checks of an output directory may take: a mount that never answers ends the command. */
const OUTPUT_CHECK_MS = 30_000

/** Creates `dir` if needed and checks that files can be created in it (on a file system that holds files). */
export async function ensureWritableDir (dir: string): Promise<void> {
  const refuse = (why: string, cause?: unknown): CidgetError =>
    new CidgetError('CIDGET_ERR_OUTPUT_NOT_WRITABLE', `Cannot write to ${dir}: ${why}`, cause === undefined ? {} : { cause })
  // AbortSignal.timeout's timer keeps no process alive; the call that never answers is left behind
  const deadline = AbortSignal.timeout(OUTPUT_CHECK_MS)
  try {
    await raceAbort((async () => {
      // before anything is made there
      const kernel = await kernelFileSystem(dir)
      if (kernel !== undefined) throw refuse(`it is on ${kernel}, a kernel file system, which holds no downloads`)
      await makeDirs(dir)
      await access(dir, fsConstants.W_OK)
    })(), deadline)
  } catch (err) {
    if (isCidgetError(err)) throw err
    if (deadline.aborted && err === deadline.reason) {
      throw refuse(`its file system did not answer in ${OUTPUT_CHECK_MS / 1000} s`, new DeadlinePassed(`no answer from the file system of ${dir}`))
    }
    const code = systemCode(err)
    const why = code === 'EROFS'
      ? 'read-only file system'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'ENOTDIR' || code === 'EEXIST'
          ? 'a parent is not a directory'
          : code === 'ENOENT' ? 'the file system there refuses new directories' : (err as Error).message
    throw refuse(why, err)
  }
}

/** The absolute output path: `output` as given, or `name` inside it when it is a directory. */
export async function resolveOutput (output: string | undefined, name: string): Promise<string> {
  if (output === undefined || output === '') return resolve(name)
  if (output.endsWith('/')) return resolve(output, name)
  try {
    if ((await stat(output)).isDirectory()) return resolve(output, name)
  } catch (err) {
    if (systemCode(err) !== 'ENOENT' && systemCode(err) !== 'ENOTDIR') throw toCidgetError(err)
  }
  return resolve(output)
}

/** The items of `enqueue` as new records, and which item writes each output. */
export interface QueuePlan {
  downloads: NewDownload[]
  /** Output → the 0-based number of the item writing it. */
  itemOf: Map<string, number>
}

/**
 * Checks every item and turns it into a new record; the first invalid item
 * throws, named by its 1-based number. `gatewaysOf` picks (and checks) the
 * gateways of an item.
 */
export async function planQueue (items: readonly QueueItem[], dir: string,
  gatewaysOf: (item: QueueItem, target: Target) => string[]): Promise<QueuePlan> {
  const downloads: NewDownload[] = []
  for (const [n, item] of items.entries()) {
    try {
      const target = parseTarget(item.target)
      const mode = item.mode ?? 'verified'
      checkMode(mode)
      const name = outputName(target, mode)
      const confined = await confinedOutput(dir, item.output)
      const output = confined.endsWith(sep) ? join(confined, name) : confined
      // the default name joined on: the whole output checked again, its partial path included
      if (confined.endsWith(sep)) await checkConfined(dir, output)
      // a queue never overwrites: a file already there is the user's, or another download's
      if (await exists(output)) throw new CidgetError('CIDGET_ERR_OUTPUT_EXISTS', `${output} already exists`)
      downloads.push({
        cid: target.cid,
        path: target.path,
        name: target.name ?? null,
        target: target.input,
        output,
        mode,
        gateways: gatewaysOf(item, target),
        expectedSha256: item.sha256 === undefined ? null : normalizeSha256(item.sha256),
        priority: item.priority ?? 0
      })
    } catch (err) {
      const e = toCidgetError(err)
      throw new CidgetError(e.code, `Item ${n + 1} (${JSON.stringify(item.target)}): ${e.message}`, { cause: err })
    }
  }
  const itemOf = new Map<string, number>()
  for (const [n, init] of downloads.entries()) {
    const first = itemOf.get(init.output)
    if (first !== undefined) {
      throw new CidgetError('CIDGET_ERR_OUTPUT_IN_USE', `Item ${n + 1} (${JSON.stringify(items[n]?.target)}): item ${first + 1} writes to ${init.output} too`)
    }
    itemOf.set(init.output, n)
  }
  return { downloads, itemOf }
}

/** The store's CIDGET_ERR_OUTPUT_IN_USE for a queue, named by the item that writes that output; other errors as they are. */
export function nameQueueError (err: unknown, plan: QueuePlan, items: readonly QueueItem[]): unknown {
  if (!isCidgetError(err, 'CIDGET_ERR_OUTPUT_IN_USE') || err.output === undefined) return err
  const n = plan.itemOf.get(err.output)
  if (n === undefined) return err
  return new CidgetError('CIDGET_ERR_OUTPUT_IN_USE', `Item ${n + 1} (${JSON.stringify(items[n]?.target)}): ${err.message}`, { cause: err, output: err.output })
}
