import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'

/**
 * A lease owner id for this process: `host:pid:token`. The token makes two
 * Downloaders in one process (or a reused pid) distinct owners.
 */
export function makeOwnerId (): string {
  return `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`
}

interface ParsedOwner {
  host: string
  pid: number
  token: string
}

/** Splits `host:pid:token` from the right, so a host part containing ':' still parses. */
export function parseOwnerId (owner: string): ParsedOwner | undefined {
  const tokenAt = owner.lastIndexOf(':')
  if (tokenAt <= 0) return undefined
  const pidAt = owner.lastIndexOf(':', tokenAt - 1)
  if (pidAt <= 0) return undefined
  const host = owner.slice(0, pidAt)
  const pidText = owner.slice(pidAt + 1, tokenAt)
  const token = owner.slice(tokenAt + 1)
  if (!/^[0-9]{1,10}$/.test(pidText)) return undefined
  const pid = Number(pidText)
  // pid 0 and negative pids address process groups in kill(2): never probe them.
  if (pid <= 0 || pid > 0x7fffffff) return undefined
  return { host, pid, token }
}

/**
 * True only when the owner certainly is gone: it ran on this host and its pid no
 * longer exists (`kill(pid, 0)` fails with ESRCH). Another host, a malformed id,
 * or EPERM (the process exists but belongs to someone else) all mean "not known
 * dead"; such leases are taken over only when they expire.
 */
export function isOwnerDead (owner: string): boolean {
  const parsed = parseOwnerId(owner)
  if (parsed === undefined || parsed.host !== hostname()) return false
  if (parsed.pid === process.pid) return false
  try {
    process.kill(parsed.pid, 0)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
}
