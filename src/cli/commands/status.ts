import type { Command } from 'commander'
import { CidgetError } from '../../core/errors.js'
import { STATUSES, type DownloadStatus, type DownloadRecord } from '../../core/types.js'
import { action, openDownloader, parseId, parseIntOption, printRecord } from '../context.js'
import { EXIT } from '../exit.js'
import { table } from '../format.js'

export function registerStatus (program: Command): void {
  program.command('status')
    .description('show one download')
    .argument('<id>', 'download id')
    .option('--state <file>', 'SQLite state file')
    .option('--json', 'print the record as JSON')
    .action(async (idText: string, flags: { state?: string, json?: boolean }) => {
      await action(async () => {
        const id = parseId(idText)
        const dl = await openDownloader({ state: flags.state, recover: false })
        try {
          const rec = await dl.get(id)
          if (rec === undefined) throw new CidgetError('CIDGET_ERR_UNKNOWN_DOWNLOAD', `No download with id ${id}`)
          printRecord(rec, flags.json === true)
          return EXIT.SUCCESS
        } finally {
          await dl.close()
        }
      })
    })
}

export function registerList (program: Command): void {
  program.command('list')
    .description('list downloads')
    .option('--status <status>', `only this status (${STATUSES.join(', ')})`)
    .option('--limit <n>', 'at most this many', parseIntOption('--limit', 1))
    .option('--state <file>', 'SQLite state file')
    .option('--json', 'print records as JSON (one per line)')
    .action(async (flags: { status?: string, limit?: number, state?: string, json?: boolean }) => {
      await action(async () => {
        if (flags.status !== undefined && !STATUSES.includes(flags.status as DownloadStatus)) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--status must be one of ${STATUSES.join(', ')}, got "${flags.status}"`)
        }
        const dl = await openDownloader({ state: flags.state, recover: false })
        try {
          const rows: DownloadRecord[] = []
          let afterId = 0
          const want = flags.limit ?? Number.MAX_SAFE_INTEGER
          while (rows.length < want) {
            const page = await dl.list({ ...(flags.status === undefined ? {} : { status: flags.status as DownloadStatus }), afterId, limit: Math.min(500, want - rows.length) })
            if (page.length === 0) break
            rows.push(...page)
            afterId = page[page.length - 1]?.id ?? afterId
          }
          if (flags.json === true) {
            for (const r of rows) process.stdout.write(JSON.stringify(r) + '\n')
          } else {
            process.stdout.write((rows.length === 0 ? 'no downloads' : table(rows)) + '\n')
          }
          return EXIT.SUCCESS
        } finally {
          await dl.close()
        }
      })
    })
}
