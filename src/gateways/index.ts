export { HttpClient } from './http.js'
export type { HttpClientInit, HttpResponse } from './http.js'
export { GatewayPool, POOL_DEFAULTS, type GatewayPoolInit, type GatewayStats, type PoolEvent } from './pool.js'
export { MAX_BLOCK_BYTES, fetchRawBlock, verifyBlock, identityBytes, checkMultihash, type FetchRawBlockOptions } from './block.js'
