export { parseTarget, parseCid, defaultName, normalizeGateway, gatewayUrl } from './parse.js'
export type { Target } from './parse.js'
