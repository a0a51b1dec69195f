import { execFile } from 'node:child_process'

/**
 * Makes durable, in one call, every file written on the file system that
 * holds `path`: syncfs(2), through `sync -f` (GNU coreutils 8.24 and later,
 * busybox). A tree of many small files is made durable at each checkpoint by
 * one such call rather than by one fsync per file.
 *
 * syncfs reports an error of writeback (EIO, ENOSPC) that happened after the
 * file system was opened for the call; the writes a checkpoint covers are the
 * last second's, still dirty when the call starts, so their errors are
 * reported. (An error of writeback that the kernel ran on its own before the
 * call would not be; Linux writes back dirty pages after 30 s, or under
 * memory pressure, far past a checkpoint's second.)
 *
 * Only on Linux, where the call exists; elsewhere, or where `sync` does not
 * take `-f`, {@link syncfsAvailable} turns false for the process
 * and callers fsync each file.
 */
/** Undefined until the first call tells; false off Linux. */
let works: boolean | undefined = process.platform === 'linux' ? undefined : false
/** One group of callers per file system (device): those who ask while a call runs share the next one. */
const groups = new Map<number, { path: string, running: Promise<void> | undefined, next: Promise<void> | undefined }>()

/** False once `sync -f` was found missing or refusing `-f` (or off Linux): fsync each file then. */
export function syncfsAvailable (): boolean {
  return works !== false
}

/**
 * Resolves once everything written on the file system of `path` (device
 * `dev`) before the call is durable. Callers on one device while a call runs
 * wait for it, then share one more: a call never starts before what its
 * callers wrote. Rejects with a system error (its `code` set: EIO, ENOSPC…)
 * or with {@link SyncfsUnavailable}.
 */
export async function syncFileSystem (path: string, dev: number): Promise<void> {
  let group = groups.get(dev)
  if (group === undefined) {
    group = { path, running: undefined, next: undefined }
    groups.set(dev, group)
  }
  // the latest caller's path: one whose tree was removed since is not asking any more
  group.path = path
  const g = group
  const start = async (): Promise<void> => {
    const running = run(g.path).finally(() => { if (g.running === running) g.running = undefined })
    g.running = running
    await running
  }
  if (g.running === undefined) return await start()
  g.next ??= g.running.catch(() => {}).then(async () => {
    g.next = undefined
    await start()
  })
  return await g.next
}

/** `sync -f` is not there, or refuses `-f`. */
export class SyncfsUnavailable extends Error {}

const MESSAGES: ReadonlyArray<[RegExp, string]> = [
  [/No space left/i, 'ENOSPC'],
  [/quota/i, 'EDQUOT'],
  [/Read-only file system/i, 'EROFS'],
  [/Permission denied/i, 'EACCES'],
  [/No such file/i, 'ENOENT']
]

async function run (path: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile('sync', ['-f', '--', path], { windowsHide: true }, (err, _stdout, stderr) => {
      if (err === null) {
        works = true
        resolve()
        return
      }
      const spawnCode = (err as NodeJS.ErrnoException).code
      if (typeof spawnCode === 'string' || /invalid option|unrecognized option|usage/i.test(stderr)) {
        // no `sync` on the PATH (ENOENT), or one without -f: never again in this process
        works = false
        reject(new SyncfsUnavailable(`sync -f: ${stderr.trim() || err.message}`))
        return
      }
      const message = stderr.trim() || err.message
      const failure = new Error(`syncfs: ${message}`) as NodeJS.ErrnoException
      failure.code = MESSAGES.find(([re]) => re.test(message))?.[1] ?? 'EIO'
      reject(failure)
    })
  })
}
