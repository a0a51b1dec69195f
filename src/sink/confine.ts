/**
 * Outputs that must stay inside one directory: those of downloads added
 * through the service (its `--dir`) or queued for fleet workers.
 */
import { lstat, realpath } from 'node:fs/promises'
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path'
import { CidgetError, fsError, systemCode } from '../core/errors.js'
import { DEFAULTS } from '../core/defaults.js'
import { partialPath } from './partial.js'

/** A failure to look at the way to an output, told without the server's own paths (an API client reads it). */
function unreadable (err: unknown, what: string): CidgetError {
  const code = systemCode(err)
  if (code === 'EACCES' || code === 'EPERM') return new CidgetError('CIDGET_ERR_OUTPUT_NOT_WRITABLE', `Cannot ${what}: permission denied`, { cause: err })
  return fsError(err, what)
}

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
      if (code === 'ELOOP') throw new CidgetError('CIDGET_ERR_OUTSIDE_DIR', `Output ${JSON.stringify(relative(dirname(path), path))}: a symlink on its way loops`)
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw unreadable(err, `inspect the way to ${relative(dirname(path), path)}`)
      const up = dirname(at)
      if (up === at) throw unreadable(err, `inspect the way to ${relative(dirname(path), path)}`)
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
async function checkPartialPath (dir: string, output: string): Promise<void> {
  const partial = partialPath(output)
  let isLink: boolean
  try {
    isLink = (await lstat(partial)).isSymbolicLink()
  } catch (err) {
    const code = systemCode(err)
    if (code === 'ENOENT' || code === 'ENOTDIR') return
    throw unreadable(err, `inspect the partial path of ${relative(dirname(dir), output)}`)
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
  const directory = output.endsWith('/') || full === root
  await checkConfined(root, full, !directory)
  return directory ? full + sep : full
}

/**
 * Checks on disk that the absolute `output` stays inside `dir`: lexically, and
 * through the symlinks on its way as they are now; that no directory on its way
 * is another download's partial data (`….cidget-partial`, whose links are not
 * checked until that download ends); and (with `partial`) that its own partial
 * path is not a symlink. Throws CIDGET_ERR_OUTSIDE_DIR. Run when a download is
 * added, again when it starts, and before its output is deleted: links on the
 * way may have appeared since.
 */
export async function checkConfined (dir: string, output: string, partial = true): Promise<void> {
  const root = resolve(dir)
  const shown = relative(root, output)
  if (!isWithin(root, output)) throw outside(shown, root, 'it leaves the directory')
  if (relative(root, dirname(output)).split(sep).some(part => part.endsWith(DEFAULTS.PARTIAL_SUFFIX))) {
    throw outside(shown, root, `it goes through another download's partial data (${DEFAULTS.PARTIAL_SUFFIX})`)
  }
  const realRoot = await realpath(root).catch((err: unknown) => { throw fsError(err, `inspect ${root}`) })
  const { real, rest } = await realAncestor(output)
  if (!isWithin(realRoot, resolve(real, rest))) throw outside(shown, root, 'it leads out through a symlink')
  if (partial) await checkPartialPath(root, output)
}
