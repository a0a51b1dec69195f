import type { Command } from 'commander'
import type { Downloader } from '../../engine/downloader.js'
import type { DownloadRecord } from '../../core/types.js'
import { action, parseId, printRecord, withDownloader } from '../context.js'
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
  registerControl(program, 'rm', 'remove a download record and its partial data (a finished file stays unless --delete-file)',
    'removed', async (dl, id, flags) => { await dl.remove(id, { deleteFile: flags.deleteFile === true }); return undefined },
    async (client, id, flags) => { await client.remove(id, flags.deleteFile === true); return undefined })
    .option('--delete-file', 'also delete the finished output file')
}
