import type { Command } from 'commander'
import { CidgetError } from '../../core/errors.js'
import { DOWNLOAD_SEMI_SPACE_MIB, boundHeapGrowth } from '../../core/memory.js'
import { action, limitOptions, limitsFrom, namesFrom, openDownloader, parseId, pauseOnSignals, type LimitFlags, type NameFlags } from '../context.js'
import { EXIT, exitCodeForRecord, worstExit } from '../exit.js'
import { ProgressView } from '../progress.js'
import { summary } from './get.js'
import { RemoteClient, type RemoteFlags } from '../remote.js'
import type { DownloadRecord } from '../../core/types.js'

export function registerResume (program: Command): void {
  limitOptions(program.command('resume')
    .description('continue a paused, failed or interrupted download, or all paused ones with --all')
    .argument('[id]', 'download id')
    .option('--all', 'resume every paused and pending download (and recover interrupted ones)')
    .option('--state <location>', 'state: a SQLite file or a postgres:// URL (default: $CIDGET_STATE or ~/.cidget/state.db)')
    .option('--skip-symlinks', 'verified directories: leave symlinks out instead of refusing unsafe ones')
    .option('--allow-local', 'keep providers found by routing whose addresses are loopback, private or link-local'))
    .option('--json', 'print the final records as JSON (one per line)')
    .option('-q, --quiet', 'print nothing but errors')
    .option('--server <url>', 'act through a running `cidget serve` (waits for the downloads as a local resume does)')
    .option('--token <token>', 'API token for --server (default: $CIDGET_TOKEN, else the token file next to the default state)')
    .action(async (idText: string | undefined, flags: { all?: boolean, state?: string, skipSymlinks?: boolean, allowLocal?: boolean, json?: boolean, quiet?: boolean } & LimitFlags & NameFlags & RemoteFlags) => {
      // as `get` (see core/memory.ts)
      boundHeapGrowth({ semiSpaceMiB: DOWNLOAD_SEMI_SPACE_MIB })
      await action(async () => {
        if ((idText === undefined) === (flags.all !== true)) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'Give either a download id or --all')
        }
        const id = idText === undefined ? undefined : parseId(idText)
        const report = (records: DownloadRecord[]): ReturnType<typeof worstExit> => {
          for (const rec of records) {
            if (flags.json === true) process.stdout.write(JSON.stringify(rec) + '\n')
            else if (flags.quiet !== true) process.stderr.write(summary(rec) + '\n')
          }
          return records.length === 0 ? EXIT.SUCCESS : worstExit(records.map(exitCodeForRecord))
        }
        if (flags.server !== undefined) {
          const client = await RemoteClient.from(flags)
          const ids = id !== undefined
            ? [id]
            : [...await client.listAll({ status: 'paused' }), ...await client.listAll({ status: 'pending' })].map(r => r.id)
          if (ids.length === 0 && flags.quiet !== true && flags.json !== true) process.stderr.write('nothing to resume\n')
          return report(await client.resumeAndWait(ids, id === undefined))
        }
        const dl = await openDownloader({
          state: flags.state,
          ...(flags.skipSymlinks === true ? { skipSymlinks: true } : {}),
          ...(flags.allowLocal === true ? { allowLocalProviders: true } : {}),
          ...limitsFrom(flags), ...namesFrom(flags)
        })
        const unhook = pauseOnSignals(dl)
        const view = new ProgressView(dl, { tty: process.stderr.isTTY === true && flags.json !== true, quiet: flags.quiet === true || flags.json === true })
        try {
          const jobs = id === undefined ? await dl.resumeAll() : [await dl.resume(id)]
          for (const job of jobs) view.started(job.record, 'resuming')
          if (jobs.length === 0 && flags.quiet !== true && flags.json !== true) process.stderr.write('nothing to resume\n')
          const records = await Promise.all(jobs.map(async j => await j.done))
          view.stop()
          return report(records)
        } finally {
          view.stop()
          unhook()
          await dl.close()
        }
      })
    })
}
