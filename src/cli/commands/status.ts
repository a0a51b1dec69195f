import type { Command } from 'commander'
import { CidgetError } from '../../core/errors.js'
import { STATUSES, type DownloadStatus, type DownloadRecord } from '../../core/types.js'
import { action, parseId, parseIntOption, printRecord, withDownloader } from '../context.js'
import { EXIT } from '../exit.js'
import { table } from '../format.js'
import { RemoteClient, type RemoteFlags } from '../remote.js'

export function registerStatus (program: Command): void {
  program.command('status')
    .description('show one download')
    .argument('<id>', 'download id')
    .option('--state <location>', 'state: a SQLite file or a postgres:// URL (default: $CIDGET_STATE or ~/.cidget/state.db)')
    .option('--json', 'print the record as JSON')
    .option('--server <url>', 'ask a running `cidget serve` instead of the state file')
    .option('--token <token>', 'API token for --server (default: $CIDGET_TOKEN, else the token file next to the default state)')
    .action(async (idText: string, flags: { state?: string, json?: boolean } & RemoteFlags) => {
      await action(async () => {
        const id = parseId(idText)
        const rec = flags.server !== undefined
          ? await (await RemoteClient.from(flags)).get(id)
          : await withDownloader({ state: flags.state, recover: false }, async dl => await dl.get(id))
        if (rec === undefined) throw new CidgetError('CIDGET_ERR_UNKNOWN_DOWNLOAD', `No download with id ${id}`)
        printRecord(rec, flags.json === true)
        return EXIT.SUCCESS
      })
    })
}

export function registerList (program: Command): void {
  program.command('list')
    .description('list downloads, lowest id first')
    .option('--status <status>', `only this status (${STATUSES.join(', ')})`)
    .option('--limit <n>', 'at most this many', parseIntOption('--limit', 1))
    .option('--after <id>', 'only ids greater than this (the next page: the last id shown)', parseIntOption('--after', 0))
    .option('--state <location>', 'state: a SQLite file or a postgres:// URL (default: $CIDGET_STATE or ~/.cidget/state.db)')
    .option('--json', 'print records as JSON (one per line)')
    .option('--server <url>', 'ask a running `cidget serve` instead of the state file')
    .option('--token <token>', 'API token for --server (default: $CIDGET_TOKEN, else the token file next to the default state)')
    .action(async (flags: { status?: string, limit?: number, after?: number, state?: string, json?: boolean } & RemoteFlags) => {
      await action(async () => {
        if (flags.status !== undefined && !STATUSES.includes(flags.status as DownloadStatus)) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--status must be one of ${STATUSES.join(', ')}, got "${flags.status}"`)
        }
        const status = flags.status as DownloadStatus | undefined
        // with --limit, one more than asked: whether the list was cut
        const fetch = flags.limit === undefined ? undefined : flags.limit + 1
        const found = flags.server !== undefined
          ? await (await RemoteClient.from(flags)).listAll({
            ...(status === undefined ? {} : { status }),
            ...(fetch === undefined ? {} : { limit: fetch }),
            ...(flags.after === undefined ? {} : { afterId: flags.after })
          })
          : await withDownloader({ state: flags.state, recover: false }, async dl => {
            const rows: DownloadRecord[] = []
            let afterId = flags.after ?? 0
            const want = fetch ?? Number.MAX_SAFE_INTEGER
            while (rows.length < want) {
              const page = await dl.list({ ...(status === undefined ? {} : { status }), afterId, limit: Math.min(500, want - rows.length) })
              if (page.length === 0) break
              rows.push(...page)
              afterId = page[page.length - 1]?.id ?? afterId
            }
            return rows
          })
        const rows = flags.limit === undefined ? found : found.slice(0, flags.limit)
        if (flags.json === true) {
          for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n')
        } else {
          process.stdout.write((rows.length === 0 ? 'no downloads' : table(rows)) + '\n')
          const last = rows[rows.length - 1]
          if (flags.limit !== undefined && found.length > rows.length && last !== undefined) {
            process.stderr.write(`… more: cidget list${status === undefined ? '' : ` --status ${status}`} --after ${last.id} --limit ${flags.limit}\n`)
          }
        }
        return EXIT.SUCCESS
      })
    })
}
