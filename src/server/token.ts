/**
 * The service's API token: given (`--token`, `CIDGET_TOKEN`), or generated on
 * first start and kept next to the state file (`<state dir>/token`, mode 0600;
 * `~/.cidget/token` for a PostgreSQL state).
 */
import { randomBytes } from 'node:crypto'
import { constants as fsConstants } from 'node:fs'
import { chmod, open, writeFile } from 'node:fs/promises'
import { makeDirs } from '../sink/dirs.js'
import { dirname, join } from 'node:path'
import { CidgetError, systemCode } from '../core/errors.js'
import { isPostgresUrl } from '../store/index.js'
import { defaultStatePath } from '../engine/downloader.js'

/**
 * Where the token of a service with this state is kept: next to a SQLite file;
 * for a PostgreSQL state, in the directory of the default state (~/.cidget).
 */
export function tokenFile (state: string): string {
  return join(dirname(isPostgresUrl(state) ? defaultStatePath() : state), 'token')
}

/** Checks a token given by a person: printable ASCII without spaces (it travels in a header and a URL). */
export function checkToken (token: string, from: string): string {
  if (!/^[\x21-\x7e]{1,1024}$/.test(token)) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: a token is 1 to 1024 printable ASCII characters without spaces`)
  }
  return token
}

function unsafe (file: string, why: string): CidgetError {
  return new CidgetError('CIDGET_ERR_STATE', `The token file ${file} ${why}: it is not used (anyone who can change it could set the service's token). Remove it to have a new one made, or give the token with --token`)
}

/**
 * The token in `file`, or undefined when there is none. A file that is a
 * symlink, not a regular file, not owned by this user, or writable by group
 * or others is refused.
 */
export async function readTokenFile (file: string): Promise<string | undefined> {
  let text: string
  try {
    // O_NOFOLLOW: a symlink at the token's place is refused (ELOOP), never read through
    const handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW)
    try {
      const st = await handle.stat()
      if (!st.isFile()) throw unsafe(file, 'is not a regular file')
      const uid = process.getuid?.()
      if (uid !== undefined && st.uid !== uid) throw unsafe(file, `belongs to another user (uid ${st.uid})`)
      if ((st.mode & 0o022) !== 0) throw unsafe(file, `is writable by ${(st.mode & 0o002) !== 0 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o777).toString(8)}; chmod 600 it)`)
      text = (await handle.readFile('utf8')).trim()
    } finally {
      await handle.close()
    }
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return undefined
    if (systemCode(err) === 'ELOOP') throw unsafe(file, 'is a symlink')
    throw err instanceof CidgetError ? err : new CidgetError('CIDGET_ERR_STATE', `Cannot read the token file ${file}: ${(err as Error).message}`, { cause: err })
  }
  return text === '' ? undefined : checkToken(text, file)
}

/**
 * The token in `file`; on first use a new random one is written there
 * (created exclusively, mode 0600, its directory 0700 when it has to be made).
 * `created` tells whether it was made now (the only time `cidget serve` prints it).
 */
export async function loadOrCreateToken (file: string): Promise<{ token: string, created: boolean }> {
  const existing = await readTokenFile(file)
  if (existing !== undefined) return { token: existing, created: false }
  const token = randomBytes(24).toString('base64url')
  try {
    await makeDirs(dirname(file), 0o700)
    await writeFile(file, token + '\n', { mode: 0o600, flag: 'wx' })
    // the umask cannot widen 0600, but a file system that ignores modes at create time gets it again
    await chmod(file, 0o600)
  } catch (err) {
    // another `cidget serve` on the same state made one a moment ago: use that
    if (systemCode(err) === 'EEXIST') {
      const raced = await readTokenFile(file)
      if (raced !== undefined) return { token: raced, created: false }
    }
    throw new CidgetError('CIDGET_ERR_STATE', `Cannot write the token file ${file}: ${(err as Error).message}`, { cause: err })
  }
  return { token, created: true }
}
