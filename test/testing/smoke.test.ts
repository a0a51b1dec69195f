import { it } from 'vitest'
import { MemoryBlocks, addFile, addDirectory, seededBytes, startTestGateway } from '../../src/testing/index.js'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { walkPath } from 'ipfs-unixfs-exporter'
it('smoke', async () => {
  const blocks = new MemoryBlocks()
  const data = seededBytes(300_000)
  const cid = await addFile(blocks, data, { chunker: fixedSize({ chunkSize: 10_000 }) })
  console.log(cid.toString(), blocks.size)
  const files = Array.from({ length: 40 }, (_, i) => ({ path: `f${i}.txt`, content: new TextEncoder().encode(`file ${i}`) }))
  const dir = await addDirectory(blocks, [...files, { path: 'sub/x.bin', content: data }, { path: 'empty' }], { shardSplitThresholdBytes: 1 })
  console.log('dir', dir.toString())
  for await (const e of walkPath(`${dir}/f7.txt`, blocks.asBlockstore(), { yieldSubShards: true })) console.log(e.name, e.cid.toString(), e.roots.length, e.remainder)
  const t0 = performance.now()
  const big = seededBytes(256 << 20)
  console.log('seeded 256MiB ms', performance.now() - t0)
  const gw = await startTestGateway({ blocks })
  const r = await fetch(`${gw.url}/ipfs/${cid}`)
  const body = new Uint8Array(await r.arrayBuffer())
  console.log(r.status, [...r.headers.entries()], Buffer.from(body).equals(Buffer.from(data)))
  const r2 = await fetch(`${gw.url}/ipfs/${dir}/f7.txt`)
  console.log(r2.status, await r2.text())
  const r3 = await fetch(`${gw.url}/ipfs/${dir}?format=car`)
  console.log(r3.status, (await r3.arrayBuffer()).byteLength, [...r3.headers.entries()])
  await gw.close()
  void big
})
