import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { InvalidArgumentError, type Command } from 'commander'
import { MODES, type DownloadRecord, type Mode } from '../../core/types.js'
import { CidgetError, toCidgetError } from '../../core/errors.js'
import type { QueueItem } from '../../engine/downloader.js'
import { isPostgresUrl } from '../../store/index.js'
import { loadSettings } from '../config.js'
import { action, parseRateOption, printRecord, withDownloader, EXIT } from '../context.js'
import { DEFAULT_SERVER, RemoteClient, type AddRequest } from '../remote.js'
import { lineError, parseQueue, readSource, sourceName, type QueueLine } from '../queue-file.js'
import { printable } from '../format.js'

interface AddFlags {
  server?: string
  token?: string
  state?: string
  dir?: string
  from?: string
  output?: string
  mode?: string
  sha256?: string
  gateway?: string[]
  priority?: number
  limitRate?: number
  json?: boolean
  quiet?: boolean
}

/**
 * Where `add` queues: the state at this location (direct), or undefined for a
 * running service. Direct when `--state` is given, or when neither `--server`
 * nor `CIDGET_SERVER` is set and the configured state (`CIDGET_STATE` or the
 * config file's `state`) is a PostgreSQL URL.
 */
export function directState (flags: Pick<AddFlags, 'state' | 'server'>, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (flags.state !== undefined) {
    if (flags.server !== undefined) throw new CidgetError('CIDGET_ERR_BAD_OPTION', '--state and --server exclude each other: queue into a state, or on a service')
    return flags.state
  }
  if (flags.server !== undefined || (env.CIDGET_SERVER !== undefined && env.CIDGET_SERVER !== '')) return undefined
  const state = loadSettings(env).state
  return state !== undefined && isPostgresUrl(state) ? state : undefined
}

function body (item: QueueItem): AddRequest {
  return {
    target: item.target,
    ...(item.output === undefined ? {} : { output: item.output }),
    ...(item.mode === undefined ? {} : { mode: item.mode }),
    ...(item.sha256 === undefined ? {} : { sha256: item.sha256 }),
    ...(item.gateways === undefined ? {} : { gateways: item.gateways }),
    ...(item.priority === undefined ? {} : { priority: item.priority })
  }
}

/** `ids 4–9`, `id 4`: the records are in id order. */
function idRange (recs: DownloadRecord[]): string {
  const first = recs[0]?.id
  const last = recs[recs.length - 1]?.id
  return recs.length === 1 ? `id ${String(first)}` : `ids ${String(first)}–${String(last)}`
}

/**
 * An error of `Downloader.enqueue` ("Item N (target): …") as the error of the
 * line it came from, or, for a single target, without the item prefix.
 */
function itemError (err: unknown, lines: QueueLine[], source: string | undefined): unknown {
  if (!(err instanceof CidgetError)) return err
  const m = /^Item (\d+) /.exec(err.message)
  const entry = m === null ? undefined : lines[Number(m[1]) - 1]
  if (m === null || entry === undefined) return err
  const prefix = `Item ${m[1]} (${JSON.stringify(entry.item.target)}): `
  if (!err.message.startsWith(prefix)) return err
  const inner = new CidgetError(err.code, err.message.slice(prefix.length), { cause: err })
  return source === undefined ? inner : lineError(inner, source, entry.line, entry.item.target)
}

async function checkDir (dir: string): Promise<string> {
  const full = resolve(dir)
  let isDir = false
  try {
    isDir = (await stat(full)).isDirectory()
  } catch {
    // reported below
  }
  if (!isDir) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--dir ${dir} is not an existing directory`)
  return full
}

export function registerAdd (program: Command): void {
  program.command('add')
    .description('queue downloads without waiting for them: on a running `cidget serve` (it starts them at once), or, with --state, straight into a state that `cidget worker` processes drain')
    .argument('[target]', 'CID, /ipfs/CID[/path], /ipns/NAME[/path], ipfs://, ipns:// or https://gateway/ipfs/CID[/path] (a name is resolved when the download starts)')
    .option('--from <file>', 'queue every download listed in this file (- for standard input): a target, or a JSON object {"target", "output", "sha256", "mode", "priority", "gateways"}, a line; blank lines and # comments are skipped')
    .option('--server <url>', `the service (default: $CIDGET_SERVER or ${DEFAULT_SERVER})`)
    .option('--token <token>', 'API token (default: $CIDGET_TOKEN, else the token file next to the default state)')
    .option('--state <location>', 'queue straight into this state (a SQLite file or a postgres:// URL) instead of a service; also the default when neither --server nor $CIDGET_SERVER is set and $CIDGET_STATE (or the config file\'s state) is a postgres:// URL')
    .option('--dir <path>', 'with a state: the directory outputs are relative to and must stay inside (default: the current directory)')
    .option('-o, --output <path>', 'output path relative to the service\'s --dir, or to --dir with a state (default: the target\'s name)')
    .option('--mode <mode>', 'verified, path or car (default: verified; with --from, for lines that give none)')
    .option('--sha256 <hex>', 'expected SHA-256 of the file')
    .option('-g, --gateway <url>', 'gateway base URL; repeat for several (default: the service\'s list, or the configured gateways with a state; with --from, for lines that give none)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--priority <n>', 'higher runs first (default: 0; with --from, for lines that give none)', (v: string) => {
      if (!/^-?\d{1,7}$/.test(v.trim())) throw new InvalidArgumentError(`must be an integer, got "${v}"`)
      return Number(v)
    })
    .option('--limit-rate <rate>', 'each download\'s own bandwidth limit, as curl writes it: 500K, 2M (default: none; the service\'s or worker\'s own limit still applies)', (v: string) => parseRateOption(v))
    .option('--json', 'print each queued record as JSON, one a line')
    .option('-q, --quiet', 'print nothing but errors')
    .action(async (target: string | undefined, flags: AddFlags) => {
      await action(async () => {
        if (flags.mode !== undefined && !MODES.includes(flags.mode as Mode)) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--mode must be verified, path or car, got "${flags.mode}"`)
        }
        if (target !== undefined && flags.from !== undefined) throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'Give a target or --from FILE, not both')
        if (target === undefined && flags.from === undefined) throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'Give a target, or --from FILE with one target a line')
        if (flags.from !== undefined) {
          if (flags.output !== undefined) throw new CidgetError('CIDGET_ERR_BAD_OPTION', '-o names the output of one target; with --from give "output" on the JSON line of each')
          if (flags.sha256 !== undefined) throw new CidgetError('CIDGET_ERR_BAD_OPTION', '--sha256 is the hash of one target; with --from give "sha256" on the JSON line of each')
        }
        const state = directState(flags)
        if (state === undefined && flags.dir !== undefined) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', '--dir is for queuing into a state (--state); a service writes into its own --dir')
        }
        if (state !== undefined && flags.token !== undefined) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', '--token is for a service (--server); with a state the downloads are written to it directly')
        }
        const dir = state === undefined ? undefined : await checkDir(flags.dir ?? '.')
        const source = flags.from === undefined ? undefined : sourceName(flags.from)
        const defaults = {
          ...(flags.mode === undefined ? {} : { mode: flags.mode as Mode }),
          ...(flags.gateway === undefined ? {} : { gateways: flags.gateway }),
          ...(flags.priority === undefined ? {} : { priority: flags.priority })
        }
        // the whole list is read and checked before anything is queued
        const lines: QueueLine[] = flags.from === undefined || source === undefined
          ? [{ line: 1, item: { target: target ?? '', ...defaults, ...(flags.output === undefined ? {} : { output: flags.output }), ...(flags.sha256 === undefined ? {} : { sha256: flags.sha256 }) } }]
          : parseQueue(await readSource(flags.from), source, defaults, dir === undefined ? 'the service\'s --dir' : `the directory ${dir}`)
        const quiet = flags.quiet === true || flags.json === true
        if (lines.length === 0) {
          if (!quiet) process.stderr.write(`nothing to queue: ${source ?? ''} lists no targets\n`)
          return EXIT.SUCCESS
        }

        let queued: DownloadRecord[]
        let where: string
        if (state !== undefined) {
          const done = await withDownloader({ state, recover: false }, async dl => {
            try {
              const records = await dl.enqueue(lines.map(l => l.item), { dir })
              if (flags.limitRate === undefined) return { records, location: dl.store.location }
              // each one's own limit, recorded before a worker claims it to run (a worker already running it applies it at its next start)
              return { records: await Promise.all(records.map(async (r) => await dl.setDownloadLimit(r.id, flags.limitRate ?? null))), location: dl.store.location }
            } catch (err) {
              throw itemError(err, lines, source)
            }
          })
          queued = done.records
          where = done.location
          if (flags.json === true) for (const rec of queued) printRecord(rec, true)
        } else {
          const client = await RemoteClient.from(flags)
          where = client.url
          queued = []
          for (const { line, item } of lines) {
            let rec: DownloadRecord
            try {
              rec = await client.add({ ...body(item), ...(flags.limitRate === undefined ? {} : { limitRate: flags.limitRate }) })
            } catch (err) {
              if (source === undefined) throw err
              const e = lineError(err, source, line, item.target)
              const done = queued.length === 0
                ? 'nothing was queued'
                : `${queued.length} of ${lines.length} were queued before it (${idRange(queued)}); the lines after it were not sent`
              throw new CidgetError(e.code, `${e.message}; ${done}`, { cause: toCidgetError(err) })
            }
            queued.push(rec)
            if (flags.json === true) printRecord(rec, true)
          }
        }
        if (!quiet) {
          const one = queued[0]
          process.stderr.write(source === undefined && one !== undefined
            ? `queued download ${one.id}: ${printable(one.target)} → ${printable(one.output)} (${where})\n`
            : `queued ${queued.length} download${queued.length === 1 ? '' : 's'} (${idRange(queued)}) ${state === undefined ? 'on' : 'in'} ${where}\n`)
        }
        return EXIT.SUCCESS
      })
    })
}
