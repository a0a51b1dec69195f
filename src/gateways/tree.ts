/**
 * Whole subtrees as CAR streams (`dag-scope=all`): a directory, a HAMT shard
 * or any DAG in one request, depth-first, instead of one request per file.
 *
 * The walk stays the one authority on what the DAG is: a stream only brings
 * blocks sooner. Each block in it is hashed against its CID (the pool's CAR
 * reader) and held until the walk's `get()` takes it. Blocks come in the
 * order the walk asks for them (both go depth-first), so little is held: the
 * stream waits while its buffer is full and nobody waits for a block it has
 * not brought yet; when someone does, the oldest blocks nobody took are let
 * go instead (a block the walk skips, one out of the DAG). Nothing in a
 * stream is trusted beyond its hash: what it does not bring (it broke off,
 * stalled, left blocks out, sent them in another order) is fetched the usual
 * way, block by block, and a gateway that refuses such streams, or sends one
 * that lacks blocks of the DAG, is not asked for one again in this download.
 * The bytes are bounded: a stream is cut once it carried what the DAG
 * declares, with room to spare.
 *
 * @module
 */

import type { CID } from 'multiformats/cid'
import { CidgetError } from '../core/errors.js'
import { blockLength, identityBytes, joinBlock, type BlockBytes } from './block.js'
import { CarUnsupportedError, fetchCarTree } from './car.js'
import type { RunScheduler } from './car-runs.js'
import type { Gateway } from './gateway.js'
import { HANDED_ON, NEVER, asError, type PoolBase } from './pool-base.js'

const MiB = 1024 * 1024

/** Every default of the tree streams in one block. */
export const TREE_DEFAULTS = {
  /** Blocks of one stream held until the walk takes them (their bytes and {@link HELD_BLOCK_COST} each). */
  BUFFER_BYTES: 8 * MiB,
  /** A subtree that declares more than this is not streamed whole while several gateways can share it. */
  WINDOW_BYTES: 16 * MiB,
  /** Keys of the blocks a stream brought that it remembers, to tell a repeat from a block still to come. */
  SEEN: 65_536,
  /** A get() gives up on a block a stream has not brought after this many more bytes of it. */
  GIVE_UP_BYTES: 32 * MiB,
  /** A stream stalls when nothing arrives for this many hedge delays while someone waits. */
  STALL_HEDGES: 4,
  /** Small blocks taken lately, kept for the same block asked again (identical files): bytes in all… */
  RECENT_BYTES: 1 * MiB,
  /** …of blocks up to this size. */
  RECENT_BLOCK_BYTES: 64 * 1024,
  /** Room past what the DAG declares (its links' sizes): the framing, and declarations that are a little off. */
  SLACK_BYTES: 1 * MiB
} as const

/**
 * What a held block costs in memory besides its bytes (its key, its map entry,
 * the objects around its bytes), counted against a stream's buffer: a tree of
 * 1 KiB files would otherwise hold a third more than the buffer says.
 */
const HELD_BLOCK_COST = 256

/** Bytes of memory a held block takes, as counted against a stream's buffer. */
function heldCost (bytes: BlockBytes): number {
  return blockLength(bytes) + HELD_BLOCK_COST
}

/** The abort reason of a stream found stalled; its gateway is backed off as for a timeout. */
const STALLED: unique symbol = Symbol('stalled')
/** The abort reason of a stream that kept bringing blocks the walk did not ask for; not an error. */
const ASTRAY: unique symbol = Symbol('astray')

/** What the walk holds of a tree stream it started. */
export interface TreePrefetch {
  /**
   * The stream brings the subtree: it is going (not stalled), or it ended
   * with the whole CAR (what it brought is held or taken). False once it
   * broke off, stalled, was cut, or lacked a block the walk asked for.
   */
  readonly covering: boolean
  /** The walk is in the subtree now (a stream started ahead of it is not waited for before). */
  enter: () => void
  /** The walk left the subtree: the stream stops once no get() waits for it any more. */
  release: () => void
}

interface TreeStream {
  root: CID
  /** Blocks that arrived and were not taken, oldest first. */
  blocks: Map<string, BlockBytes>
  held: number
  /** Keys of the blocks it brought (the latest SEEN of them). */
  seen: Set<string>
  /** Some keys were forgotten: a key not in `seen` may still have come. */
  forgot: boolean
  /** get() calls waiting for a block from it. */
  waiters: number
  /** Their wake-ups, by the block they wait for (woken when it arrives, or all when the stream ends). */
  wanted: Map<string, Set<() => void>>
  /** The stream's own wait for room in its buffer (woken when the walk takes a block or waits on it). */
  room: Set<() => void>
  /** Bytes received at which every waiter looks again whether the stream went astray. */
  checkAt: number
  /** The walk is in its subtree: get() waits for its blocks. */
  active: boolean
  /** The walk left its subtree. */
  released: boolean
  ended: boolean
  /** Ended by the end of the CAR, within the allowance: everything the gateway had to send came. */
  complete: boolean
  stalled: boolean
  /** `now()` of the last block, or of the start. */
  lastArrival: number
  /** Bytes of the blocks it brought. */
  received: number
  gateway: Gateway | undefined
  stop: AbortController
}

export class TreeStreamer {
  readonly #base: PoolBase
  readonly #runs: RunScheduler
  readonly #streams = new Set<TreeStream>()
  /** Small blocks lately taken from a stream (copies), least recently used first. */
  readonly #recent = new Map<string, Uint8Array>()
  #recentBytes = 0
  readonly #bufferBytes: number
  readonly #windowBytes: number

  constructor (base: PoolBase, runs: RunScheduler, opts: { bufferBytes?: number, windowBytes?: number } = {}) {
    this.#base = base
    this.#runs = runs
    this.#bufferBytes = opts.bufferBytes ?? TREE_DEFAULTS.BUFFER_BYTES
    this.#windowBytes = opts.windowBytes ?? TREE_DEFAULTS.WINDOW_BYTES
  }

  /** True when no stream is open (get() need not look). */
  get idle (): boolean {
    return this.#streams.size === 0 && this.#recent.size === 0
  }

  /**
   * Streams the whole DAG of `root` (which declares `declared` bytes: its
   * node and its links' sizes) from one gateway that may serve it; one
   * started `ahead` of the walk is waited for only once entered. Undefined,
   * and nothing starts, when no gateway may, or when the subtree is larger
   * than the window and several gateways can share it (their runs and the
   * streams of its smaller subtrees spread it better).
   */
  start (root: CID, declared: number, signal: AbortSignal, ahead = false): TreePrefetch | undefined {
    if (signal.aborted || identityBytes(root) !== undefined) return undefined
    const able = this.#base.gateways.filter((g) => !g.dropped && g.car !== false && g.tree !== false)
    if (able.length === 0) return undefined
    const healthy = this.#base.gateways.filter((g) => !g.dropped).length
    if (declared > this.#windowBytes && healthy > 1) return undefined
    const stream: TreeStream = {
      root,
      blocks: new Map(),
      held: 0,
      seen: new Set(),
      forgot: false,
      waiters: 0,
      wanted: new Map(),
      room: new Set(),
      checkAt: TREE_DEFAULTS.GIVE_UP_BYTES / 4,
      active: !ahead,
      released: false,
      ended: false,
      complete: false,
      stalled: false,
      lastArrival: this.#base.now(),
      received: 0,
      gateway: undefined,
      stop: new AbortController()
    }
    // streams that broke off, stalled or went astray keep what they brought for the walk (it is not
    // asked for again) up to one buffer in all, the oldest let go first: one such stream per level
    // of a deep tree cannot add up; what the walk then needs of them is fetched alone
    let dead = 0
    for (const other of this.#streams) if (other.ended && !other.complete) dead += other.held
    for (const other of this.#streams) {
      if (dead <= this.#bufferBytes) break
      if (!other.ended || other.complete) continue
      dead -= other.held
      other.blocks.clear()
      other.held = 0
    }
    this.#streams.add(stream)
    const onAbort = (): void => { stream.stop.abort(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    const allowance = Math.ceil(declared * 1.25) + TREE_DEFAULTS.SLACK_BYTES
    this.#stream(stream, allowance).catch(() => {}).finally(() => {
      stream.ended = true
      signal.removeEventListener('abort', onAbort)
      wakeAll(stream)
      this.#base.wake()
    })
    return {
      get covering () { return !stream.stalled && (stream.ended ? stream.complete : !stream.stop.signal.aborted) },
      enter: () => { stream.active = true },
      release: () => {
        stream.released = true
        if (stream.waiters === 0) this.#close(stream)
        else wake(stream.room) // it lets go of what it holds past its buffer, and goes on for the waiters
      }
    }
  }

  async #stream (stream: TreeStream, allowance: number): Promise<void> {
    const signal = stream.stop.signal
    // spread by load and reliability: a stream's pace is the walk's, which says nothing of the gateway's speed
    const gateway = await this.#runs.startRun(signal, (g) => g.tree !== false, false)
    if (gateway === undefined) return
    gateway.streams++
    stream.gateway = gateway
    stream.lastArrival = this.#base.now()
    let carried = 0
    try {
      await this.#runs.streamRequest(gateway, async (onBlock) => {
        carried = await fetchCarTree(this.#base.http, gateway.url, stream.root, allowance, onBlock, {
          signal, maxBlockBytes: this.#base.maxBlockBytes, maxRetryAfterMs: this.#base.maxRetryAfterMs
        })
        return carried
      }, async (key, bytes) => await this.#arrived(stream, key, bytes), signal, 'tree')
      stream.complete = carried < allowance && !signal.aborted
      // more than the DAG declares, with room to spare: blocks out of it, or blocks again
      if (carried >= allowance) this.#unable(gateway, `sent more than the DAG of ${stream.root.toString()} declares; asked block by block`)
    } catch (err) {
      if (signal.reason === STALLED) {
        const error = new CidgetError('CIDGET_ERR_TIMEOUT', `${gateway.url}: the CAR of the DAG of ${stream.root.toString()} stalled`, { gateway: gateway.url })
        this.#base.penalize(gateway, error, stream.root.toString())
        return
      }
      if (signal.aborted) return
      if (err instanceof CarUnsupportedError) {
        this.#unable(gateway, `does not serve whole DAGs as CAR; asked block by block (${err.message})`)
        return
      }
      // a stream that breaks off costs its gateway as any failed request does; what it did not bring is fetched alone
      this.#base.penalize(gateway, asError(err, gateway.url), stream.root.toString())
    }
  }

  /** A verified block of `stream` arrived: held for the walk; returns false for a repeat. */
  async #arrived (stream: TreeStream, key: string, bytes: BlockBytes): Promise<boolean> {
    if (stream.blocks.has(key)) return false
    if (stream.seen.size >= TREE_DEFAULTS.SEEN) {
      stream.seen.delete(stream.seen.values().next().value as string)
      stream.forgot = true
    }
    stream.seen.add(key)
    stream.blocks.set(key, bytes)
    stream.held += heldCost(bytes)
    stream.received += blockLength(bytes)
    stream.lastArrival = this.#base.now()
    // the get() waiting for it (on this stream, or on another that may bring it too)
    for (const other of this.#streams) {
      const waiting = other.wanted.get(key)
      if (waiting !== undefined) wake(waiting)
    }
    if (stream.received >= stream.checkAt) {
      // every so often, all of its waiters look whether it brings anything of theirs (else they give it up)
      stream.checkAt = stream.received + TREE_DEFAULTS.GIVE_UP_BYTES / 4
      wakeAll(stream)
    }
    // the stream waits while its buffer is full and the walk takes what it holds; when the walk
    // waits for a block not here, the oldest it did not take are let go so the stream goes on
    // (a stream the walk left goes on only for the writes still waiting on it: it holds no more than its buffer)
    while (stream.held > this.#bufferBytes) {
      if (stream.waiters > 0 || stream.released) {
        for (const [k, b] of stream.blocks) {
          if (stream.held <= this.#bufferBytes) break
          stream.blocks.delete(k)
          stream.held -= heldCost(b)
        }
        break
      }
      await this.#base.waitForChange(undefined, stream.stop.signal, stream.room)
      stream.lastArrival = this.#base.now() // waiting for room is not stalling
    }
    return true
  }

  /**
   * The block `key` from a tree stream: held, lately taken, or on its way (a
   * stream the walk is inside that did not bring it yet). Undefined when no
   * stream brings it: the caller fetches it the usual way.
   */
  async take (key: string, signal: AbortSignal | undefined): Promise<BlockBytes | undefined> {
    const held = this.#held(key)
    if (held !== undefined) return held
    const stream = this.#awaited(key)
    if (stream === undefined) return undefined
    stream.waiters++
    wake(stream.room) // a stream waiting for room lets the oldest blocks go now, and goes on
    const from = stream.received
    const since = this.#base.now()
    try {
      for (;;) {
        // nothing new for `stall` since the last block, or since this wait began (a stream that waited for room)
        const stall = this.#stallMs()
        const quiet = (): number => Math.max(stream.lastArrival, since)
        const deadline = stall === undefined ? undefined : quiet() + stall
        // woken when the block arrives, when the stream ends or every so often (above), or at the deadline
        let wakers = stream.wanted.get(key)
        if (wakers === undefined) {
          wakers = new Set()
          stream.wanted.set(key, wakers)
        }
        const changed = await this.#base.waitForChange(deadline, signal ?? NEVER, wakers)
        const bytes = this.#held(key)
        if (bytes !== undefined) return bytes
        if (stream.ended || stream.stalled || stream.seen.has(key)) return undefined
        if (stream.received - from > TREE_DEFAULTS.GIVE_UP_BYTES) {
          // it brings other blocks than the walk's, in another order or out of the DAG: it no longer
          // covers the subtree (the next directory gets a stream of its own), and its gateway is not blamed
          stream.stalled = true
          stream.stop.abort(ASTRAY)
          return undefined
        }
        if (!changed && stall !== undefined && this.#base.now() >= quiet() + stall) {
          // nothing for a while, and the walk waits: its gateway is slow or gone; the rest comes another way
          stream.stalled = true
          stream.stop.abort(STALLED)
          return undefined
        }
      }
    } finally {
      stream.waiters--
      if (stream.wanted.get(key)?.size === 0) stream.wanted.delete(key)
      if (stream.waiters === 0 && stream.released) this.#close(stream)
    }
  }

  /** Whether a stream holds `key` now (a get() would take it without a request). */
  holds (key: string): boolean {
    if (this.#recent.has(key)) return true
    for (const stream of this.#streams) if (stream.blocks.has(key)) return true
    return false
  }

  /**
   * Whether a stream the walk has not left brought `key` (held, taken or
   * let go): a subtree whose root came in a stream that then broke off is
   * not asked for whole again, its blocks would come twice.
   */
  brought (key: string): boolean {
    for (const stream of this.#streams) if (!stream.released && stream.seen.has(key)) return true
    return false
  }

  /** Takes `key` if a stream holds it (or took it lately); undefined otherwise. */
  #held (key: string): BlockBytes | undefined {
    const recent = this.#recent.get(key)
    if (recent !== undefined) {
      this.#recent.delete(key)
      this.#recent.set(key, recent) // most recently used last
      return recent
    }
    for (const stream of this.#streams) {
      const bytes = stream.blocks.get(key)
      if (bytes === undefined) continue
      stream.blocks.delete(key)
      const length = blockLength(bytes)
      stream.held -= heldCost(bytes)
      wake(stream.room) // the stream may be waiting for room
      if (length <= TREE_DEFAULTS.RECENT_BLOCK_BYTES) this.#remember(key, bytes)
      return bytes
    }
    return undefined
  }

  /**
   * Keeps a small block taken (the same file may come again): as it is when it
   * has its memory to itself (the CAR reader copies small blocks out of their
   * chunks), else a copy (a view would hold the socket's chunk).
   */
  #remember (key: string, bytes: BlockBytes): void {
    const whole = joinBlock(bytes)
    const copy = whole.byteOffset === 0 && whole.buffer.byteLength === whole.byteLength ? whole : Uint8Array.prototype.slice.call(whole)
    this.#recent.set(key, copy)
    this.#recentBytes += copy.byteLength
    for (const [k, b] of this.#recent) {
      if (this.#recentBytes <= TREE_DEFAULTS.RECENT_BYTES) break
      this.#recent.delete(k)
      this.#recentBytes -= b.byteLength
    }
  }

  /**
   * The stream to wait on for `key`: one the walk is inside, going, that has
   * not brought it. A stream that ended whole without it, where the walk asks
   * for it, lacked blocks of its DAG: its gateway is not asked for one again.
   */
  #awaited (key: string): TreeStream | undefined {
    let awaited: TreeStream | undefined
    for (const stream of this.#streams) {
      if (!stream.active || stream.released || stream.seen.has(key)) continue
      if (!stream.ended && !stream.stalled) awaited ??= stream
      else if (stream.complete && !stream.forgot && stream.gateway !== undefined) {
        this.#unable(stream.gateway, `sent the CAR of the DAG of ${stream.root.toString()} without all its blocks; asked block by block`)
        stream.complete = false
      }
    }
    return awaited
  }

  #unable (gateway: Gateway, reason: string): void {
    if (gateway.tree === false) return
    gateway.tree = false
    this.#base.emit({ type: 'gateway', gateway: gateway.url, state: 'healthy', reason })
  }

  #stallMs (): number | undefined {
    const hedge = this.#base.hedgeDelay()
    return hedge === undefined ? undefined : hedge * TREE_DEFAULTS.STALL_HEDGES
  }

  /** The stream is not wanted any more: stopped, its blocks let go. */
  #close (stream: TreeStream): void {
    if (!this.#streams.delete(stream)) return
    stream.stop.abort(HANDED_ON)
    stream.blocks.clear()
    stream.held = 0
    if (this.#streams.size === 0) {
      this.#recent.clear()
      this.#recentBytes = 0
    }
  }
}

/** Calls every wake-up of `wakers` (each removes itself when its wait ends). */
function wake (wakers: Set<() => void>): void {
  if (wakers.size === 0) return
  for (const waker of [...wakers]) waker()
}

/** Wakes every get() waiting on `stream`, and the stream if it waits for room. */
function wakeAll (stream: TreeStream): void {
  for (const waiting of stream.wanted.values()) wake(waiting)
  wake(stream.room)
}
