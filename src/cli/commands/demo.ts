import type { Command } from 'commander'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Downloader } from '../../engine/downloader.js'
import { MemoryBlocks, addFile, seededBytes, startTestGateway, type TestGateway } from '../../testing/index.js'
import { action, parseIntOption } from '../context.js'
import { EXIT } from '../exit.js'
import { ProgressView } from '../progress.js'
import { humanBytes } from '../format.js'

const MiB = 1024 * 1024

function requestLog (name: string, gw: TestGateway): string[] {
  return gw.requests.map(r => `  ${name.padEnd(7)} ${r.method} range=${(r.range ?? '-').padEnd(16)} → ${r.status} ${humanBytes(r.bytesSent).padStart(9)}${r.fault !== null ? `  fault: ${r.fault}` : ''}`)
}

export function registerDemo (program: Command): void {
  program.command('demo')
    .description('offline demo: two local gateways that fail on purpose, and a download that survives them')
    .option('--size <MiB>', 'file size in MiB', parseIntOption('--size', 1), 24)
    .option('--keep', 'keep the downloaded file and the state in the printed directory')
    .action(async (flags: { size: number, keep?: boolean }) => {
      await action(async () => {
        const size = flags.size * MiB
        const out = process.stderr
        out.write(`cidget demo: building a ${humanBytes(size)} file and two local gateways that misbehave\n`)
        const blocks = new MemoryBlocks()
        const data = seededBytes(size, 42)
        const expected = createHash('sha256').update(data).digest('hex')
        const cid = await addFile(blocks, data)
        const rate = 24 * MiB
        const flaky = await startTestGateway({ blocks, maxBytesPerSecond: rate })
        const backup = await startTestGateway({ blocks, maxBytesPerSecond: rate })
        // The faults, in the order the download meets them.
        flaky.setFaults([
          { fault: { type: 'status', status: 503, retryAfter: 1 }, times: 1 },
          { fault: { type: 'reset', afterBytes: Math.floor(size * 2 / 3) }, times: 1 }
        ])
        backup.setFaults([
          { fault: { type: 'flip' }, times: 1, match: { ranged: false } },
          { fault: { type: 'ignore-range' }, times: 1, match: { ranged: true } }
        ])
        const dir = await mkdtemp(join(tmpdir(), 'cidget-demo-'))
        const dl = await Downloader.open({
          state: join(dir, 'state.db'),
          gateways: [flaky.url, backup.url],
          timeoutMs: 2_000,
          initialBackoffMs: 200
        })
        const view = new ProgressView(dl, { tty: process.stderr.isTTY === true, quiet: false })
        try {
          out.write(`  content  /ipfs/${cid.toString()}\n  gateways ${flaky.url} (flaky), ${backup.url} (backup)\n  expected sha256 ${expected}\n\n`)
          const job = await dl.add(cid.toString(), { output: join(dir, 'demo.bin'), sha256: expected })
          const rec = await job.done
          view.stop()
          out.write('\nwhat crossed the wire:\n')
          out.write([...requestLog('flaky', flaky), ...requestLog('backup', backup)].join('\n') + '\n\n')
          if (rec.status !== 'success') {
            out.write(`demo download ended ${rec.status}: ${rec.error ?? ''}\n`)
            return EXIT.FAILED
          }
          const onDisk = createHash('sha256').update(await readFile(rec.output)).digest('hex')
          const ok = onDisk === expected
          out.write(`${ok ? 'OK' : 'MISMATCH'}: ${rec.output} is ${humanBytes(rec.size)}, sha256 ${onDisk} ${ok ? 'matches' : 'DOES NOT match'}; ${rec.attempts} requests\n`)
          if (flags.keep === true) out.write(`kept in ${dir}\n`)
          return ok ? EXIT.SUCCESS : EXIT.FAILED
        } finally {
          view.stop()
          await dl.close()
          await flaky.close()
          await backup.close()
          if (flags.keep !== true) await rm(dir, { recursive: true, force: true })
        }
      })
    })
}
