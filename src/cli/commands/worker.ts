import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { abortableSleep } from '../../core/async.js'
import { CidgetError, toCidgetError } from '../../core/errors.js'
import { boundHeapGrowth } from '../../core/memory.js'
import { retryDelay } from '../../core/retry.js'
import type { Downloader } from '../../engine/downloader.js'
import { runWorker, type WorkerEvent } from '../../engine/worker.js'
import { action, limitOptions, limitsFrom, namesFrom, openDownloader, parseIntOption, type LimitFlags, type NameFlags } from '../context.js'
import { EXIT } from '../exit.js'
import { describe, printable } from '../format.js'

interface WorkerFlags extends LimitFlags, NameFlags {
  state?: string
  concurrency?: number
  dir?: string
  workerId?: string
  pollMs?: number
  json?: boolean
  quiet?: boolean
  allowLocal?: boolean
}

/** One line per event, for a log. */
function line (owner: string, e: WorkerEvent): string {
  switch (e.type) {
    case 'claimed': return `worker ${owner}: claimed download ${e.id} (${e.status}): ${printable(e.target)} → ${printable(e.output)}`
    case 'finished': return `worker ${owner}: ${describe(e.record)}`
    case 'idle': return `worker ${owner}: the queue has nothing to claim; waiting`
    case 'state-unavailable': return `worker ${owner}: the state cannot be reached (${e.message}); trying again in ${Math.round(e.retryInMs)} ms`
    case 'state-restored': return `worker ${owner}: the state is reachable again`
  }
}

export function registerWorker (program: Command): void {
  limitOptions(program.command('worker')
    .description('work through the shared queue of a state (PostgreSQL for a fleet of machines): claim downloads, run them, repeat until stopped')
    .option('--state <location>', 'the shared state: postgres://user@host/db (or a SQLite file for workers on one machine); default $CIDGET_STATE')
    .option('--concurrency <n>', 'downloads run at once (default: 4)', parseIntOption('--concurrency', 1))
    .option('--dir <path>', 'claim only downloads whose output is inside this directory (default: the current directory)')
    .option('--worker-id <id>', 'a name for this worker in lease owners and logs (default: a random token)')
    .option('--poll-ms <ms>', 'wait before asking an empty queue again (default: 1000)', parseIntOption('--poll-ms', 1)))
    .option('--json', 'print events as JSON lines on stdout')
    .option('-q, --quiet', 'print nothing but errors')
    .option('--allow-local', 'let queued downloads name gateways on loopback, private and link-local addresses too')
    .action(async (flags: WorkerFlags) => {
      // a worker runs for weeks: V8's heap is kept from growing into pages it then keeps (see core/memory.ts)
      boundHeapGrowth()
      await action(async () => {
        if (flags.workerId !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(flags.workerId)) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--worker-id must be 1 to 64 letters, digits, ".", "_" or "-", got "${flags.workerId}"`)
        }
        // host:pid:token, so that a worker on this host whose process is gone is known dead at once
        const owner = `${hostname()}:${process.pid}:${flags.workerId ?? randomBytes(6).toString('hex')}`
        const dir = resolve(flags.dir ?? '.')
        const say = (text: string): void => { if (flags.quiet !== true && flags.json !== true) process.stderr.write(`worker ${owner}: ${text}\n`) }
        const stop = new AbortController()
        let signals = 0
        const onSignal = (): void => {
          signals++
          if (signals > 1) process.exit(130)
          if (flags.quiet !== true) process.stderr.write(`\nworker ${owner}: stopping; running downloads are paused and go back to the queue (press Ctrl-C again to quit at once)\n`)
          stop.abort()
        }
        process.on('SIGINT', onSignal)
        process.on('SIGTERM', onSignal)
        // a worker started while the database is down waits for it
        let dl: Downloader | undefined
        for (let attempt = 1; dl === undefined; attempt++) {
          try {
            dl = await openDownloader({
              state: flags.state,
              owner,
              // orphans are claimed by the queue, not paused at start
              recover: false,
              // the queue's downloads were named by others: not this machine's network, unless the operator allows it
              service: { allowLocal: flags.allowLocal === true, dir },
              ...(flags.concurrency === undefined ? {} : { concurrency: flags.concurrency }),
              ...limitsFrom(flags), ...namesFrom(flags)
            })
          } catch (err) {
            const e = toCidgetError(err)
            if (!e.retryable || stop.signal.aborted) {
              process.off('SIGINT', onSignal)
              process.off('SIGTERM', onSignal)
              throw e
            }
            const wait = retryDelay(attempt, { initialMs: 500, maxMs: 15_000 })
            say(`cannot open the state (${e.message}); trying again in ${Math.round(wait)} ms`)
            await abortableSleep(wait, stop.signal).catch(() => {})
          }
        }
        try {
          say(`claiming downloads under ${dir} from ${dl.store.location}`)
          const summary = await runWorker(dl, {
            signal: stop.signal,
            dir,
            ...(flags.pollMs === undefined ? {} : { pollMs: flags.pollMs }),
            onEvent: (e) => {
              if (flags.json === true) process.stdout.write(JSON.stringify({ worker: owner, ...e }) + '\n')
              else if (flags.quiet !== true) process.stderr.write(line(owner, e) + '\n')
            }
          })
          const done = Object.entries(summary.finished).map(([s, n]) => `${n} ${s}`).join(', ')
          say(`claimed ${summary.claimed} download(s)${done === '' ? '' : `: ${done}`}`)
          return EXIT.SUCCESS
        } finally {
          process.off('SIGINT', onSignal)
          process.off('SIGTERM', onSignal)
          await dl.close()
        }
      })
    })
}
