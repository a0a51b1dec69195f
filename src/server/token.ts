/**
 * The service's API token: given (`--token`, `CIDGET_TOKEN`), or generated on
 * first start and kept next to the state file (`<state dir>/token`, mode 0600;
 * `~/.cidget/token` for a PostgreSQL state).
 */
import { randomBytes } from 'node:crypto'
import { chmod, readFile, writeFile } from 'node:fs/promises'
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

/** The token in `file`, or undefined when there is none. */
export async function readTokenFile (file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, 'utf8')).trim()
    return text === '' ? undefined : checkToken(text, file)
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return undefined
    throw err instanceof CidgetError ? err : new CidgetError('CIDGET_ERR_STATE', `Cannot read the token file ${file}: ${(err as Error).message}`, { cause: err })
  }
}

/** The token in `file`; on first use a new random one is written there (created exclusively, mode 0600). */
export async function loadOrCreateToken (file: string): Promise<string> {
  const existing = await readTokenFile(file)
  if (existing !== undefined) return existing
  const token = randomBytes(24).toString('base64url')
  try {
    await writeFile(file, token + '\n', { mode: 0o600, flag: 'wx' })
    // the umask cannot widen 0600, but a file system that ignores modes at create time gets it again
    await chmod(file, 0o600)
  } catch (err) {
    // another `cidget serve` on the same state made one a moment ago: use that
    if (systemCode(err) === 'EEXIST') {
      const raced = await readTokenFile(file)
      if (raced !== undefined) return raced
    }
    throw new CidgetError('CIDGET_ERR_STATE', `Cannot write the token file ${file}: ${(err as Error).message}`, { cause: err })
  }
  return token
}
