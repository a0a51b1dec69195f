/**
 * The public types of the test gateway: its options, the request records it
 * keeps, the faults it injects and the rules that choose them.
 *
 * @module
 */

import type { EventEmitter } from 'node:events'
import type { MemoryBlocks } from '../blocks.js'

/** Default size of each body write: 64 KiB. */
export const DEFAULT_TEST_GATEWAY_CHUNK_SIZE = 64 * 1024
/** Default listening address: loopback only. */
export const DEFAULT_TEST_GATEWAY_HOST = '127.0.0.1'

/** Options of {@link startTestGateway}. */
export interface TestGatewayOptions {
  /** Where the content comes from. The gateway reads it live: blocks added later are served too. */
  blocks: MemoryBlocks
  /** Address to listen on. @default '127.0.0.1' */
  host?: string
  /** Port to listen on; `0` picks a free one (read it from {@link TestGateway.url}). @default 0 */
  port?: number
  /**
   * Bandwidth cap in bytes per second, shared by **all** connections of this
   * gateway (one token bucket). `undefined` means unlimited. Change it later
   * with {@link TestGateway.setMaxBytesPerSecond}.
   * @default undefined
   */
  maxBytesPerSecond?: number
  /** Size of each body write; smaller values give finer `progress` events. @default 65536 */
  chunkSize?: number
  /**
   * IPNS records served at `/ipns/NAME` to `?format=ipns-record` or `Accept:
   * application/vnd.ipfs.ipns-record`, by the name as the request spells it
   * (`k51…`). Change them later with {@link TestGateway.setIpnsRecord}.
   */
  ipnsRecords?: ReadonlyMap<string, Uint8Array>
}

/** Which kind of answer a request asked for; `null` for paths outside `/ipfs/` and unknown formats. */
export type RequestFormat = 'path' | 'raw' | 'car' | 'ipns-record'

/**
 * One request as the gateway saw it. The same object is updated while the
 * response goes out: `status` when the headers are written, `bytesSent` after
 * each body write, and `aborted`/`endedAt` when the response ends (the
 * `'response'` event).
 */
export interface RequestRecord {
  /** 1, 2, 3… in arrival order. */
  id: number
  method: string
  /** The request target as received (path and query, still encoded). */
  url: string
  /** The URL path, percent-decoded, without the query: `/ipfs/CID/sub`. */
  path: string
  format: RequestFormat | null
  /** The `Range` request header, or `null`. */
  range: string | null
  /** The `If-Range` request header, or `null`. */
  ifRange: string | null
  /** Response status; `0` until headers are written (and for `refuse`). */
  status: number
  /** Body bytes written so far (headers excluded). */
  bytesSent: number
  /** The `User-Agent` request header, or `null`. */
  userAgent: string | null
  /** For a CAR answer: the CIDs of the blocks its body carries, in order (a fault may cut it short); otherwise `null`. */
  carBlocks: string[] | null
  /** The type of the fault applied to this request, or `null`. */
  fault: Fault['type'] | null
  /** `true` when the response did not end normally: the client went away, or the gateway reset or refused it. */
  aborted: boolean
  /** `Date.now()` at arrival. */
  startedAt: number
  /** `Date.now()` when the response ended or was aborted; `null` while it is going on. */
  endedAt: number | null
}

/**
 * A fault to inject. Body faults count bytes of **this** response body
 * (after any `Range` is applied).
 *
 * | type | what the client sees | applies to |
 * |---|---|---|
 * | `reset` | headers, `afterBytes` body bytes, then the connection closes | GET |
 * | `stall` | headers, `afterBytes` body bytes, then nothing, connection open | GET |
 * | `flip` | one body byte inverted (`atByte`, default: the middle; for CAR, the middle byte of the middle block) | GET |
 * | `ignore-range` | `200` and the whole body for a `Range` request; for a CAR with `entity-bytes`, the whole entity | requests with `Range`, CAR requests with `entity-bytes` |
 * | `range-not-satisfiable` | `416` with `Content-Range: bytes *\/SIZE` | GET, HEAD |
 * | `status` | that status, optional `Retry-After`, a short text body | any |
 * | `wrong-block` | another valid block's bytes (or the right block mutated) under the requested CID; for CAR the first (root) block is replaced | `raw`, `car` |
 * | `throttle` | this response limited to `bytesPerSecond` (on top of the gateway-wide cap) | GET |
 * | `latency` | a delay of `ms` before the response headers; the request is then served normally | any |
 * | `refuse` | the connection destroyed as soon as the request arrives, no response | any |
 * | `no-length` | no `Content-Length` (chunked transfer encoding) | GET |
 * | `endless` | no `Content-Length` (or `claimLength`, a false one), and after the body zero bytes that never end (until the client goes away) | GET |
 * | `bad-content-range` | `206` whose `Content-Range` start (and end) is off by one from the requested range; the body is the requested bytes | requests with `Range` |
 * | `ignore-scope` | a CAR as if `dag-scope=block` whatever was asked (`entity`, `all`, `entity-bytes`): the path's blocks and the terminal block only | `car` |
 *
 * `reset` and `stall` with `afterBytes` at or past the end of the body send
 * the whole body and then close or stall instead of ending the response.
 * `reset` closes the socket once the bytes are flushed (a FIN, not an RST,
 * so the client reliably receives the first `afterBytes` bytes).
 */
export type Fault =
  | { type: 'reset', afterBytes: number }
  | { type: 'stall', afterBytes: number }
  | { type: 'flip', atByte?: number }
  | { type: 'ignore-range' }
  | { type: 'range-not-satisfiable' }
  | { type: 'status', status: number, retryAfter?: number | string }
  | { type: 'wrong-block' }
  | { type: 'throttle', bytesPerSecond: number }
  | { type: 'latency', ms: number }
  | { type: 'refuse' }
  | { type: 'no-length' }
  | { type: 'endless', claimLength?: number }
  | { type: 'bad-content-range' }
  | { type: 'ignore-scope' }

/**
 * When to inject a {@link Fault}. For each request, rules are tried in
 * order and the first one that matches, can apply to the request (see the
 * table on {@link Fault}), has budget left and wins its probability draw is
 * applied. At most one fault applies per request.
 */
export interface FaultRule {
  fault: Fault
  /** Apply to the first `times` matching requests only. @default unlimited */
  times?: number
  /**
   * Apply with this probability (0–1), drawn from a PRNG seeded with
   * {@link seed}: the same request sequence gets the same faults every run.
   * @default 1
   */
  probability?: number
  /** Seed of this rule's PRNG. @default 1 */
  seed?: number
  /** Every given field must match; an absent `match` matches every request. */
  match?: {
    /** HTTP method, case-insensitive. */
    method?: string
    format?: RequestFormat
    /** A string must equal {@link RequestRecord.path}; a RegExp is tested against it. */
    path?: string | RegExp
    /** `true`: only requests with a `Range` header; `false`: only requests without. */
    ranged?: boolean
    /** Query parameters the request must carry with these values (`{ 'dag-scope': 'all' }`); others may be there too. */
    query?: Record<string, string>
  }
}

/** Events of a {@link TestGateway}; each passes the live {@link RequestRecord}. */
export interface TestGatewayEvents {
  /** A request arrived (before any fault or handling). */
  request: [record: RequestRecord]
  /** A body chunk was written; `record.bytesSent` is up to date. */
  progress: [record: RequestRecord]
  /** The response ended or was aborted; the record is final. */
  response: [record: RequestRecord]
}

/** A running test gateway; see {@link startTestGateway}. */
export interface TestGateway extends EventEmitter<TestGatewayEvents> {
  /** `http://HOST:PORT`, without a trailing slash. */
  readonly url: string
  /**
   * Every request so far, in arrival order. Records are live: they are
   * final once their `'response'` event fired. The gateway only appends, so
   * a test may empty the array (`requests.length = 0`) between phases; ids
   * keep counting.
   */
  readonly requests: RequestRecord[]
  /** Appends a rule (after the existing ones). */
  addFault (rule: FaultRule): void
  /** Replaces all rules; budgets and PRNGs start afresh. */
  setFaults (rules: FaultRule[]): void
  /** Removes all rules. */
  clearFaults (): void
  /** Changes the gateway-wide bandwidth cap; `undefined` removes it. */
  setMaxBytesPerSecond (bytesPerSecond: number | undefined): void
  /** Serves `record` as the IPNS record of `name` from now on (`undefined`: none, a 404). The bytes are sent as they are. */
  setIpnsRecord (name: string, record: Uint8Array | undefined): void
  /** Sum of body bytes sent, over all records in {@link requests} or those `filter` accepts. */
  bytesSent (filter?: (record: RequestRecord) => boolean): number
  /** Stops listening and destroys every open connection, stalled ones included. Idempotent. */
  close (): Promise<void>
}
