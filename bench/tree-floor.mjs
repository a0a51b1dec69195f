/**
 * The write floor of a tree: the least work any Node.js client must do to
 * put a tree's files on disk durably, and nothing more. Writes the files a
 * `--tree COUNTxBYTES` gateway serves (`f0.bin`…, the same seeded bytes, no
 * network, no hashing), 64 at a time, each with one fsync before it counts
 * as written, then prints `{ files, bytes, ms }` on stdout.
 *
 *   node bench/tree-floor.mjs OUTPUT_DIR COUNT BYTES [SEED]
 *
 * trees.ts runs it as the client `floor`: what one fsync per file costs on
 * this machine, in the same run.
 */
import { mkdirSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import process from 'node:process'

const [out, countText, bytesText, seedText = '1'] = process.argv.slice(2)
if (out === undefined || countText === undefined || bytesText === undefined) {
  process.stderr.write('usage: node bench/tree-floor.mjs OUTPUT_DIR COUNT BYTES [SEED]\n')
  process.exit(2)
}
const count = Number(countText)
const bytes = Number(bytesText)
const seed = Number(seedText)
const PARALLEL = 64

/** seededBytes() of src/testing/blocks.ts: xorshift32 over a Uint32Array, the seed mixed first. */
function seededBytes (size, s) {
  const words = new Uint32Array(Math.ceil(size / 4))
  let x = Math.imul((s | 0) ^ 0x9e3779b9, 0x85ebca6b) >>> 0
  x ^= x >>> 13
  if (x === 0) x = 0x6d2b79f5
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    words[i] = x
  }
  return new Uint8Array(words.buffer, 0, size)
}

async function writeOne (i) {
  const fh = await open(join(out, `f${i}.bin`), 'w')
  try {
    await fh.writeFile(seededBytes(bytes, seed * 1e6 + i))
    await fh.sync()
  } finally {
    await fh.close()
  }
}

const started = performance.now()
mkdirSync(out, { recursive: true })
let next = 0
await Promise.all(Array.from({ length: Math.min(PARALLEL, count) }, async () => {
  while (next < count) await writeOne(next++)
}))
process.stdout.write(JSON.stringify({ files: count, bytes: count * bytes, ms: Math.round(performance.now() - started) }) + '\n')
