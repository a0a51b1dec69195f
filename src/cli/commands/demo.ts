import type { Command } from 'commander'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Downloader } from '../../engine/downloader.js'
import type { TestGateway } from '../../testing/index.js'
import type { DownloadRecord, Mode } from '../../core/types.js'
import { action, parseIntOption } from '../context.js'
import { EXIT } from '../exit.js'
import { ProgressView } from '../progress.js'
import { humanBytes } from '../format.js'

const MiB = 1024 * 1024
const out = process.stderr

/** Every request of a path-mode run, one line each. */
function requestLog (name: string, gw: TestGateway): string[] {
  return gw.requests.map(r => `  ${name.padEnd(7)} ${r.method} ${(r.format ?? '-').padEnd(4)} range=${(r.range ?? '-').padEnd(16)} → ${r.status} ${humanBytes(r.bytesSent).padStart(9)}${r.fault !== null ? `  fault: ${r.fault}` : ''}`)
}

/** Per gateway: requests, blocks delivered, faults injected (a verified run makes hundreds of requests). */
function requestSummary (name: string, gw: TestGateway): string {
  const ok = gw.requests.filter(r => r.status === 200 && r.fault === null && !r.aborted).length
  const faults = gw.requests.filter(r => r.fault !== null).length
  return `  ${name.padEnd(7)} ${String(gw.requests.length).padStart(4)} requests, ${String(ok).padStart(4)} good blocks, ${String(faults).padStart(4)} faulty answers, ${humanBytes(gw.bytesSent()).padStart(9)} sent`
}

async function download (dir: string, gateways: TestGateway[], cid: string, mode: Mode, expected: string, name: string): Promise<DownloadRecord> {
  const dl = await Downloader.open({
    state: join(dir, 'state.db'),
    gateways: gateways.map(g => g.url),
    // the demo never leaves this machine: no router is asked for providers
    routers: [],
    timeoutMs: 2_000,
    initialBackoffMs: 200
  })
  const view = new ProgressView(dl, { tty: process.stderr.isTTY === true, quiet: false })
  try {
    const job = await dl.add(cid, { mode, output: join(dir, name), sha256: expected })
    view.name(job.record)
    return await job.done
  } finally {
    view.stop()
    await dl.close()
  }
}

async function check (rec: DownloadRecord, expected: string): Promise<boolean> {
  if (rec.status !== 'success') {
    out.write(`download ended ${rec.status}: ${rec.error ?? ''}\n`)
    return false
  }
  const onDisk = createHash('sha256').update(await readFile(rec.output)).digest('hex')
  const ok = onDisk === expected
  out.write(`${ok ? 'OK' : 'MISMATCH'}: ${rec.output} is ${humanBytes(rec.size)}, sha256 ${onDisk} ${ok ? 'matches' : 'DOES NOT match'}\n\n`)
  return ok
}

export function registerDemo (program: Command): void {
  program.command('demo')
    .description('offline demo: local gateways that fail on purpose, and downloads (verified, then path mode) that survive them')
    .option('--size <MiB>', 'file size in MiB', parseIntOption('--size', 1), 24)
    .option('--keep', 'keep the downloaded files and the state in the printed directory')
    .action(async (flags: { size: number, keep?: boolean }) => {
      await action(async () => {
        const size = flags.size * MiB
        out.write(`cidget demo: building a ${humanBytes(size)} file and local gateways that misbehave\n`)
        // the test gateway and the content builder are loaded by this command only: every other command starts faster without them
        const { MemoryBlocks, addFile, seededBytes, startTestGateway } = await import('../../testing/index.js')
        const blocks = new MemoryBlocks()
        const data = seededBytes(size, 42)
        const expected = createHash('sha256').update(data).digest('hex')
        const cid = (await addFile(blocks, data)).toString()
        const rate = 24 * MiB
        const gateways: TestGateway[] = []
        const dir = await mkdtemp(join(tmpdir(), 'cidget-demo-'))
        try {
          for (let i = 0; i < 5; i++) gateways.push(await startTestGateway({ blocks, maxBytesPerSecond: rate }))
          const [liar, cutter, good, flaky, backup] = gateways as [TestGateway, TestGateway, TestGateway, TestGateway, TestGateway]
          out.write(`  content  /ipfs/${cid}\n  expected sha256 ${expected}\n\n`)

          out.write(`1. verified mode: every block checked against the CID, from three gateways at once\n   ${liar.url} sends wrong blocks, ${cutter.url} cuts connections, ${good.url} works\n\n`)
          liar.setFaults([{ fault: { type: 'wrong-block' } }])
          cutter.setFaults([{ fault: { type: 'reset', afterBytes: 1000 }, times: 20 }])
          const verified = await download(dir, [liar, cutter, good], cid, 'verified', expected, 'verified.bin')
          out.write('\nwhat crossed the wire:\n')
          out.write([requestSummary('liar', liar), requestSummary('cutter', cutter), requestSummary('good', good)].join('\n') + '\n\n')
          const ok1 = await check(verified, expected)

          out.write(`2. path mode: HTTP Range with SHA-256, the file then checked against the CID\n   ${flaky.url} (flaky), ${backup.url} (backup)\n\n`)
          // the faults, in the order the download meets them
          flaky.setFaults([{ fault: { type: 'status', status: 503, retryAfter: 2 }, times: 1 }])
          backup.setFaults([
            { fault: { type: 'reset', afterBytes: Math.floor(size * 2 / 3) }, times: 1, match: { format: 'path', ranged: false } },
            { fault: { type: 'flip' }, times: 1, match: { format: 'path', ranged: true } }
          ])
          const path = await download(dir, [flaky, backup], cid, 'path', expected, 'path.bin')
          out.write('\nwhat crossed the wire:\n')
          out.write([...requestLog('flaky', flaky), ...requestLog('backup', backup)].join('\n') + '\n\n')
          const ok2 = await check(path, expected)
          if (flags.keep === true) out.write(`kept in ${dir}\n`)
          return ok1 && ok2 ? EXIT.SUCCESS : EXIT.FAILED
        } finally {
          for (const g of gateways) await g.close()
          if (flags.keep !== true) await rm(dir, { recursive: true, force: true })
        }
      })
    })
}
