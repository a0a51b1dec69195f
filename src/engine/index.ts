export { Downloader, defaultStatePath } from './downloader.js'
export type { DownloaderInit, AddOptions, DownloadJob } from './downloader.js'
