/**
 * cidget: resumable, verifying downloads of IPFS content over HTTP gateways.
 * The library API; the test gateway is in `cidget/testing`.
 */
export { Downloader, defaultStatePath, runWorker, clearDownloads, CLEARABLE_STATUSES } from './engine/index.js'
export type { ClearableStatus, ClearReport } from './engine/index.js'
export type { DownloaderInit, AddOptions, DownloadJob, QueueItem, WorkerOptions, WorkerEvent, WorkerSummary, StreamOptions, StreamOutcome } from './engine/index.js'
export { CidgetError, ERROR_CODES, isCidgetError } from './core/errors.js'
export type { ErrorCode, ErrorKind } from './core/errors.js'
export { DEFAULTS, DEFAULT_GATEWAYS } from './core/defaults.js'
export { DEFAULT_POLICY } from './core/policy.js'
export type { DownloadPolicy } from './core/policy.js'
export { retryDelay, parseRetryAfter } from './core/retry.js'
export type { CidgetEvents, ProgressEvent, StatusEvent, RetryEvent, ResolvedEvent } from './core/events.js'
export { STATUSES, MODES } from './core/types.js'
export type { DownloadRecord, DownloadStatus, Mode } from './core/types.js'
export { parseTarget, defaultName, normalizeGateway } from './target/index.js'
export type { Target } from './target/index.js'
export { openStore, SqliteStore, PostgresStore } from './store/index.js'
export type { Store, ListOptions } from './store/index.js'
export { NameResolver, type NameResolverInit, type Resolution } from './names/index.js'
export { resolveProxy, type ProxySettings } from './gateways/proxy.js'
