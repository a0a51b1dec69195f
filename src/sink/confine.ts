/**
 * Outputs that must stay inside one directory: those of downloads added
 * through the service (its `--dir`) or queued for fleet workers.
 */
import { realpath } from 'node:fs/promises'
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path'
import { CidgetError, systemCode } from '../core/errors.js'

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
 * The output to hand to the engine for a request's `output` (relative to
 * `dir`), or `dir/` (the target's default name inside it) when none is given.
 * Refuses absolute paths, paths that leave `dir`, and paths that leave it
 * through a symlink already on disk. A trailing `/` is kept: the engine puts
 * the default name inside such a directory.
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
  return output.endsWith('/') || full === root ? full + sep : full
}
