/**
 * An update of a tree under a name: v1 of COUNT files of SIZE bytes is
 * downloaded, the name moves to v2 (CHANGED files changed), and `cidget get`
 * of the name again brings the output up to date. Measured per run: the update
 * (bytes the gateway sent, wall time, peak RSS) against a full download of v2
 * into an empty directory, and the bytes that had to come (the changed files'
 * data). One test gateway on 127.0.0.1, in this process (idle while the CLI
 * runs), no cap.
 *
 *   npx tsx bench/update.ts --count 1000 --size 1M --changed 10 --runs 3
 *
 * Options: `--cli PATH` or `--ref REF` (see bench/lib.ts), `--latency MS` (each answer's headers late).
 */
import { parseArgs } from 'node:util'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import { MemoryBlocks, addDirectory, seededBytes, startTestGateway } from '../src/testing/index.js'
import { cliUnderTest, fmt, freshDir, machine, measure, median, parseSizes, positiveInt, table, MiB, type Measured } from './lib.js'

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    size: { type: 'string', default: '1M' },
    changed: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    latency: { type: 'string', default: '0' },
    cli: { type: 'string' },
    ref: { type: 'string' }
  }
})

function bytesOf (text: string): number {
  const m = /^(\d+)([KM]?)$/i.exec(text.trim())
  if (m === null) return parseSizes(text, 'size')[0] as number
  return Number(m[1]) * (m[2]?.toUpperCase() === 'M' ? MiB : m[2]?.toUpperCase() === 'K' ? 1024 : 1)
}

const count = positiveInt(values.count, 'count')
const size = bytesOf(values.size)
const changed = positiveInt(values.changed, 'changed')
const runs = positiveInt(values.runs, 'runs')
const latency = Number(values.latency)

const blocks = new MemoryBlocks()
const entries = (seed: number, from: number): Array<{ path: string, content: Uint8Array }> =>
  Array.from({ length: count }, (_, i) => ({ path: `t/f${String(i).padStart(5, '0')}.bin`, content: seededBytes(size, i < from ? 1_000_000 * seed + i : i) }))
const v1 = (await addDirectory(blocks, entries(1, changed))).toString()
const v2 = (await addDirectory(blocks, entries(2, changed))).toString()
const gw = await startTestGateway({ blocks })
if (latency > 0) gw.addFault({ fault: { type: 'latency', ms: latency }, probability: 1 })
const key = await generateKeyPair('Ed25519')
const name = peerIdFromPrivateKey(key).toCID().toString(base36)
let seq = 0
const publish = async (root: string): Promise<void> => {
  gw.setIpnsRecord(name, marshalIPNSRecord(await createIPNSRecord(key, `/ipfs/${root}/t`, ++seq, 3_600_000)))
}
const cli = await cliUnderTest(values.cli, values.ref)
const changedBytes = changed * size

interface Row { update: Measured, updateBytes: number, full: Measured, fullBytes: number }
const rows: Row[] = []
try {
  for (let r = 0; r < runs; r++) {
    const dir = await freshDir('update')
    // the name's record comes from the gateway: no router, and no resolver is asked (not a DNSLink name)
    await mkdir(join(dir, '.cidget'))
    await writeFile(join(dir, '.cidget', 'config.json'), JSON.stringify({ routers: [], dnsResolvers: ['system'] }))
    const env = { ...process.env, HOME: dir, CIDGET_STATE: join(dir, 'state.db'), CIDGET_GATEWAYS: gw.url }
    try {
      await publish(v1)
      const first = await measure(process.execPath, [cli.main, 'get', `/ipns/${name}`, '-o', join(dir, 'out'), '-q'], { env })
      if (first.exitCode !== 0) throw new Error(`v1: exit ${String(first.exitCode)}: ${first.stderr}`)
      await publish(v2)
      gw.requests.length = 0
      const update = await measure(process.execPath, [cli.main, 'get', `/ipns/${name}`, '-o', join(dir, 'out'), '-q'], { env })
      if (update.exitCode !== 0) throw new Error(`update: exit ${String(update.exitCode)}: ${update.stderr}`)
      const updateBytes = gw.bytesSent()
      gw.requests.length = 0
      const full = await measure(process.execPath, [cli.main, 'get', v2, '-o', join(dir, 'full'), '-q'], { env })
      if (full.exitCode !== 0) throw new Error(`full: exit ${String(full.exitCode)}: ${full.stderr}`)
      rows.push({ update, updateBytes, full, fullBytes: gw.bytesSent() })
      process.stderr.write(`run ${r + 1}: update ${fmt(update.wallMs / 1000, 2)} s, ${updateBytes} bytes; full ${fmt(full.wallMs / 1000, 2)} s\n`)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
} finally {
  await cli.cleanup()
  await gw.close()
}

const m = (f: (r: Row) => number): number => median(rows.map(f))
console.log(`\n**Update of ${count} × ${size} bytes, ${changed} files changed** (${fmt(changedBytes / 1e6, 1)} MB of changed data), one gateway` +
  `${latency > 0 ? `, ${latency} ms per answer` : ''}, median of ${rows.length}; ${cli.describe}; ${machine()}\n`)
console.log(table(['run', 's', 'bytes fetched', '× changed bytes', 'peak RSS MB', 'client CPU s'], [
  ['update of v1 to v2', fmt(m((r) => r.update.wallMs) / 1000, 2), String(m((r) => r.updateBytes)), fmt(m((r) => r.updateBytes) / changedBytes, 3),
    fmt(m((r) => r.update.peakRssBytes) / 1e6, 0), fmt(m((r) => r.update.cpuSeconds), 2)],
  ['full download of v2', fmt(m((r) => r.full.wallMs) / 1000, 2), String(m((r) => r.fullBytes)), fmt(m((r) => r.fullBytes) / changedBytes, 3),
    fmt(m((r) => r.full.peakRssBytes) / 1e6, 0), fmt(m((r) => r.full.cpuSeconds), 2)]
]))
console.log(`\nupdate time / full download time: ${fmt(m((r) => r.update.wallMs / r.full.wallMs), 2)}`)
