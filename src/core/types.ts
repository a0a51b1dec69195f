export const STATUSES = ['pending', 'in_progress', 'resuming', 'paused', 'success', 'failed', 'cancelled'] as const
export type DownloadStatus = typeof STATUSES[number]

/** path: HTTP Range; verified: CID-checked blocks written as files; car: CID-checked blocks written as a CARv1. */
export const MODES = ['path', 'verified', 'car'] as const
export type Mode = typeof MODES[number]

/** Statuses in which a download is being worked on (and holds a lease). */
export const ACTIVE_STATUSES: readonly DownloadStatus[] = ['in_progress', 'resuming']
/** Statuses from which `resume` continues the download. */
export const RESUMABLE_STATUSES: readonly DownloadStatus[] = ['pending', 'paused', 'failed', 'in_progress', 'resuming']
/** Statuses that end a download. */
export const FINAL_STATUSES: readonly DownloadStatus[] = ['success', 'failed', 'cancelled']

/** One row of `ipfs_downloads`. Sizes are bytes; times are milliseconds since the epoch. */
export interface DownloadRecord {
  id: number
  /** The CID as given (normalised to its string form). */
  cid: string
  /** Path inside the CID, '' for the root ("/a/b.bin" otherwise). */
  path: string
  /** The target as the user typed it. */
  target: string
  /** Absolute output path (the final name). */
  output: string
  mode: Mode
  /** Gateways for this download, in order of preference (base URLs). */
  gateways: string[]
  /** The gateway that served the latest bytes. */
  gateway: string | null
  /** Total size once known. */
  size: number | null
  /** SHA-256 (hex) the user expects, if given. */
  expectedSha256: string | null
  status: DownloadStatus
  /** Fetch attempts made (each request for the body counts). */
  attempts: number
  lastAttempt: number | null
  /** Bytes durable in the partial file (fsynced), or the final size on success. */
  currentSize: number
  /** SHA-256 (hex) of the finished file. */
  hash: string | null
  /** Strong ETag of the content, used for If-Range. */
  etag: string | null
  error: string | null
  errorCode: string | null
  priority: number
  createdAt: number
  updatedAt: number
  completedAt: number | null
  leaseOwner: string | null
  leaseExpires: number | null
  /** A pause or cancel requested by another process, acted on by the lease holder. */
  control: 'pause' | 'cancel' | null
  /**
   * For a download of an /ipns/ name: the name and the path after it (`/ipns/example.org/a.bin`).
   * `cid` and `path` are then what it resolved to when a run first started ('' and '' before),
   * and a resume continues that CID.
   */
  name: string | null
  /** The sequence (decimal) of the name's IPNS record, when the resolution went through one. */
  nameSequence: string | null
  /** That record's validity (RFC 3339). */
  nameValidity: string | null
  /** When the name was resolved (ms since the epoch). */
  nameResolvedAt: number | null
  /** An update: the id of the earlier download whose output this one brings to a newer version. */
  updateOf: number | null
  /** A finished update: what it kept, fetched, removed and carried over. */
  updateReport: UpdateReport | null
  /** This download's own bandwidth limit in bytes per second (on top of the process's), or null. */
  limitRate: number | null
}

/** What an update did to the output (see {@link DownloadRecord.updateOf}). */
export interface UpdateReport {
  /** Files of the new version found whole in the old output, checked against their CIDs and kept (hard-linked, or copied). */
  keptFiles: number
  keptBytes: number
  /** Bytes of changed files taken from the old copy (each leaf checked against its CID). */
  reusedBytes: number
  /** Bytes fetched: the data of the new version not found in the old output. */
  fetchedBytes: number
  /** Entries of the old version that the new one does not have: removed (at most 100 named, `removedCount` in all). */
  removed: string[]
  removedCount: number
  /** Files in the old output that were never part of it (added by hand): carried over (at most 100 named). */
  carried: string[]
  carriedCount: number
  /**
   * The old version's directories could not be read (no gateway has them any more, or its download
   * was removed): its entries that the new version lacks could not be told from yours, and were
   * carried over too, rather than deleted.
   */
  previousUnknown: boolean
  /** The new version is complete (then swapped in); false while it is assembled. */
  complete: boolean
}

/** What a caller supplies to create a record. */
export interface NewDownload {
  cid: string
  path: string
  target: string
  output: string
  mode: Mode
  gateways: string[]
  expectedSha256?: string | null
  size?: number | null
  priority?: number
  /** A download of an /ipns/ name (see {@link DownloadRecord.name}); `cid` is '' until a run resolves it. */
  name?: string | null
  /** Sets {@link DownloadRecord.updateOf}. */
  updateOf?: number | null
  /** A name resolved already (an update decided on it): its record's sequence and validity, and when. */
  nameSequence?: string | null
  nameValidity?: string | null
  nameResolvedAt?: number | null
}
