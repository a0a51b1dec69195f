/**
 * `cidget token`: prints the token `cidget serve` made and keeps next to its
 * state (the service prints it only on the start that made it).
 */
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { CidgetError } from '../../core/errors.js'
import { defaultStatePath } from '../../engine/downloader.js'
import { isPostgresUrl } from '../../store/index.js'
import { readTokenFile, tokenFile } from '../../server/token.js'
import { loadSettings } from '../config.js'
import { action, EXIT } from '../context.js'

interface TokenFlags {
  state?: string
  server?: string
}

export function registerToken (program: Command): void {
  program.command('token')
    .description('print the API token of `cidget serve` (the one it made and keeps next to its state)')
    .option('--state <location>', 'the service\'s state: a SQLite file or a postgres:// URL (default: $CIDGET_STATE or ~/.cidget/state.db)')
    .option('--server <url>', 'print the dashboard link of the service at this URL instead, token included')
    .action(async (flags: TokenFlags) => {
      await action(async () => {
        const state = flags.state ?? loadSettings().state ?? defaultStatePath()
        const file = tokenFile(isPostgresUrl(state) ? state : resolve(state))
        const token = await readTokenFile(file)
        if (token === undefined) {
          throw new CidgetError('CIDGET_ERR_STATE', `There is no token at ${file}: \`cidget serve\` on this state makes one on its first start (a token given with --token or CIDGET_TOKEN is not stored)`)
        }
        let out = token
        if (flags.server !== undefined) {
          let url: URL
          try {
            url = new URL(flags.server)
          } catch {
            throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--server must be a URL like http://127.0.0.1:7690/, got "${flags.server}"`)
          }
          url.hash = `token=${encodeURIComponent(token)}`
          out = url.toString()
        }
        process.stdout.write(out + '\n')
        return EXIT.SUCCESS
      })
    })
}
