/**
 * A download's first bytes streamed before its DAG is known: one CAR of an
 * entity's byte range brings its root, the inner nodes on the way and the
 * first leaves in one request instead of one round trip per level.
 *
 * @module
 */

import type { CID } from 'multiformats/cid'
import type { CidgetError } from '../core/errors.js'
import { blockKey, blockLength, checkMultihash, identityBytes, type BlockBytes } from './block.js'
import { CarUnsupportedError, type RunRange } from './car.js'
import type { RunScheduler } from './car-runs.js'
import { HANDED_ON, NEVER, asError, type PoolBase } from './pool-base.js'

/**
 * The first bytes of an entity streamed before its DAG is known (see
 * `prefetchEntity`): its root, the inner nodes on the way and the first
 * leaves, in one request instead of one round trip per level.
 */
export interface EntityStream {
  /** Verified blocks that arrived and were not taken yet. */
  blocks: Map<string, BlockBytes>
  /** Blocks the caller said it will ask for from this stream: key → times. */
  wanted: Map<string, number>
  done: boolean
  /** The invalid or oversized block that ended the stream (and dropped its gateway), if one did. */
  error: CidgetError | undefined
  /** Ends the request: with the download, or (reason HANDED_ON) once nothing is waited for from it. */
  stop: AbortController
}

/** What a caller of `prefetchEntity` tells the pool while the stream runs. */
export interface EntityPrefetch {
  /**
   * The caller will ask for `cid` (once more), and the stream carries it: a
   * get() of it waits for the stream (a hedge delay at most) rather than
   * asking a gateway. A get() of a block not expected takes it from the
   * stream only if it is already there.
   */
  expect: (cid: CID) => void
}

/** The pool's one entity stream, and the blocks it brought. */
export class EntityPrefetcher {
  /** The stream started, if one was. */
  current: EntityStream | undefined
  readonly #base: PoolBase
  readonly #runs: RunScheduler

  constructor (base: PoolBase, runs: RunScheduler) {
    this.#base = base
    this.#runs = runs
  }

  /**
   * Streams bytes `range` of `entity` as one CAR from one gateway, before
   * anything of its DAG is known: its root, the inner nodes on the way and
   * the leaves of those bytes come in one request instead of one round trip
   * per level. Every block is verified against its own CID as it arrives and
   * is kept until a get() takes it; `entity` itself is expected, and the
   * caller says which other blocks it will ask for ({@link EntityPrefetch.expect}).
   * Best effort: whatever the stream does not bring in time (an error, a slow
   * or stalled gateway, one that does not serve it) is fetched the usual
   * way, the stream is cut once nothing is waited for from it, and only an
   * invalid block counts against the gateway. One such stream per pool.
   *
   * @returns undefined, and nothing starts, when no gateway may serve CAR ranges or one was started already
   */
  prefetchEntity (entity: CID, range: RunRange, signal: AbortSignal): EntityPrefetch | undefined {
    if (signal.aborted || this.current !== undefined || identityBytes(entity) !== undefined ||
      !this.#base.gateways.some((g) => !g.dropped && g.car !== false)) return undefined
    checkMultihash(entity)
    const stream: EntityStream = {
      blocks: new Map(),
      wanted: new Map([[blockKey(entity), 1]]),
      done: false,
      error: undefined,
      stop: new AbortController()
    }
    this.current = stream
    const onAbort = (): void => { stream.stop.abort(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    const streaming = async (): Promise<void> => {
      const gateway = await this.#runs.startRun(signal)
      if (gateway === undefined) return
      // what is kept for get(): the range's bytes twice over at most (a gateway that sends more than
      // the range, up to the CAR allowance, is not held in memory); a block asked for is always kept
      const keep = 2 * (range.to - range.from + 1)
      let kept = 0
      try {
        await this.#runs.carRequest(gateway, entity, range, undefined, (key, bytes) => {
          const length = blockLength(bytes)
          if (kept + length > keep && !stream.wanted.has(key)) return false
          kept += length
          stream.blocks.set(key, bytes)
          this.#base.wake() // a get() may wait for it
          return true
        }, stream.stop.signal)
      } catch (err) {
        // a gateway may refuse ranges of what is not a file, or not have it: the usual requests find out
        if (signal.aborted || err instanceof CarUnsupportedError) return
        const error = asError(err, gateway.url)
        // a 404 (`skip`) is not counted here: the usual requests find out what the gateway lacks
        if (this.#base.penalize(gateway, error, entity.toString()).gateway === 'drop') stream.error = error
      } finally {
        if (gateway.runs === 0) this.#runs.split()
      }
    }
    streaming().catch(() => {}).finally(() => {
      // blocks not taken yet stay (at most twice the range, see `keep`): the walk may get to them later
      stream.done = true
      signal.removeEventListener('abort', onAbort)
      this.#base.wake()
    })
    return {
      expect: (cid) => {
        if (stream.done || identityBytes(cid) !== undefined) return
        const key = blockKey(cid)
        stream.wanted.set(key, (stream.wanted.get(key) ?? 0) + 1)
      }
    }
  }

  /** A block of the entity stream: there, or coming (if expected, waited for a hedge delay at most); undefined otherwise. */
  async fromEntity (stream: EntityStream, key: string, signal: AbortSignal | undefined): Promise<BlockBytes | undefined> {
    let deadline: number | undefined
    for (;;) {
      const bytes = stream.blocks.get(key)
      if (bytes !== undefined) {
        // taken for the last time it was expected: let go
        if (!unwant(stream, key)) stream.blocks.delete(key)
        return bytes
      }
      if (stream.done || !stream.wanted.has(key)) return undefined
      // a block is waited for a hedge delay at most: then it is asked for the usual way (a slow
      // gateway does not hold the start of the file), and a stream nobody waits for any more is cut
      const delay = this.#base.hedgeDelay()
      if (delay !== undefined) deadline ??= this.#base.now() + delay
      if (!await this.#base.waitForChange(deadline, signal ?? NEVER)) {
        unwant(stream, key)
        if (stream.wanted.size === 0) stream.stop.abort(HANDED_ON)
        return undefined
      }
    }
  }
}

/** One expectation of `key` from the entity stream met or given up; true while more remain. */
function unwant (stream: EntityStream, key: string): boolean {
  const wanted = stream.wanted.get(key) ?? 0
  if (wanted > 1) {
    stream.wanted.set(key, wanted - 1)
    return true
  }
  stream.wanted.delete(key)
  return false
}
