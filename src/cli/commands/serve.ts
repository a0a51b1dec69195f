import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { CidgetError } from '../../core/errors.js'
import { boundHeapGrowth } from '../../core/memory.js'
import { defaultStatePath } from '../../engine/downloader.js'
import { isLoopbackHost } from '../../server/auth.js'
import { checkToken, loadOrCreateToken, tokenFile } from '../../server/token.js'
import { loadSettings } from '../config.js'
import { isPostgresUrl } from '../../store/index.js'
import { action, limitOptions, limitsFrom, namesFrom, openDownloader, parseIntOption, EXIT, type LimitFlags, type NameFlags } from '../context.js'
import { errorLine } from '../exit.js'

interface ServeFlags extends LimitFlags, NameFlags {
  host: string
  port: number
  state?: string
  dir?: string
  concurrency?: number
  gateway?: string[]
  token?: string
  auth: boolean
  allowLocal?: boolean
}

/** The default port of `cidget serve`. */
export const DEFAULT_PORT = 7690
/** A shutdown that takes longer than this is cut short (exit 1). */
const SHUTDOWN_TIMEOUT_MS = 10_000

function urlHost (host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
}

export function registerServe (program: Command): void {
  limitOptions(program.command('serve')
    .description('run the service: HTTP API, live events (WebSocket, SSE), metrics and the web dashboard')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free one, printed)', parseIntOption('--port', 0), DEFAULT_PORT)
    .option('--state <location>', 'state: a SQLite file or a postgres:// URL (default: $CIDGET_STATE or ~/.cidget/state.db)')
    .option('--dir <dir>', 'directory the downloads are written to (default: ~/.cidget/downloads)')
    .option('--concurrency <n>', 'downloads at once (default: 4)', parseIntOption('--concurrency', 1))
    .option('-g, --gateway <url>', 'gateway base URL for downloads that name none; repeat for several', (v: string, prev: string[] | undefined) => [...(prev ?? []), v]))
    .option('--token <token>', 'API token (default: $CIDGET_TOKEN, else generated once and kept in <state dir>/token)')
    .option('--no-auth', 'serve without a token (only with a loopback --host)')
    .option('--allow-local', 'let API clients name gateways on loopback, private and link-local addresses too')
    .action(async (flags: ServeFlags) => {
      // a service runs for weeks: V8's heap is kept from growing into pages it then keeps (see core/memory.ts)
      boundHeapGrowth()
      await action(async () => await serve(flags))
    })
}

type ServeExit = typeof EXIT.SUCCESS | typeof EXIT.FAILED

async function serve (flags: ServeFlags): Promise<ServeExit> {
  if (flags.port > 65535) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--port must be at most 65535, got ${flags.port}`)
  const envToken = process.env.CIDGET_TOKEN !== undefined && process.env.CIDGET_TOKEN !== '' ? process.env.CIDGET_TOKEN : undefined
  if (!flags.auth) {
    if (flags.token !== undefined) throw new CidgetError('CIDGET_ERR_BAD_OPTION', '--no-auth and --token contradict each other')
    if (!isLoopbackHost(flags.host)) {
      throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--no-auth is only allowed with a loopback --host (127.0.0.1, ::1, localhost), not "${flags.host}"`)
    }
  }
  const state = flags.state ?? loadSettings().state ?? defaultStatePath()
  // a PostgreSQL URL is used as it is; a file path is made absolute (the token is kept next to it)
  const fleet = isPostgresUrl(state)
  const statePath = fleet ? state : resolve(state)
  const dir = resolve(flags.dir ?? join(homedir(), '.cidget', 'downloads'))
  const dl = await openDownloader({
    state: statePath,
    // API clients name the gateways: not this machine's network, unless the operator allows it
    service: { allowLocal: flags.allowLocal === true, dir },
    ...(flags.concurrency === undefined ? {} : { concurrency: flags.concurrency }),
    ...(flags.gateway === undefined ? {} : { gateways: flags.gateway }),
    ...limitsFrom(flags), ...namesFrom(flags)
  })
  let token: string | null = null
  // printed only when it was made now: the stored one is for `cidget token`, a given one the user knows
  let newToken = false
  try {
    if (flags.auth) {
      if (flags.token !== undefined) token = checkToken(flags.token, '--token')
      else if (envToken !== undefined) token = checkToken(envToken, 'CIDGET_TOKEN')
      else ({ token, created: newToken } = await loadOrCreateToken(tokenFile(statePath)))
    }
  } catch (err) {
    await dl.close()
    throw err
  }

  // loaded here, not at the top: fastify and ws would add about 0.3 s to the start of every other command
  const { buildServer } = await import('../../server/app.js')
  let app: Awaited<ReturnType<typeof buildServer>>
  try {
    app = await buildServer({
      downloader: dl,
      dir,
      token,
      logger: { level: process.env.CIDGET_DEBUG === '1' ? 'info' : 'warn', stream: process.stderr }
    })
  } catch (err) {
    await dl.close()
    throw err
  }

  // the handlers come first: a signal during start-up also shuts down cleanly
  let stopped!: (code: ServeExit) => void
  const exit = new Promise<ServeExit>((resolve) => { stopped = resolve })
  let stopping = false
  const stop = (): void => {
    if (stopping) process.exit(130) // a second signal: quit now (progress up to the last fsync is kept)
    stopping = true
    const timer = setTimeout(() => {
      process.stderr.write('cidget: shutdown took too long; quitting\n')
      process.exit(EXIT.FAILED)
    }, SHUTDOWN_TIMEOUT_MS)
    timer.unref()
    void (async () => {
      let code: ServeExit = EXIT.SUCCESS
      for (const close of [async () => { await app.close() }, async () => { await dl.close() }]) {
        try {
          // the app first (no new requests, event streams end), then the engine: it pauses running
          // downloads durably, marked interrupted, so that the next start resumes them
          await close()
        } catch (err) {
          process.stderr.write(errorLine(err) + '\n')
          code = EXIT.FAILED
        }
      }
      clearTimeout(timer)
      // nothing should be left, but a lingering keep-alive must not hold the exit
      setTimeout(() => { process.exit(code) }, 500).unref()
      stopped(code)
    })()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)

  try {
    await app.listen({ host: flags.host, port: flags.port })
  } catch (err) {
    if (stopping) return await exit
    process.off('SIGTERM', stop)
    process.off('SIGINT', stop)
    await app.close()
    await dl.close()
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Cannot listen on ${urlHost(flags.host)}:${flags.port}: ${(err as Error).message}`, { cause: err })
  }
  if (stopping) return await exit
  const addr = app.server.address()
  const port = addr !== null && typeof addr === 'object' ? addr.port : flags.port
  const base = `http://${urlHost(flags.host)}:${port}/`
  const dashboard = token === null
    ? base
    : newToken
      ? `${base}#token=${encodeURIComponent(token)}`
      : flags.token !== undefined || envToken !== undefined
        ? `${base}#token=<the token you gave>`
        : `\`cidget token${flags.state === undefined ? '' : ' --state <this state>'} --server ${base}\` prints its link`
  process.stderr.write(`cidget serving ${base} (dashboard: ${dashboard})\n`)

  // what a crash or the last shutdown stopped goes on; what a person paused stays paused.
  // On a shared PostgreSQL queue that is the workers' job (`cidget worker`): the service shows
  // the whole queue and runs what is added through it.
  try {
    if (!stopping && !fleet) await dl.resumeAll({ interruptedOnly: true })
  } catch (err) {
    if (!stopping) process.stderr.write(errorLine(err) + '\n')
  }
  return await exit
}
