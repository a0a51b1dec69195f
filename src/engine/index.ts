export { Downloader, defaultStatePath } from './downloader.js'
export type { DownloaderInit, AddOptions, DownloadJob, GatewayTotals, QueueItem } from './downloader.js'
export { runWorker } from './worker.js'
export type { WorkerOptions, WorkerEvent, WorkerSummary } from './worker.js'
