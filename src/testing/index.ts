/**
 * `cidget/testing`: a fault-injecting IPFS HTTP gateway and content builders,
 * for testing code that downloads from gateways (cidget's own tests, its
 * `demo` command and benchmarks use the same server).
 *
 * @example
 * ```ts
 * import { MemoryBlocks, addFile, seededBytes, startTestGateway } from 'cidget/testing'
 *
 * const blocks = new MemoryBlocks()
 * const cid = await addFile(blocks, seededBytes(4 << 20))
 * const gateway = await startTestGateway({ blocks, maxBytesPerSecond: 8 << 20 })
 * gateway.addFault({ fault: { type: 'status', status: 503, retryAfter: 1 }, times: 1 })
 * // fetch(`${gateway.url}/ipfs/${cid}`) → 503 once, then the file
 * await gateway.close()
 * ```
 *
 * @module
 */

export {
  MemoryBlocks,
  seededBytes,
  addFile,
  addDirectory,
  loadCar,
  IDENTITY_CODE
} from './blocks.js'
export type { ImporterOptions, UnixFSStorage } from './blocks.js'

export {
  startTestGateway,
  seededRandom,
  DEFAULT_TEST_GATEWAY_CHUNK_SIZE,
  DEFAULT_TEST_GATEWAY_HOST
} from './gateway.js'
export type {
  TestGateway,
  TestGatewayOptions,
  TestGatewayEvents,
  RequestRecord,
  RequestFormat,
  Fault,
  FaultRule
} from './gateway.js'

export { startTestRouter, startTestDnsResolver } from './names.js'
export type { TestRouter, TestDnsResolver, NameRequestRecord, NameServerFault } from './names.js'

export { startTestProxy } from './proxy.js'
export type { TestProxy, TestProxyOptions, ProxyRequestRecord } from './proxy.js'
