export { Downloader, defaultStatePath } from './downloader.js'
export type { DownloaderInit, AddOptions, DownloadJob, GatewayTotals } from './downloader.js'
