/**
 * Outputs that must stay inside one directory: those of downloads added
 * through the service (its `--dir`) or queued for fleet workers.
 */
import { lstat, realpath } from 'node:fs/promises'
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path'
import { CidgetError, systemCode } from '../core/errors.js'
import { partialPath } from './partial.js'

function outside (output: string, dir: string, why: string): CidgetError {
  return new CidgetError('CIDGET_ERR_OUTSIDE_DIR', `Output "${output}" is outside the directory ${dir}: ${why}`)
}

/** True when `path` is `dir` or below it (both absolute and normalized). */
export function isWithin (dir: string, path: string): boolean {
  const rel = relative(dir, path)
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel))
}

/** The deepest ancestor of `path` (itself included) that exists, resolved through symlinks. */
async function realAncestor (path: string): Promise<{ real: string, rest: string }> {
  let at = path
  for (;;) {
    try {
      const real = await realpath(at)
      return { real, rest: relative(at, path) }
    } catch (err) {
      const code = systemCode(err)
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err
      const up = dirname(at)
      if (up === at) throw err
      at = up
    }
  }
}

/**
 * Refuses an output whose partial path (`<output>.cidget-partial`, where the
 * data goes until it is complete) is a symlink: a download never writes
 * through one (it would fail with CIDGET_ERR_UNSAFE_PARTIAL), and one that
 * leads out of `dir` is refused here, before the download is added.
 */
export async function checkPartialPath (dir: string, output: string): Promise<void> {
  const partial = partialPath(output)
  let isLink: boolean
  try {
    isLink = (await lstat(partial)).isSymbolicLink()
  } catch (err) {
    const code = systemCode(err)
    if (code === 'ENOENT' || code === 'ENOTDIR') return
    throw err
  }
  if (isLink) throw outside(output, resolve(dir), `its partial path ${partial} is a symlink`)
}

/**
 * The output to hand to the engine for a request's `output` (relative to
 * `dir`), or `dir/` (the target's default name inside it) when none is given.
 * Refuses absolute paths, paths that leave `dir`, paths that leave it
 * through a symlink already on disk, and outputs whose partial path is a
 * symlink (checkPartialPath). A trailing `/` is kept: the engine puts the
 * default name inside such a directory (whose partial path the engine checks
 * when it opens it).
 */
export async function confinedOutput (dir: string, output: string | undefined): Promise<string> {
  const root = resolve(dir)
  if (output === undefined) return root + sep
  if (output.includes('\0')) throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'The output path contains a NUL byte')
  if (isAbsolute(output) || /^[a-zA-Z]:[\\/]/.test(output) || output.startsWith('\\')) throw outside(output, root, 'give a path relative to it')
  const full = resolve(root, output)
  if (!isWithin(root, full)) throw outside(output, root, 'it leaves the directory')
  const realRoot = await realpath(root)
  const { real, rest } = await realAncestor(full)
  if (!isWithin(realRoot, resolve(real, rest))) throw outside(output, root, 'it leads out through a symlink')
  const directory = output.endsWith('/') || full === root
  if (!directory) await checkPartialPath(root, full)
  return directory ? full + sep : full
}
