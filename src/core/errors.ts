/**
 * Every failure cidget reports is a `CidgetError` with a stable `code`.
 * The registry below is the single list of codes: each has a kind (how the
 * retry policy treats it), whether it is retryable, and a "how to solve" line
 * that docs/errors.md's table repeats (a test keeps them in sync).
 */

export type ErrorKind =
  | 'input' // bad target, option or usage: never retried
  | 'timeout' // no bytes for the idle timeout: back off, same gateway
  | 'network' // connection refused/reset before a body: next gateway, same offset
  | 'stream' // connection lost mid-body: resume or restart (threshold)
  | 'http' // an HTTP status that is not a success
  | 'range' // a Range answer that cannot be spliced
  | 'corruption' // bytes that do not match the expected hash
  | 'disk' // disk full: pause, keep the partial
  | 'fs' // any other file-system failure
  | 'state' // the store, leases, unknown ids, invalid transitions
  | 'aborted' // paused or cancelled on request

export interface ErrorSpec {
  kind: ErrorKind
  retryable: boolean
  message: string
  solve: string
}

export const ERROR_CODES = {
  CIDGET_ERR_BAD_TARGET: {
    kind: 'input',
    retryable: false,
    message: 'The target is not a CID, /ipfs/ or /ipns/ path, ipfs:// or ipns:// URL or gateway URL',
    solve: 'Pass a CID (bafy…, Qm…), /ipfs/CID[/path], /ipns/NAME[/path] (a key k51… or a DNSLink domain), ipfs://, ipns:// or https://host/ipfs/CID[/path].'
  },
  CIDGET_ERR_BAD_OPTION: {
    kind: 'input',
    retryable: false,
    message: 'An option has an invalid value',
    solve: 'Check the option against `cidget help <command>`; the message names the option.'
  },
  CIDGET_ERR_NOT_AVAILABLE: {
    kind: 'input',
    retryable: false,
    message: 'This feature is not available in this version',
    solve: 'Use the documented alternative named in the message (for example `--mode path`).'
  },
  CIDGET_ERR_OUTPUT_EXISTS: {
    kind: 'input',
    retryable: false,
    message: 'The output path already exists and does not belong to this download',
    solve: 'Choose another path with -o, remove the file, or pass --force to overwrite it.'
  },
  CIDGET_ERR_OUTPUT_NOT_WRITABLE: {
    kind: 'input',
    retryable: false,
    message: 'The output directory cannot be created or written',
    solve: 'Choose an output path on a writable file system, or fix its permissions.'
  },
  CIDGET_ERR_OUTPUT_IN_USE: {
    kind: 'input',
    retryable: false,
    message: 'Another unfinished download writes to the same output path',
    solve: 'Resume or remove that download (`cidget list`), or choose another path with -o.'
  },
  CIDGET_ERR_OUTSIDE_DIR: {
    kind: 'input',
    retryable: false,
    message: 'The output path is outside the directory downloads are written to',
    solve: 'Give a path relative to that directory (the service\'s or the queue\'s --dir), without "..".'
  },
  CIDGET_ERR_UNAUTHORIZED: {
    kind: 'input',
    retryable: false,
    message: 'The request has no valid token',
    solve: 'Send "Authorization: Bearer <token>" (`cidget token` prints the token `cidget serve` stored next to its state), or set CIDGET_TOKEN.'
  },
  CIDGET_ERR_FOREIGN_ORIGIN: {
    kind: 'input',
    retryable: false,
    message: 'The request comes from a web page of another origin',
    solve: 'Call the service from its own dashboard, or from a program that sends no Origin header (curl, the CLI); a reverse proxy must pass the Host header on.'
  },
  CIDGET_ERR_UNSUPPORTED_MEDIA_TYPE: {
    kind: 'input',
    retryable: false,
    message: 'A state-changing request without "Content-Type: application/json"',
    solve: 'Send "Content-Type: application/json" with every POST and DELETE, also when there is no body.'
  },
  CIDGET_ERR_ADDRESS_REFUSED: {
    kind: 'network',
    retryable: true,
    message: 'A gateway named by an API client leads to a loopback, private or link-local address',
    solve: 'Name a public gateway; the operator can configure local gateways (-g, the config file) or start the service with --allow-local.'
  },
  CIDGET_ERR_TIMEOUT: {
    kind: 'timeout',
    retryable: true,
    message: 'The gateway sent no bytes within the idle timeout',
    solve: 'Raise --timeout, or add faster gateways with -g.'
  },
  CIDGET_ERR_NETWORK: {
    kind: 'network',
    retryable: true,
    message: 'The connection to the gateway failed',
    solve: 'Check the network and the gateway URLs; cidget already tried every gateway it was given.'
  },
  CIDGET_ERR_PROXY_AUTH: {
    kind: 'input',
    retryable: false,
    message: 'The proxy asks for credentials (HTTP 407)',
    solve: 'Put the user and password in the proxy URL (http://user:password@proxy:3128) of --proxy, the config file\'s proxy or HTTPS_PROXY / HTTP_PROXY.'
  },
  CIDGET_ERR_STREAM_RESET: {
    kind: 'stream',
    retryable: true,
    message: 'The connection closed before the whole body arrived',
    solve: 'Run `cidget resume ID`; the partial data is kept.'
  },
  CIDGET_ERR_HTTP_STATUS: {
    kind: 'http',
    retryable: true,
    message: 'The gateway answered with an error status',
    solve: 'The message names the gateway and status; try other gateways with -g.'
  },
  CIDGET_ERR_NOT_FOUND: {
    kind: 'http',
    retryable: false,
    message: 'No gateway has the content',
    solve: 'Check the CID and path; content that nobody provides cannot be fetched.'
  },
  CIDGET_ERR_IPNS_RECORD_INVALID: {
    kind: 'corruption',
    retryable: false,
    message: 'A source sent an IPNS record that does not verify',
    solve: 'Nothing to do: the record is refused and the other sources are used; the message names the source and the check that failed.'
  },
  CIDGET_ERR_NAME_NOT_RESOLVED: {
    kind: 'network',
    retryable: true,
    message: 'No source gave a valid answer for the name',
    solve: 'Check the name; the message says what each gateway, router or DNS resolver answered. Add sources with -g, --router or --dns-resolver.'
  },
  CIDGET_ERR_NAME_LOOP: {
    kind: 'input',
    retryable: false,
    message: 'The name leads back to itself, or through too many names',
    solve: 'Fix the DNSLink or IPNS records so that the chain ends at an /ipfs/ path.'
  },
  CIDGET_ERR_RANGE_MISMATCH: {
    kind: 'range',
    retryable: true,
    message: 'The gateway answered a Range request with a Content-Range that does not match',
    solve: 'Nothing to do: the answer is discarded and another gateway is asked.'
  },
  CIDGET_ERR_RANGE_IGNORED: {
    kind: 'range',
    retryable: true,
    message: 'The gateway ignored the Range request and sent the whole file (HTTP 200)',
    solve: 'Nothing to do: cidget restarts from 0 with that answer and never appends it.'
  },
  CIDGET_ERR_RANGE_NOT_SATISFIABLE: {
    kind: 'range',
    retryable: true,
    message: 'The gateway refused the requested range (HTTP 416)',
    solve: 'Nothing to do: cidget restarts the download from 0.'
  },
  CIDGET_ERR_LENGTH_MISMATCH: {
    kind: 'corruption',
    retryable: true,
    message: 'The body length differs from the declared length',
    solve: 'Nothing to do: the bad data is discarded and another gateway is asked.'
  },
  CIDGET_ERR_HASH_MISMATCH: {
    kind: 'corruption',
    retryable: true,
    message: 'The downloaded bytes do not match the expected SHA-256',
    solve: 'Check --sha256; if it is right, every gateway tried served corrupt data.'
  },
  CIDGET_ERR_BLOCK_INVALID: {
    kind: 'corruption',
    retryable: true,
    message: 'A gateway sent a block whose hash does not match its CID',
    solve: 'Nothing to do: the block is discarded, the gateway dropped for this download, and another asked.'
  },
  CIDGET_ERR_BLOCK_TOO_LARGE: {
    kind: 'corruption',
    retryable: true,
    message: 'A gateway sent a block larger than the 2 MiB limit',
    solve: 'Nothing to do: the answer is cut off and another gateway asked; content with larger blocks cannot be verified.'
  },
  CIDGET_ERR_BLOCK_UNAVAILABLE: {
    kind: 'network',
    retryable: true,
    message: 'No gateway delivered a valid copy of a block',
    solve: 'Run `cidget resume ID` later, or add gateways that have the content with -g.'
  },
  CIDGET_ERR_DAG_INVALID: {
    kind: 'corruption',
    retryable: false,
    message: 'The DAG is malformed or uses a format cidget cannot read',
    solve: 'Check the CID; only UnixFS (dag-pb and raw) content can be written as files.'
  },
  CIDGET_ERR_DAG_LIMIT: {
    kind: 'corruption',
    retryable: false,
    message: 'The DAG exceeds a safety limit (declared size, entries or depth)',
    solve: 'If the content is trusted, raise the limit named in the message (--max-entries, --max-depth, --max-size, or the same keys in the config file).'
  },
  CIDGET_ERR_UNSAFE_NAME: {
    kind: 'corruption',
    retryable: false,
    message: 'A name in the DAG would escape the output directory or is not a valid file name',
    solve: 'Nothing was written outside the output directory; the content is malformed or hostile.'
  },
  CIDGET_ERR_UNSAFE_SYMLINK: {
    kind: 'corruption',
    retryable: false,
    message: 'A symlink in the DAG leads outside the output directory (as written, or on disk through other links) or round a loop',
    solve: 'Pass --skip-symlinks to leave such symlinks out.'
  },
  CIDGET_ERR_UNSAFE_PARTIAL: {
    kind: 'fs',
    retryable: false,
    message: 'The partial file or staging directory is a symlink, not a plain file or directory, or not owned by this user',
    solve: 'Nothing was written through it. Remove <output>.cidget-partial (or a link below a staging directory) if you trust it, or choose another output with -o.'
  },
  CIDGET_ERR_DISK_FULL: {
    kind: 'disk',
    retryable: false,
    message: 'Not enough space on the output file system',
    solve: 'Free space on the output file system, then run `cidget resume ID`; the partial data is kept.'
  },
  CIDGET_ERR_FS: {
    kind: 'fs',
    retryable: false,
    message: 'A file-system operation failed',
    solve: 'Check that the output directory exists and is writable.'
  },
  CIDGET_ERR_STATE: {
    kind: 'state',
    retryable: false,
    message: 'The state store cannot be opened or used',
    solve: 'Check --state / CIDGET_STATE: its directory must exist and be writable.'
  },
  CIDGET_ERR_STATE_UNAVAILABLE: {
    kind: 'state',
    retryable: true,
    message: 'The connection to the state database was lost or could not be made',
    solve: 'Check that the PostgreSQL server named by --state / CIDGET_STATE is up and reachable, then retry; downloads continue from their last recorded progress.'
  },
  CIDGET_ERR_UNKNOWN_DOWNLOAD: {
    kind: 'state',
    retryable: false,
    message: 'No download has this id',
    solve: 'List downloads with `cidget list`.'
  },
  CIDGET_ERR_INVALID_TRANSITION: {
    kind: 'state',
    retryable: false,
    message: 'The download is not in a status that allows this action',
    solve: 'See `cidget status ID`; finished downloads cannot be resumed or paused.'
  },
  CIDGET_ERR_LEASE_HELD: {
    kind: 'state',
    retryable: false,
    message: 'Another process is working on this download',
    solve: 'Wait for it to finish, or run `cidget pause ID`; a dead owner is detected and taken over.'
  },
  CIDGET_ERR_ATTEMPTS_EXHAUSTED: {
    kind: 'state',
    retryable: false,
    message: 'The download gave up after its retry budget',
    solve: 'Run `cidget resume ID` to try again with a fresh budget, or raise --max-resume-attempts.'
  },
  CIDGET_ERR_INTERRUPTED: {
    kind: 'aborted',
    retryable: false,
    message: 'The process working on the download stopped (crash, kill or power loss)',
    solve: 'Run `cidget resume ID` (or `cidget resume --all`); it continues from the last durable byte.'
  },
  CIDGET_ERR_PAUSED: {
    kind: 'aborted',
    retryable: false,
    message: 'The download was paused',
    solve: 'Run `cidget resume ID` to continue.'
  },
  CIDGET_ERR_CANCELLED: {
    kind: 'aborted',
    retryable: false,
    message: 'The download was cancelled',
    solve: 'Start it again with `cidget get`.'
  }
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERROR_CODES

export interface CidgetErrorInit {
  cause?: unknown
  /** The gateway the failure came from, when there is one. */
  gateway?: string
  /** HTTP status, for CIDGET_ERR_HTTP_STATUS. */
  status?: number
  /** Milliseconds the gateway asked to wait (Retry-After). */
  retryAfterMs?: number
  /** Which phase timed out: connect, headers or body. */
  phase?: 'connect' | 'headers' | 'body'
  /** The output path that two downloads would write to (CIDGET_ERR_OUTPUT_IN_USE). */
  output?: string
}

export class CidgetError extends Error {
  readonly code: ErrorCode
  readonly gateway?: string
  readonly status?: number
  readonly retryAfterMs?: number
  readonly phase?: 'connect' | 'headers' | 'body'
  readonly output?: string

  constructor (code: ErrorCode, message?: string, init: CidgetErrorInit = {}) {
    super(message ?? ERROR_CODES[code].message, init.cause === undefined ? undefined : { cause: init.cause })
    this.name = 'CidgetError'
    this.code = code
    if (init.gateway !== undefined) this.gateway = init.gateway
    if (init.status !== undefined) this.status = init.status
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs
    if (init.phase !== undefined) this.phase = init.phase
    if (init.output !== undefined) this.output = init.output
  }

  get kind (): ErrorKind {
    return ERROR_CODES[this.code].kind
  }

  get retryable (): boolean {
    return ERROR_CODES[this.code].retryable
  }
}

export function isCidgetError (err: unknown, code?: ErrorCode): err is CidgetError {
  return err instanceof CidgetError && (code === undefined || err.code === code)
}

const NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT'
])

/** The `code` of an error or of any error in its cause chain. */
export function systemCode (err: unknown): string | undefined {
  let e: unknown = err
  for (let i = 0; i < 5 && e !== undefined && e !== null; i++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && !code.startsWith('CIDGET_')) return code
    e = (e as { cause?: unknown }).cause
  }
  return undefined
}

export function isNetworkCode (code: string | undefined): boolean {
  return code !== undefined && NETWORK_CODES.has(code)
}

/** Turns a file-system error into DISK_FULL or FS, keeping the original as cause. */
export function fsError (err: unknown, what: string): CidgetError {
  if (err instanceof CidgetError) return err
  const code = systemCode(err)
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new CidgetError('CIDGET_ERR_DISK_FULL', `No space left on device while ${what}`, { cause: err })
  }
  // the path asked for, not the disk: an input error (400 from the service), not a failure
  if (code === 'ENAMETOOLONG') {
    return new CidgetError('CIDGET_ERR_OUTPUT_NOT_WRITABLE', `Cannot ${what}: a name in the path is too long for the file system`, { cause: err })
  }
  const detail = err instanceof Error ? err.message : String(err)
  return new CidgetError('CIDGET_ERR_FS', `Cannot ${what}: ${detail}`, { cause: err })
}

/** Any thrown value as a CidgetError (unknown values become CIDGET_ERR_FS/NETWORK where the code says so). */
export function toCidgetError (err: unknown): CidgetError {
  if (err instanceof CidgetError) return err
  const code = systemCode(err)
  if (isNetworkCode(code)) {
    return new CidgetError('CIDGET_ERR_NETWORK', `${code}: ${(err as Error).message}`, { cause: err })
  }
  if (code !== undefined && /^E[A-Z]+$/.test(code)) return fsError(err, 'write the output')
  const detail = err instanceof Error ? err.message : String(err)
  return new CidgetError('CIDGET_ERR_STATE', `Unexpected error: ${detail}`, { cause: err })
}
