/**
 * A fault-injecting IPFS HTTP gateway for tests, demos and benchmarks.
 *
 * It is a real `node:http` server on loopback that serves content from a
 * {@link MemoryBlocks} store as a path gateway (`/ipfs/CID[/path]`, with
 * `Range`) and as a trustless gateway (`?format=raw`, `?format=car` with
 * `dag-scope` and IPIP-402 `entity-bytes`), and misbehaves on demand through
 * {@link FaultRule}s.
 *
 * @example
 * ```ts
 * import { MemoryBlocks, addFile, seededBytes, startTestGateway } from 'cidget/testing'
 *
 * const blocks = new MemoryBlocks()
 * const cid = await addFile(blocks, seededBytes(1 << 20))
 * const gw = await startTestGateway({ blocks })
 * gw.addFault({ fault: { type: 'reset', afterBytes: 4096 }, times: 1 })
 * // GET `${gw.url}/ipfs/${cid}` now breaks once after 4 KiB, then works.
 * await gw.close()
 * ```
 *
 * The server lives in `gateway/`, one module per concern: `server.ts` (HTTP,
 * records, routing), `answers.ts` (path, raw and CAR answers), `car.ts`
 * (which blocks a CAR carries), `respond.ts` (headers, ranges, paced body
 * writes and body faults), `faults.ts` (rules and their draws),
 * `request.ts` (parsing), `content.ts` (the block store's view), `pace.ts`
 * and `body.ts` (rate limits and body streams), `types.ts` (the public types).
 *
 * @module
 */

import { TestGatewayServer } from './gateway/server.js'
import { DEFAULT_TEST_GATEWAY_HOST } from './gateway/types.js'
import type { TestGateway, TestGatewayOptions } from './gateway/types.js'

export { DEFAULT_TEST_GATEWAY_CHUNK_SIZE, DEFAULT_TEST_GATEWAY_HOST } from './gateway/types.js'
export type {
  Fault,
  FaultRule,
  RequestFormat,
  RequestRecord,
  TestGateway,
  TestGatewayEvents,
  TestGatewayOptions
} from './gateway/types.js'
export { seededRandom } from './gateway/faults.js'

/**
 * Starts a test gateway and resolves once it listens.
 *
 * HTTP behaviour:
 * - `GET|HEAD /ipfs/CID[/path]` (path gateway): resolves the path through
 *   UnixFS (HAMT-sharded directories too) and serves the file as
 *   `application/octet-stream` with `Content-Length`, `Accept-Ranges: bytes`,
 *   strong `ETag: "<resolved CID>"`, immutable `Cache-Control`, `X-Ipfs-Path`.
 *   One `Range` (`bytes=a-b`, `bytes=a-`, `bytes=-n`) gives `206`; an
 *   unsatisfiable one `416` with `Content-Range: bytes *\/SIZE`; several ranges,
 *   a malformed one, or an `If-Range` that differs from the ETag give `200`
 *   and the whole body. A directory gives `501`.
 * - `?format=raw` or `Accept: application/vnd.ipld.raw`: the block bytes,
 *   `ETag: "<cid>.raw"` (a path gives `400`; `Range` works as above).
 * - `?format=car` or `Accept: application/vnd.ipld.car`: a CARv1 stream, root
 *   = the CID in the URL, DFS order, no duplicates, no `Content-Length`; the
 *   blocks of the path first, then by `dag-scope` (`block`, `entity`, `all`,
 *   default `all`) and `entity-bytes=from:to`. Identity CIDs are not written
 *   (they carry their data); codecs other than dag-pb and raw are written but
 *   not traversed. A block missing below the root ends the stream abruptly.
 * - Identity CIDs resolve to their digest: `HEAD /ipfs/bafkqaaa` is `200`.
 * - Unknown CID or missing block `404`; unparsable CID `400`; other paths
 *   `404`; methods other than GET and HEAD `405`.
 */
export async function startTestGateway (opts: TestGatewayOptions): Promise<TestGateway> {
  const gateway = new TestGatewayServer(opts)
  await gateway.listen(opts.host ?? DEFAULT_TEST_GATEWAY_HOST, opts.port ?? 0)
  return gateway
}
