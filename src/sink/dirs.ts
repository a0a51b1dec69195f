/**
 * Creating an output's directories, bounded, and telling a kernel file system
 * (/proc, /sys) from one that can hold files.
 *
 * @module
 */

import { mkdir, stat, statfs } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { systemCode } from '../core/errors.js'

/** The most directory levels one call creates. */
const MAX_LEVELS = 1024

/** True when `p` is a directory, false when nothing is there; another error (or a file there) is thrown. */
async function isDirectory (p: string): Promise<boolean> {
  let s
  try {
    s = await stat(p)
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return false
    throw err
  }
  if (s.isDirectory()) return true
  throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${p}'`), { code: 'ENOTDIR', path: p })
}

/**
 * Creates `dir` and the parents it lacks, one level at a time, top down.
 * Node's `mkdir(dir, { recursive: true })` is not used: where the kernel
 * answers ENOENT for a directory whose parent exists (`/proc/nope`), it
 * retries for ever at full CPU. Here that ENOENT is the answer. `dir` is
 * resolved first, so `..` is taken by name (`link/../x` is `./x`), not
 * through a link as the kernel would: callers pass absolute, resolved paths.
 */
export async function makeDirs (dir: string, mode?: number): Promise<void> {
  const missing: string[] = []
  for (let p = resolve(dir); !await isDirectory(p); p = dirname(p)) {
    missing.push(p)
    if (dirname(p) === p || missing.length > MAX_LEVELS) break
  }
  for (const d of missing.reverse()) {
    try {
      await mkdir(d, mode === undefined ? undefined : { mode })
    } catch (err) {
      // made meanwhile by another process (or run): that is what was wanted
      if (systemCode(err) === 'EEXIST' && await isDirectory(d)) continue
      throw err
    }
  }
}

/** Kernel file systems (statfs `f_type`): they show the kernel's state and take no files. */
const KERNEL_FILE_SYSTEMS = new Map<number, string>([
  [0x9fa0, 'proc'], [0x62656572, 'sysfs'], [0x27e0eb, 'cgroup'], [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'], [0x74726163, 'tracefs'], [0x73636673, 'securityfs'], [0x1cd1, 'devpts'],
  [0xcafe4a11, 'bpf'], [0x6165676c, 'pstore'], [0x62656570, 'configfs'], [0xde5e81e4, 'efivarfs'],
  [0xf97cff8c, 'selinuxfs'], [0x65735543, 'fusectl'], [0x19800202, 'mqueue'], [0x42494e4d, 'binfmt_misc'],
  [0x6e736673, 'nsfs']
])

/**
 * The name of the kernel file system `dir` is on (`proc`, `sysfs`…), or
 * undefined for one that holds files (or when statfs cannot tell). A `dir`
 * that does not exist yet is judged by its nearest existing parent, before
 * anything is made there (a directory made in cgroupfs is a new cgroup).
 */
export async function kernelFileSystem (dir: string): Promise<string | undefined> {
  let p = resolve(dir)
  for (let i = 0; i < MAX_LEVELS; i++) {
    try {
      return KERNEL_FILE_SYSTEMS.get(Number((await statfs(p)).type))
    } catch (err) {
      if (systemCode(err) !== 'ENOENT' || dirname(p) === p) return undefined
      p = dirname(p)
    }
  }
  return undefined
}

/** The cause of an error for a file system call that did not answer in time: the call itself is still pending. */
export class DeadlinePassed extends Error {}
