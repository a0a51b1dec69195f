/**
 * The worker thread of {@link FileHasher} (file-hash.ts): it reads the file
 * from where it stopped up to the offset it is given (the bytes are on disk,
 * most likely still in the page cache) and hashes them; told `end`, it answers
 * with the digest. It imports Node's own modules only, so it starts alone, from
 * dist/ or beside the bundled CLI.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { setFlagsFromString } from 'node:v8'
import { createHash } from 'node:crypto'
import { openSync, readSync, closeSync } from 'node:fs'

/** What the hasher posts: hash up to `upTo`; with `end`, answer with the digest. */
export interface HashRequest {
  upTo: number
  end?: boolean
}

/** What the worker answers. */
export type HashReply = { type: 'digest', hex: string } | { type: 'error', message: string, code?: string }

const port = parentPort
// V8's flags went back to their defaults as this thread's isolate started: the heap bound's are set again (see sink/worker.ts)
for (const flag of (workerData as { v8Flags?: string[] } | null)?.v8Flags ?? []) setFlagsFromString(flag)
const path = (workerData as { path: string } | null)?.path
if (port !== null && path !== undefined) {
  const hash = createHash('sha256')
  const buffer = Buffer.allocUnsafe(1 << 20)
  let fd: number | undefined
  let at = 0
  const readTo = (end: number): void => {
    fd ??= openSync(path, 'r')
    while (at < end) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, end - at), at)
      if (n === 0) throw Object.assign(new Error(`the file ended at ${at} of ${end} bytes`), { code: 'ESHORT' })
      hash.update(buffer.subarray(0, n))
      at += n
    }
  }
  port.on('message', (m: HashRequest) => {
    try {
      readTo(m.upTo)
      if (m.end === true) {
        if (fd !== undefined) closeSync(fd)
        port.postMessage({ type: 'digest', hex: hash.digest('hex') } satisfies HashReply)
      }
    } catch (err) {
      const e = err as { message?: string, code?: string } | null
      port.postMessage({ type: 'error', message: String(e?.message ?? err), code: e?.code } satisfies HashReply)
    }
  })
}
