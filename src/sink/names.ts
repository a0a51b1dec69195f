import { isAbsolute, join, relative, resolve, dirname, sep } from 'node:path'
import { CidgetError } from '../core/errors.js'

/**
 * Checks one name from a DAG before it becomes a file name: no '', '.', '..',
 * separators, NUL or control characters, at most 255 bytes. Throws CIDGET_ERR_UNSAFE_NAME.
 */
export function checkName (name: string, where: string): string {
  const shown = JSON.stringify(name.length > 60 ? name.slice(0, 57) + '…' : name)
  const refuse = (why: string): never => {
    throw new CidgetError('CIDGET_ERR_UNSAFE_NAME', `Refusing name ${shown} in ${where}: ${why}`)
  }
  if (name === '') refuse('empty name')
  if (name === '.' || name === '..') refuse('relative path component')
  if (name.includes('/') || name.includes('\\')) refuse('contains a path separator')
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused here
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) refuse('contains a NUL or control character')
  if (Buffer.byteLength(name) > 255) refuse('longer than 255 bytes')
  return name
}

/** True when `path` is `root` or inside it (lexically). */
export function isInside (root: string, path: string): boolean {
  const rel = relative(resolve(root), resolve(path))
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel))
}

/** `root/…parts`, each part checked, and the result checked to stay inside `root`. */
export function safeJoin (root: string, parts: string[], where: string): string {
  for (const p of parts) checkName(p, where)
  const full = join(root, ...parts)
  if (!isInside(root, full)) {
    throw new CidgetError('CIDGET_ERR_UNSAFE_NAME', `Refusing path ${JSON.stringify(parts.join('/'))}: it leaves the output directory`)
  }
  return full
}

/**
 * Checks a symlink's target as text, before the link is written: relative, and
 * resolving (lexically, from the link's directory) to a place inside `root`.
 * Throws CIDGET_ERR_UNSAFE_SYMLINK. Text alone cannot tell where a chain of
 * links leads: links.ts resolves every link on disk once the tree is written.
 */
export function checkSymlink (root: string, linkPath: string, target: string): void {
  const shown = JSON.stringify(target.length > 80 ? target.slice(0, 77) + '…' : target)
  if (target === '' || target.includes('\0')) {
    throw new CidgetError('CIDGET_ERR_UNSAFE_SYMLINK', `Refusing symlink ${relative(root, linkPath)} with an empty or NUL target`)
  }
  if (isAbsolute(target)) {
    throw new CidgetError('CIDGET_ERR_UNSAFE_SYMLINK', `Refusing symlink ${relative(root, linkPath)} → ${shown}: absolute target`)
  }
  if (!isInside(root, resolve(dirname(linkPath), target))) {
    throw new CidgetError('CIDGET_ERR_UNSAFE_SYMLINK', `Refusing symlink ${relative(root, linkPath)} → ${shown}: it points outside the output directory`)
  }
}
