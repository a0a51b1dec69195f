/**
 * The floor of a verifying Node.js client: the least work any client built on
 * Node.js and undici must do to download a file and check it as cidget does,
 * and nothing more. One GET of the whole file (as curl does: no CAR framing,
 * no requests per block); every 256 KiB hashed (SHA-256, as each raw leaf of
 * the importer's default layout is checked against its CID); the whole file
 * hashed (SHA-256, as cidget records it); each chunk written at once with a
 * synchronous write (the cheapest write in CPU). No state, no fsync, no
 * retries, no DAG. It checks nothing against anything: it only spends the CPU
 * that checking takes.
 *
 *   node bench/floor.mjs URL OUTPUT
 *
 * throughput.ts runs it as the client `floor`: what cidget could reach at
 * best on the same machine, in the same run.
 */
import { createHash } from 'node:crypto'
import { closeSync, openSync, writeSync } from 'node:fs'
import process from 'node:process'
import { request } from 'undici'

const LEAF = 256 * 1024
const [url, output] = process.argv.slice(2)
if (url === undefined || output === undefined) {
  process.stderr.write('usage: node bench/floor.mjs URL OUTPUT\n')
  process.exit(2)
}

const fd = openSync(output, 'w')
const file = createHash('sha256')
let leaf = createHash('sha256')
let inLeaf = 0
let leaves = 0
const res = await request(url)
if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`)
for await (const chunk of res.body) {
  file.update(chunk)
  let at = 0
  while (at < chunk.length) {
    const n = Math.min(chunk.length - at, LEAF - inLeaf)
    leaf.update(chunk.subarray(at, at + n))
    inLeaf += n
    at += n
    if (inLeaf === LEAF) {
      leaf.digest()
      leaf = createHash('sha256')
      inLeaf = 0
      leaves++
    }
  }
  let done = 0
  while (done < chunk.length) done += writeSync(fd, chunk, done, chunk.length - done)
}
if (inLeaf > 0) leaf.digest()
closeSync(fd)
process.stderr.write(`${leaves + (inLeaf > 0 ? 1 : 0)} leaves, sha256 ${file.digest('hex')}\n`)
