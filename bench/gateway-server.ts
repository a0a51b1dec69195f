/**
 * A benchmark gateway in its own process: builds a seeded file of `--size`
 * MiB with the importer's defaults (256 KiB chunks, raw leaves, CIDv1),
 * serves it from `--count` test gateways (each with its own token bucket of
 * `--rate` MiB/s, shared by all of that gateway's connections), prints one
 * JSON line `{ cid, sha256, size, urls, importMs }` on stdout when ready and
 * exits on SIGTERM or SIGINT.
 *
 *   npx tsx bench/gateway-server.ts --size 256 [--count 1] [--rate 32] [--seed 1] [--port 0] [--exit-with-stdin]
 *
 * `--rate` is in MiB/s (absent: unlimited); `--port` is the first port
 * (0: any free ones); `--exit-with-stdin` also exits when stdin closes.
 * SIGUSR2 prints a JSON line of request counters (see below).
 *
 * `--tree COUNTxBYTES` (e.g. `10000x4096`) serves a directory of COUNT files
 * instead (`f0.bin`, `f1.bin`…, file i being `seededBytes(BYTES, seed * 1e6 + i)`),
 * imported with the importer's defaults (a directory past 256 KiB of links
 * is HAMT-sharded); the ready line then also gives `files`, `fileBytes` and
 * `sharded`, and `sha256` is empty. `--latency MS` delays every answer's
 * headers by MS milliseconds (the test gateway's `latency` fault): a distant
 * gateway.
 *
 * `--cache DIR` (with `--tree`): the tree's blocks come from a cache file in
 * DIR named by the tree and the seed (`bench/tree-blocks.ts`), built first
 * if missing (streamed into the file: the process then holds only the
 * directory nodes), and are served from one buffer indexed by multihash;
 * `--build-only` exits once the cache is there, printing its metadata.
 *
 * The content is generated in 1 MiB pieces and streamed into the importer,
 * so the process holds one copy of it (the blocks) and no more.
 */
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { importer } from 'ipfs-unixfs-importer'
import { CID } from 'multiformats/cid'
import { MemoryBlocks, addFile, startTestGateway } from '../src/testing/index.js'
import { PackedBlocks, buildTreeCache, cachePaths, treeEntries } from './tree-blocks.js'
import type { TestGateway } from '../src/testing/index.js'

const MiB = 1024 * 1024

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256' },
    count: { type: 'string', default: '1' },
    rate: { type: 'string' },
    seed: { type: 'string', default: '1' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    tree: { type: 'string' },
    latency: { type: 'string', default: '0' },
    cache: { type: 'string' },
    'build-only': { type: 'boolean', default: false },
    'exit-with-stdin': { type: 'boolean', default: false }
  },
  strict: true
})

function positive (name: string, text: string | undefined, allowZero = false): number {
  const n = Number(text)
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) {
    process.stderr.write(`gateway-server: --${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(text)}\n`)
    process.exit(2)
  }
  return n
}

const size = Math.round(positive('size', values.size) * MiB)
const count = Math.floor(positive('count', values.count))
const rate = values.rate === undefined ? undefined : Math.round(positive('rate', values.rate) * MiB)
const seed = Math.floor(positive('seed', values.seed, true))
const basePort = Math.floor(positive('port', values.port, true))
const latencyMs = positive('latency', values.latency, true)
const tree = values.tree === undefined ? undefined : parseTree(values.tree)

function parseTree (text: string): { files: number, fileBytes: number } {
  const m = /^(\d+)x(\d+)$/.exec(text)
  if (m === null) {
    process.stderr.write(`gateway-server: --tree must be COUNTxBYTES, got ${text}\n`)
    process.exit(2)
  }
  return { files: Number(m[1]), fileBytes: Number(m[2]) }
}

async function importTree (files: number, fileBytes: number, seedValue: number): Promise<{ cid: CID, sharded: boolean }> {
  let root: CID | undefined
  for await (const r of importer(treeEntries(files, fileBytes, seedValue), blocks.asBlockstore(), { wrapWithDirectory: true })) root = r.cid
  if (root === undefined) throw new Error('gateway-server: the importer produced no root')
  const node = dagPb.decode(blocks.get(root))
  const sharded = node.Data !== undefined && UnixFS.unmarshal(node.Data).type === 'hamt-sharded-directory'
  return { cid: root, sharded }
}

/**
 * Deterministic pseudo-random bytes (xorshift32), generated piece by piece.
 * Each piece is a fresh buffer: the importer may keep views of it as leaves.
 */
function * seededPieces (total: number, seedValue: number, hash: ReturnType<typeof createHash>): Generator<Uint8Array> {
  let x = Math.imul((seedValue | 0) ^ 0x9e3779b9, 0x85ebca6b) >>> 0
  x ^= x >>> 13
  if (x === 0) x = 0x6d2b79f5
  for (let at = 0; at < total; at += MiB) {
    const n = Math.min(MiB, total - at)
    const words = new Uint32Array(Math.ceil(n / 4))
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      words[i] = x
    }
    const piece = new Uint8Array(words.buffer, 0, n)
    hash.update(piece)
    yield piece
  }
}

const started = performance.now()
let blocks = new MemoryBlocks()
const hash = createHash('sha256')
let built: { cid: CID, sharded: boolean }
if (tree !== undefined && values.cache !== undefined) {
  const meta = await buildTreeCache(values.cache, tree.files, tree.fileBytes, seed)
  if (values['build-only']) {
    process.stdout.write(JSON.stringify({ ...meta, cache: cachePaths(values.cache, tree.files, tree.fileBytes, seed).blocks }) + '\n')
    process.exit(0)
  }
  blocks = new PackedBlocks(cachePaths(values.cache, tree.files, tree.fileBytes, seed).blocks, meta.blocks)
  built = { cid: CID.parse(meta.cid), sharded: meta.sharded }
} else {
  built = tree === undefined
    ? { cid: await addFile(blocks, seededPieces(size, seed, hash)), sharded: false }
    : await importTree(tree.files, tree.fileBytes, seed)
}
const cid = built.cid
const sha256 = tree === undefined ? hash.digest('hex') : ''
const importMs = Math.round(performance.now() - started)

const gateways: TestGateway[] = []
for (let i = 0; i < count; i++) {
  gateways.push(await startTestGateway({
    blocks,
    host: values.host,
    port: basePort === 0 ? 0 : basePort + i,
    ...(rate === undefined ? {} : { maxBytesPerSecond: rate })
  }))
}
if (latencyMs > 0) for (const g of gateways) g.addFault({ fault: { type: 'latency', ms: latencyMs } })

let closing = false
async function shutdown (): Promise<void> {
  if (closing) return
  closing = true
  await Promise.allSettled(gateways.map(async (g) => { await g.close() }))
  process.exit(0)
}
process.on('SIGTERM', () => { void shutdown() })
process.on('SIGINT', () => { void shutdown() })
/**
 * SIGUSR2: print one JSON line of counters for the requests since the
 * previous SIGUSR2 (all gateways of this process together; per gateway, the
 * bytes sent and `spans`: its first request's arrival and its last answer's
 * end, ms since the epoch, `null` and 0 without requests), then forget them.
 */
process.on('SIGUSR2', () => {
  const stats = { stats: true, requests: 0, raw: 0, car: 0, path: 0, aborted: 0, bytesSent: 0, perGateway: [] as number[], spans: [] as Array<[number, number]> }
  for (const g of gateways) {
    let bytes = 0
    const span: [number, number] = [Infinity, 0]
    for (const r of g.requests) {
      span[0] = Math.min(span[0], r.startedAt)
      span[1] = Math.max(span[1], r.endedAt ?? 0)
      stats.requests++
      if (r.format === 'raw') stats.raw++
      else if (r.format === 'car') stats.car++
      else if (r.format === 'path') stats.path++
      if (r.aborted) stats.aborted++
      bytes += r.bytesSent
    }
    stats.bytesSent += bytes
    stats.perGateway.push(bytes)
    stats.spans.push(span)
    g.requests.length = 0
  }
  process.stdout.write(JSON.stringify(stats) + '\n')
})

if (values['exit-with-stdin']) {
  // The benchmarks pass this: the gateway also stops when its parent dies (stdin closes).
  process.stdin.on('end', () => { void shutdown() })
  process.stdin.on('error', () => { void shutdown() })
  process.stdin.resume()
}

process.stdout.write(JSON.stringify({
  cid: cid.toString(),
  sha256,
  size: tree === undefined ? size : tree.files * tree.fileBytes,
  ...(tree === undefined ? {} : { files: tree.files, fileBytes: tree.fileBytes, sharded: built.sharded }),
  latencyMs,
  urls: gateways.map((g) => g.url),
  rate: rate ?? null,
  importMs,
  pid: process.pid
}) + '\n')
