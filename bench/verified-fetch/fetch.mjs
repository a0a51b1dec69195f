// The @helia/verified-fetch baseline of bench/throughput.ts. Run it with Node >= 22:
//
//   node bench/verified-fetch/fetch.mjs GATEWAY_URL CID OUTPUT_FILE
//
// Helia is built with HTTP only: no libp2p, no delegated routers (nothing leaves the
// machine), a no-op router, the one gateway given as its only "recursive gateway" provider, and
// allowInsecure/allowLocal so that an http://127.0.0.1 gateway is used at all. Blocks
// go through helia's trustless-gateway block broker (application/vnd.ipld.raw, each
// block checked against its CID) into its default in-memory blockstore; the file is
// the body of `verifiedFetch('ipfs://CID')`, streamed to OUTPUT_FILE.
/* global AbortSignal */
import { createWriteStream } from 'node:fs'
import process from 'node:process'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { withHTTP } from '@helia/http'
import { createVerifiedFetch } from '@helia/verified-fetch'
import { createHeliaLight } from 'helia'

const [gateway, cid, output] = process.argv.slice(2)
if (gateway === undefined || cid === undefined || output === undefined) {
  process.stderr.write('usage: fetch.mjs GATEWAY_URL CID OUTPUT_FILE\n')
  process.exit(2)
}

const helia = withHTTP(createHeliaLight(), {
  delegatedRouters: [],
  recursiveGateways: [gateway],
  allowInsecure: true,
  allowLocal: true
})
// Helia's routing waits for its non-fallback routers to finish before it asks the
// fallback router (our gateway); with none at all it waits forever. A router that
// finds nothing ends that wait at once.
helia.addRouter({
  name: 'no-op',
  async * findProviders () {},
  toString: () => 'NoOpRouter()'
})
await helia.start()
const verifiedFetch = await createVerifiedFetch(helia)
const res = await verifiedFetch(`ipfs://${cid}`, { signal: AbortSignal.timeout(600_000) })
if (res.status !== 200 || res.body === null) {
  process.stderr.write(`verified-fetch: HTTP ${res.status} ${await res.text()}\n`)
  process.exit(1)
}
await pipeline(Readable.fromWeb(res.body), createWriteStream(output))
await verifiedFetch.stop()
await helia.stop()
