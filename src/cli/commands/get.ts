import type { Command } from 'commander'
import { CidgetError } from '../../core/errors.js'
import { DEFAULTS, DEFAULT_GATEWAYS } from '../../core/defaults.js'
import { DOWNLOAD_SEMI_SPACE_MIB, boundHeapGrowth } from '../../core/memory.js'
import { MODES, type Mode } from '../../core/types.js'
import { action, limitOptions, limitsFrom, namesFrom, openDownloader, pauseOnSignals, parseIntOption, EXIT, type LimitFlags, type NameFlags } from '../context.js'
import { exitCodeForRecord } from '../exit.js'
import { ProgressView } from '../progress.js'
import { getToStdout } from './stdout.js'
import { humanBytes, printable } from '../format.js'
import type { DownloadRecord } from '../../core/types.js'

interface GetFlags extends LimitFlags, NameFlags {
  output?: string
  car?: string
  gateway?: string[]
  mode?: string
  sha256?: string
  state?: string
  timeout?: number
  maxResumeAttempts?: number
  force?: boolean
  skipSymlinks?: boolean
  cidCheck?: boolean
  allowLocal?: boolean
  json?: boolean
  quiet?: boolean
}

/** The final line(s) of a download for people. */
export function summary (rec: DownloadRecord): string {
  const u = rec.updateReport
  switch (rec.status) {
    case 'success':
      if (u !== null) {
        return `updated ${printable(rec.output)} to /ipfs/${rec.cid}${printable(rec.path)}: kept ${u.keptFiles} file(s) (${humanBytes(u.keptBytes)}) as they were, ` +
          `reused ${humanBytes(u.reusedBytes)} of changed files, fetched ${humanBytes(u.fetchedBytes)}, removed ${u.removedCount} entr${u.removedCount === 1 ? 'y' : 'ies'}` +
          (u.carriedCount > 0 ? `, carried over ${u.carriedCount} of your own (${u.carried.slice(0, 3).map(printable).join(', ')}${u.carriedCount > 3 ? ', …' : ''})` : '') +
          ` [download ${rec.id}]`
      }
      return rec.hash === null
        ? `saved ${printable(rec.output)}/ (${humanBytes(rec.size)}, every block verified against ${rec.cid}) [download ${rec.id}]`
        : `saved ${printable(rec.output)} (${humanBytes(rec.size)}, sha256 ${rec.hash}${rec.mode === 'verified' ? ', verified against the CID' : ''}) [download ${rec.id}]`
    case 'paused':
      return `paused download ${rec.id} at ${humanBytes(rec.currentSize)} of ${humanBytes(rec.size)}` +
        (rec.error !== null ? `: ${printable(rec.error)}` : '') + `; continue with: cidget resume ${rec.id}`
    default:
      return `download ${rec.id} ${rec.status}` + (rec.error !== null ? `: ${printable(rec.error)} [${rec.errorCode ?? ''}]` : '')
  }
}

export function registerGet (program: Command): void {
  limitOptions(program.command('get')
    .description('download a CID, /ipfs/ or /ipns/ path, ipfs:// or ipns:// URL or gateway URL (resumes an unfinished download of the same target and output)')
    .argument('<target>', 'CID, /ipfs/CID[/path], /ipns/NAME[/path] (a key k51… or a DNSLink domain), ipfs://, ipns:// or https://gateway/ipfs/CID[/path]')
    .option('-o, --output <path>', 'output file, or a directory to put it in; - for standard output (one file, verified, not resumable) (default: ./<name>)')
    .option('--car <file>', 'write the verified blocks as a CARv1 file instead of files (same as --mode car -o FILE)')
    .option('-g, --gateway <url>', `gateway base URL; repeat for several (default: the config file's gateways, else ${DEFAULT_GATEWAYS.join(', ')}; IPFS_GATEWAY goes first)`, (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--mode <mode>', 'verified: every block checked against the CID, from all gateways at once; path: HTTP Range on one gateway at a time; car: verified blocks as a CAR file', 'verified')
    .option('--sha256 <hex>', 'expected SHA-256 of the file')
    .option('--state <location>', 'state: a SQLite file or a postgres:// URL (default: $CIDGET_STATE or ~/.cidget/state.db)')
    .option('--timeout <ms>', `idle timeout: longest wait without a byte (default: ${DEFAULTS.TIMEOUT_MS})`, parseIntOption('--timeout', 1))
    .option('--max-resume-attempts <n>', `resumes after interruptions before giving up (default: ${DEFAULTS.MAX_RESUME_ATTEMPTS})`, parseIntOption('--max-resume-attempts', 0))
    .option('--force', 'overwrite an existing output file')
    .option('--skip-symlinks', 'verified directories: leave symlinks out instead of refusing unsafe ones')
    .option('--no-cid-check', 'path mode: do not check the finished file against the CID')
    .option('--allow-local', 'keep providers found by routing whose addresses are loopback, private or link-local'))
    .option('--json', 'print the final download record as JSON')
    .option('-q, --quiet', 'print nothing but errors')
    .action(async (target: string, flags: GetFlags) => {
      // a download moves many bytes through a small heap: V8 is kept from growing pages it then keeps (see core/memory.ts)
      boundHeapGrowth({ semiSpaceMiB: DOWNLOAD_SEMI_SPACE_MIB })
      await action(async () => {
        if (flags.mode !== undefined && !MODES.includes(flags.mode as Mode)) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--mode must be verified, path or car, got "${flags.mode}"`)
        }
        if (flags.output === '-') {
          return await getToStdout(target, flags, {
            ...(flags.timeout === undefined ? {} : { timeoutMs: flags.timeout }),
            ...(flags.allowLocal === true ? { allowLocalProviders: true } : {}),
            ...limitsFrom(flags), ...namesFrom(flags)
          })
        }
        if (flags.car !== undefined) {
          if (flags.output !== undefined) throw new CidgetError('CIDGET_ERR_BAD_OPTION', '--car names the output file; do not give -o too')
          flags.output = flags.car
          flags.mode = 'car'
        }
        const dl = await openDownloader({
          state: flags.state,
          ...(flags.skipSymlinks === true ? { skipSymlinks: true } : {}),
          ...(flags.cidCheck === false ? { checkPath: false } : {}),
          ...(flags.timeout === undefined ? {} : { timeoutMs: flags.timeout }),
          ...(flags.maxResumeAttempts === undefined ? {} : { maxResumeAttempts: flags.maxResumeAttempts }),
          ...(flags.allowLocal === true ? { allowLocalProviders: true } : {}),
          ...limitsFrom(flags), ...namesFrom(flags)
        })
        const unhook = pauseOnSignals(dl)
        const view = new ProgressView(dl, { tty: process.stderr.isTTY === true && flags.json !== true, quiet: flags.quiet === true || flags.json === true })
        try {
          const job = await dl.add(target, {
            ...(flags.output === undefined ? {} : { output: flags.output }),
            ...(flags.gateway === undefined ? {} : { gateways: flags.gateway }),
            mode: flags.mode as Mode,
            ...(flags.sha256 === undefined ? {} : { sha256: flags.sha256 }),
            force: flags.force === true
          })
          // a finished download found in place runs nothing: no "downloading" line for it
          if (job.record.status !== 'success') view.started(job.record)
          const rec = await job.done
          view.stop()
          if (flags.json === true) process.stdout.write(JSON.stringify(rec) + '\n')
          else if (flags.quiet !== true) process.stderr.write(summary(rec) + '\n')
          return exitCodeForRecord(rec)
        } finally {
          view.stop()
          unhook()
          await dl.close()
        }
      })
    })
}

export { EXIT }
