export { NameResolver, MAX_NAME_DEPTH, DEFAULT_SETTLE_MS, type NameResolverInit, type Resolution } from './resolve.js'
export { parseIpnsName, fromSubdomainLabel, isDomain, type IpnsName } from '../target/name.js'
export { fetchIpnsRecord, verifyIpnsRecord, betterRecord, recordUrl, IPNS_RECORD_TYPE, MAX_IPNS_RECORD_BYTES, type IpnsRecordAnswer, type RecordSource } from './ipns.js'
export { dohLookup, systemLookup, lookupDnslink, dnslinkValue, txtData, SYSTEM_RESOLVER, DNS_JSON_TYPE, type TxtLookup } from './dnslink.js'
