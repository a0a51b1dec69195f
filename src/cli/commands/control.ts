import type { Command } from 'commander'
import { action, openDownloader, parseId, printRecord } from '../context.js'
import { EXIT } from '../exit.js'

export function registerPause (program: Command): void {
  program.command('pause')
    .description('pause a download (its partial data is kept)')
    .argument('<id>', 'download id')
    .option('--state <file>', 'SQLite state file')
    .option('--json', 'print the record as JSON')
    .action(async (idText: string, flags: { state?: string, json?: boolean }) => {
      await action(async () => {
        const id = parseId(idText)
        const dl = await openDownloader({ state: flags.state })
        try {
          const rec = await dl.pause(id)
          if (flags.json === true) printRecord(rec, true)
          else process.stderr.write(`paused download ${id}\n`)
          return EXIT.SUCCESS
        } finally {
          await dl.close()
        }
      })
    })
}

export function registerCancel (program: Command): void {
  program.command('cancel')
    .description('cancel a download and delete its partial data')
    .argument('<id>', 'download id')
    .option('--state <file>', 'SQLite state file')
    .option('--json', 'print the record as JSON')
    .action(async (idText: string, flags: { state?: string, json?: boolean }) => {
      await action(async () => {
        const id = parseId(idText)
        const dl = await openDownloader({ state: flags.state })
        try {
          const rec = await dl.cancel(id)
          if (flags.json === true) printRecord(rec, true)
          else process.stderr.write(`cancelled download ${id}\n`)
          return EXIT.SUCCESS
        } finally {
          await dl.close()
        }
      })
    })
}

export function registerRm (program: Command): void {
  program.command('rm')
    .description('remove a download record and its partial data (a finished file stays unless --delete-file)')
    .argument('<id>', 'download id')
    .option('--delete-file', 'also delete the finished output file')
    .option('--state <file>', 'SQLite state file')
    .action(async (idText: string, flags: { state?: string, deleteFile?: boolean }) => {
      await action(async () => {
        const id = parseId(idText)
        const dl = await openDownloader({ state: flags.state })
        try {
          await dl.remove(id, { deleteFile: flags.deleteFile === true })
          process.stderr.write(`removed download ${id}\n`)
          return EXIT.SUCCESS
        } finally {
          await dl.close()
        }
      })
    })
}
