/**
 * Every default in one block. The names follow the original specification
 * (MAX_RESUME_ATTEMPTS, TIMEOUT_MS, …); each is overridable through the
 * library options, `~/.cidget/config.json`, `CIDGET_*` variables and flags.
 */
export const DEFAULTS = {
  /** Resumes of one download (stream resets, timeouts mid-body) before it is `failed`. */
  MAX_RESUME_ATTEMPTS: 3,
  /** Retries per gateway for network errors and timeouts. */
  MAX_RETRY_ATTEMPTS: 3,
  /** Gateway switches after a corrupt download (hash mismatch) before `failed`. */
  MAX_CORRUPTION_SWITCHES: 2,
  /** Idle timeout: the longest gap without a byte (connect, headers or body), not a total. */
  TIMEOUT_MS: 30_000,
  /** First backoff delay; doubles per attempt (1 s, 2 s, 4 s). */
  INITIAL_BACKOFF_MS: 1_000,
  BACKOFF_MULTIPLIER: 2,
  /** No single backoff wait exceeds this. */
  MAX_BACKOFF_MS: 30_000,
  /** ± share of each backoff delay drawn at random. */
  BACKOFF_JITTER: 0.2,
  /** Longest wait a Retry-After header can impose. */
  MAX_RETRY_AFTER_MS: 60_000,
  /** After a stream reset: resume if at least this share is done, else restart from 0. */
  RESUME_THRESHOLD: 0.5,
  /**
   * Bytes written between fsyncs; progress is recorded after each fsync. A tree's checkpoint is a
   * syncfs of the file system (a process started for it): every 8 MiB, that cost the 1,000 × 1 MiB
   * tree 11.5 s where every 64 MiB took 7.0–7.7 s on a 2-core VM.
   */
  SYNC_INTERVAL_BYTES: 64 * 1024 * 1024,
  /** Longest time between fsyncs while bytes arrive. */
  SYNC_INTERVAL_MS: 1_000,
  /** A lease lasts this long without a heartbeat. */
  LEASE_MS: 30_000,
  /** Heartbeat period: renews the lease and picks up pause/cancel requests from other processes. */
  HEARTBEAT_MS: 2_000,
  /** Concurrent downloads in one Downloader. */
  CONCURRENCY: 4,
  /** Verified mode: deepest DAG node below the root. */
  MAX_DAG_DEPTH: 256,
  /** Verified mode: files, directories and links in one download, the root included (a tree of millions of files fits). */
  MAX_DAG_ENTRIES: 10_000_000,
  /** Verified mode: total size a DAG may declare (16 TiB). */
  MAX_DAG_SIZE: 16 * 1024 ** 4,
  /** Verified mode: block requests in flight. */
  BLOCK_CONCURRENCY: 16,
  /** Bytes a download leaves free on the output's file system: it pauses with CIDGET_ERR_DISK_FULL rather than use them. */
  DISK_RESERVE_BYTES: 1024 * 1024,
  /** Bytes written between two looks at the free space (statfs) while a download writes. */
  DISK_RECHECK_BYTES: 64 * 1024 * 1024,
  /**
   * Path mode: body bytes after which the size the CID's DAG declares is looked up (one raw request
   * for the root), so that an answer longer than it is cut off whatever length it claims; an answer
   * without a length is checked from its first byte.
   */
  LENGTH_CHECK_BYTES: 64 * 1024 * 1024,
  /** Suffix of the partial file next to the output. */
  PARTIAL_SUFFIX: '.cidget-partial'
} as const

/**
 * Public gateways that serve path and trustless responses. Capabilities are
 * learned at run time; the seed's cloudflare-ipfs.com gateway now forwards to
 * ipfs.io, so it is not listed twice.
 */
export const DEFAULT_GATEWAYS: readonly string[] = [
  'https://ipfs.io',
  'https://dweb.link',
  'https://trustless-gateway.link',
  'https://4everland.io'
]

/** Delegated routers (Delegated Routing V1 HTTP API) asked for IPNS records, beside the gateways. */
export const DEFAULT_ROUTERS: readonly string[] = [
  'https://delegated-ipfs.dev'
]

/** DNS-over-HTTPS resolvers (JSON API) asked, in order, for DNSLink records. */
export const DEFAULT_DNS_RESOLVERS: readonly string[] = [
  'https://cloudflare-dns.com/dns-query',
  'https://dns.google/resolve'
]
