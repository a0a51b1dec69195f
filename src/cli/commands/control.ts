import type { Command } from 'commander'
import type { Downloader } from '../../engine/downloader.js'
import type { DownloadRecord } from '../../core/types.js'
import { CidgetError } from '../../core/errors.js'
import { clearDownloads, type ClearableStatus } from '../../engine/clear.js'
import { action, parseId, printRecord, withDownloader } from '../context.js'
import { printable } from '../format.js'
import { EXIT } from '../exit.js'
import { RemoteClient, type RemoteFlags } from '../remote.js'

interface ControlFlags extends RemoteFlags { state?: string, json?: boolean, deleteFile?: boolean }

/** `cidget <name> <id>`: one action on one download, reported in one line (or the record with --json). */
function registerControl (program: Command, name: string, description: string, done: string,
  run: (dl: Downloader, id: number, flags: ControlFlags) => Promise<DownloadRecord | undefined>,
  remote: (client: RemoteClient, id: number, flags: ControlFlags) => Promise<DownloadRecord | undefined>): Command {
  return program.command(name)
    .description(description)
    .argument('<id>', 'download id')
    .option('--state <location>', 'state: a SQLite file or a postgres:// URL (default: $CIDGET_STATE or ~/.cidget/state.db)')
    .option('--json', 'print the record as JSON')
    .option('--server <url>', 'act through a running `cidget serve` instead of the state file')
    .option('--token <token>', 'API token for --server (default: $CIDGET_TOKEN, else the token file next to the default state)')
    .action(async (idText: string, flags: ControlFlags) => {
      await action(async () => {
        const id = parseId(idText)
        const rec = flags.server !== undefined
          ? await remote(await RemoteClient.from(flags), id, flags)
          : await withDownloader({ state: flags.state }, async dl => await run(dl, id, flags))
        if (flags.json === true && rec !== undefined) printRecord(rec, true)
        else process.stderr.write(`${done} download ${id}\n`)
        return EXIT.SUCCESS
      })
    })
}

export function registerPause (program: Command): void {
  registerControl(program, 'pause', 'pause a download (its partial data is kept; works on a download another process runs)',
    'paused', async (dl, id) => await dl.pause(id), async (client, id) => await client.pause(id))
}

export function registerCancel (program: Command): void {
  registerControl(program, 'cancel', 'cancel a download and delete its partial data',
    'cancelled', async (dl, id) => await dl.cancel(id), async (client, id) => await client.cancel(id))
}

export function registerRm (program: Command): void {
  program.command('rm')
    .description('remove a download record and its partial data (a finished file stays unless --delete-file); or, with --finished or --failed, every download that ended so')
    .argument('[id]', 'download id')
    .option('--delete-file', 'also delete the finished output file (of one download)')
    .option('--finished', 'remove the records of every finished download (their files stay)')
    .option('--failed', 'remove every failed and cancelled download, with its partial data')
    .option('--state <location>', 'state: a SQLite file or a postgres:// URL (default: $CIDGET_STATE or ~/.cidget/state.db)')
    .option('--json', 'print {"removed": [ids], "skipped": [{id, code, message}]} as JSON')
    .option('--server <url>', 'act through a running `cidget serve` instead of the state file')
    .option('--token <token>', 'API token for --server (default: $CIDGET_TOKEN, else the token file next to the default state)')
    .action(async (idText: string | undefined, flags: ControlFlags & { finished?: boolean, failed?: boolean }) => {
      await action(async () => {
        const statuses: ClearableStatus[] = [...(flags.finished === true ? ['success' as const] : []), ...(flags.failed === true ? ['failed' as const, 'cancelled' as const] : [])]
        if ((statuses.length > 0) === (idText !== undefined)) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', 'Give either a download id, or --finished and/or --failed')
        }
        if (idText !== undefined) {
          const id = parseId(idText)
          if (flags.server !== undefined) await (await RemoteClient.from(flags)).remove(id, flags.deleteFile === true)
          else await withDownloader({ state: flags.state }, async dl => { await dl.remove(id, { deleteFile: flags.deleteFile === true }) })
          if (flags.json === true) process.stdout.write(JSON.stringify({ removed: [id], skipped: [] }) + '\n')
          else process.stderr.write(`removed download ${id}\n`)
          return EXIT.SUCCESS
        }
        if (flags.deleteFile === true) throw new CidgetError('CIDGET_ERR_BAD_OPTION', '--delete-file deletes the file of one download: cidget rm ID --delete-file')
        const { removed, skipped } = flags.server !== undefined
          ? await (await RemoteClient.from(flags)).clear(statuses)
          : await withDownloader({ state: flags.state, recover: false }, async dl => await clearDownloads(dl, statuses))
        if (flags.json === true) process.stdout.write(JSON.stringify({ removed, skipped }) + '\n')
        else process.stderr.write(removed.length === 0 ? 'nothing to remove\n' : `removed ${removed.length} download${removed.length === 1 ? '' : 's'}: ${removed.slice(0, 20).join(', ')}${removed.length > 20 ? ', …' : ''}\n`)
        for (const s of skipped) process.stderr.write(`cidget: download ${s.id} left: ${printable(s.message)} [${s.code}]\n`)
        if (skipped.length > 0) return EXIT.FAILED
        return EXIT.SUCCESS
      })
    })
}
