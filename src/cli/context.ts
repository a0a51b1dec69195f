import { InvalidArgumentError, type Command } from 'commander'
import { DEFAULTS, DEFAULT_DNS_RESOLVERS, DEFAULT_GATEWAYS, DEFAULT_ROUTERS } from '../core/defaults.js'
import { resolveProxy, type ProxySettings } from '../gateways/proxy.js'
import { parseRate } from '../gateways/limiter.js'
import { normalizeGateway } from '../target/parse.js'
import { Downloader, type DownloaderInit } from '../engine/downloader.js'
import type { DownloadRecord } from '../core/types.js'
import { CidgetError } from '../core/errors.js'
import { DeadlinePassed } from '../sink/dirs.js'
import { loadSettings } from './config.js'
import { EXIT, errorLine, exitCodeForError, type ExitCode } from './exit.js'
import { describe } from './format.js'

/** Options every command that touches the state accepts. */
export interface StateOptions {
  state?: string
}

/**
 * The proxies of a command: `--proxy`, else the config file's `proxy` (or
 * CIDGET_PROXY), else HTTP_PROXY / HTTPS_PROXY / ALL_PROXY; NO_PROXY in every case.
 */
export function proxyFrom (flag: string | undefined, env: NodeJS.ProcessEnv = process.env): ProxySettings | undefined {
  return resolveProxy(flag ?? loadSettings(env).proxy, env)
}

/**
 * The gateways of the config file (or the defaults) with IPFS_GATEWAY, the
 * variable other IPFS tools read, in front; undefined when it is not set.
 */
export function gatewaysWithEnv (configured: string[] | undefined, env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const extra = env.IPFS_GATEWAY?.trim()
  if (extra === undefined || extra === '') return undefined
  let first: string
  try {
    first = normalizeGateway(extra)
  } catch (err) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `IPFS_GATEWAY: ${(err as Error).message}`)
  }
  const rest = (configured ?? [...DEFAULT_GATEWAYS]).map(normalizeGateway).filter((g) => g !== first)
  return [first, ...rest]
}

/** Opens a Downloader from config file, environment and flags (flags win). */
export async function openDownloader (flags: StateOptions & Partial<Omit<DownloaderInit, 'proxy'>> & { proxy?: string }): Promise<Downloader> {
  const settings = loadSettings()
  const { proxy: configProxy, ...rest } = settings
  const init: DownloaderInit = { ...rest }
  const withEnv = gatewaysWithEnv(settings.gateways)
  if (withEnv !== undefined) init.gateways = withEnv
  for (const [k, v] of Object.entries(flags)) {
    if (v !== undefined && k !== 'proxy') (init as Record<string, unknown>)[k] = v
  }
  const proxy = resolveProxy(flags.proxy ?? configProxy)
  if (proxy !== undefined) init.proxy = proxy
  // a limit given as a flag replaces that limit only, not the others from the config file
  if (settings.limits !== undefined && flags.limits !== undefined) init.limits = { ...settings.limits, ...flags.limits }
  return await Downloader.open(init)
}

/** Opens a Downloader for `body` and closes it afterwards, whatever happens. */
export async function withDownloader<T> (flags: StateOptions & Partial<Omit<DownloaderInit, 'proxy'>>, body: (dl: Downloader) => Promise<T>): Promise<T> {
  const dl = await openDownloader(flags)
  try {
    return await body(dl)
  } finally {
    await dl.close()
  }
}

/** Runs a command body; errors become one line on stderr and an exit code. */
export async function action (body: () => Promise<ExitCode>): Promise<void> {
  try {
    process.exitCode = await body()
  } catch (err) {
    process.stderr.write(errorLine(err) + '\n')
    if (process.env.CIDGET_DEBUG === '1' && err instanceof Error) process.stderr.write((err.stack ?? '') + '\n')
    process.exitCode = exitCodeForError(err)
    // a file system that never answered still holds the call it was given: it would keep the process alive
    if (err instanceof Error && err.cause instanceof DeadlinePassed) process.exit()
  }
}

/** How long the first signal waits for the pause before the process quits anyway (CIDGET_SIGNAL_GRACE_MS). */
export function signalGraceMs (env: NodeJS.ProcessEnv = process.env): number {
  const ms = Number(env.CIDGET_SIGNAL_GRACE_MS)
  return Number.isSafeInteger(ms) && ms >= 0 && env.CIDGET_SIGNAL_GRACE_MS !== '' ? ms : 10_000
}

/**
 * Ctrl-C (SIGINT) and SIGTERM pause what runs, with progress durable; the
 * awaited jobs then resolve as `paused`. The first signal always ends the
 * process: at once when nothing runs yet (a command still checking its
 * output), else after the grace when the pause does not finish (a file system
 * that never answers). A second signal exits at once. Exit codes 130 and 143,
 * as a shell reports a process a signal ended.
 */
export function pauseOnSignals (dl: Downloader, graceMs = signalGraceMs()): () => void {
  let seen = false
  let timer: NodeJS.Timeout | undefined
  const quit = (code: number): never => {
    // the progress bars hid the cursor: a process that ends here gives it back
    if (process.stderr.isTTY) process.stderr.write('\x1b[?25h')
    process.exit(code)
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = signal === 'SIGINT' ? 130 : 143
    const running = dl.runningIds
    if (seen || running.length === 0) {
      if (!seen) process.stderr.write('\n')
      quit(code)
    }
    seen = true
    process.stderr.write('\ncidget: pausing (progress is kept); press Ctrl-C again to quit at once\n')
    for (const id of running) void dl.pause(id).catch(() => {})
    timer = setTimeout(() => {
      process.stderr.write(`cidget: the pause did not finish in ${graceMs / 1000} s; quitting (the progress of the last checkpoint is kept)\n`)
      quit(code)
    }, graceMs)
    timer.unref()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  return () => {
    clearTimeout(timer)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

/** Parses a download id argument. */
export function parseId (text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `"${text}" is not a download id (a positive integer)`)
  }
  return Number(text)
}

export function printRecord (rec: DownloadRecord, json: boolean): void {
  process.stdout.write((json ? JSON.stringify(rec) : describe(rec)) + '\n')
}

/** A commander option parser for integers ≥ min (a bad value is a usage error, exit 2). */
export function parseIntOption (name: string, min: number): (value: string) => number {
  return (value: string): number => {
    const n = Number(value)
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(`must be an integer ≥ ${min}, got "${value}"`)
    }
    return n
  }
}

/** The DAG limits as flags, on every command that runs downloads. */
export interface LimitFlags {
  maxEntries?: number
  maxDepth?: number
  maxSize?: number
}

/** Adds `--max-entries`, `--max-depth` and `--max-size` (each a positive integer; a bad value is a usage error). */
export function limitOptions (cmd: Command): Command {
  // the commands that start downloads: they resolve names too
  return nameOptions(cmd)
    .option('--max-entries <n>', `verified mode: most files, directories and links in one download, the root included (default: ${DEFAULTS.MAX_DAG_ENTRIES})`, parseIntOption('--max-entries', 1))
    .option('--max-depth <n>', `verified mode: deepest DAG node below the root (default: ${DEFAULTS.MAX_DAG_DEPTH})`, parseIntOption('--max-depth', 1))
    .option('--max-size <bytes>', `most bytes a DAG may declare (default: ${DEFAULTS.MAX_DAG_SIZE}, 16 TiB)`, parseIntOption('--max-size', 1))
}

/** The Downloader's `limits` option from those flags; nothing when none is given (the config file's stay). */
export function limitsFrom (flags: LimitFlags): Pick<DownloaderInit, 'limits'> {
  const limits: Partial<DownloaderInit['limits']> = {
    ...(flags.maxEntries === undefined ? {} : { maxEntries: flags.maxEntries }),
    ...(flags.maxDepth === undefined ? {} : { maxDepth: flags.maxDepth }),
    ...(flags.maxSize === undefined ? {} : { maxSize: flags.maxSize })
  }
  return Object.keys(limits).length === 0 ? {} : { limits }
}

/** A rate flag (`500K`, `2M`; 0 or none: no limit) for commander: a bad one is a usage error. */
export function parseRateOption (value: string): number | undefined {
  try {
    return parseRate(value)
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message.replace(/^--limit-rate must be /, 'must be '))
  }
}

/** Flags of the commands that resolve /ipns/ names and reach the network (the processes that start downloads). */
export interface NameFlags {
  router?: string[]
  dnsResolver?: string[]
  proxy?: string
  limitRate?: number
  /** false with --no-routing */
  routing?: boolean
}

const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v]

/** Adds the name flags to a command. */
export function nameOptions (cmd: Command): Command {
  return cmd
    .option('--router <url>', `delegated router asked for IPNS records and for providers of the content; repeat for several (replaces the default list: ${DEFAULT_ROUTERS.join(', ')})`, collect)
    .option('--no-routing', 'verified and CAR modes: do not ask the routers for providers (the gateways only)')
    .option('--dns-resolver <url>', `DNS-over-HTTPS resolver (JSON API) for DNSLink, or "system"; repeat for several, asked in order (default: ${DEFAULT_DNS_RESOLVERS.join(', ')})`, collect)
    .option('--limit-rate <rate>', 'bandwidth limit of this process, all its downloads together, in bytes per second as curl writes it: 500K, 2M, 1G (default: none)', (v: string) => parseRateOption(v))
    .option('--proxy <url>', 'HTTP proxy for every request, http://[user:password@]host:port (default: the config file\'s proxy, else HTTPS_PROXY / HTTP_PROXY / ALL_PROXY; NO_PROXY applies)')
}

/** The Downloader's `routers`, `dnsResolvers` and proxy from those flags; nothing when none is given (the config file's stay). */
export function namesFrom (flags: NameFlags): Pick<DownloaderInit, 'routers' | 'dnsResolvers' | 'limitRate' | 'routing'> & { proxy?: string } {
  return {
    ...(flags.routing === false ? { routing: false } : {}),
    ...(flags.limitRate === undefined ? {} : { limitRate: flags.limitRate }),
    ...(flags.proxy === undefined ? {} : { proxy: flags.proxy }),
    ...(flags.router === undefined ? {} : { routers: flags.router }),
    ...(flags.dnsResolver === undefined ? {} : { dnsResolvers: flags.dnsResolver })
  }
}

export { EXIT }
