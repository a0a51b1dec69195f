export { parseTarget, parseCid, defaultName, normalizeGateway, gatewayUrl } from './parse.js'
export { parseIpnsName, fromSubdomainLabel, isDomain, type IpnsName } from './name.js'
export type { Target } from './parse.js'
