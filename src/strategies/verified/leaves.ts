import type { CID } from 'multiformats/cid'
import { blockLength, type BlockBytes } from '../../gateways/block.js'
import type { OutputTree } from '../../sink/tree.js'
import type { DiskSpace } from '../../sink/space.js'
import type { FileHasher } from '../../sink/file-hash.js'
import type { DagReader } from './reader.js'
import { invalid } from './dag.js'

export interface LeafWriterInit {
  tree: OutputTree
  space: DiskSpace
  /** A single file's hash, told of every range written. */
  hasher: FileHasher | undefined
  reader: DagReader
  /** Writes in flight at most. */
  concurrency: number
  signal: AbortSignal
  /** Bytes the DAG declared and not written yet: they must fit in the free space. */
  unwritten: () => number
  /** Block `i` of `length` bytes is written. */
  written: (i: number, length: number) => Promise<void>
  /** A write that fails in the background stops the download. */
  fail: (err: unknown) => void
  /** What to throw once the download stops. */
  stopped: () => unknown
}

/**
 * Writes a walk's data blocks at their offsets, at most `concurrency` at a
 * time, and the leaves of CAR runs as soon as they arrive, wherever the walk
 * is: their bytes (views of the socket's chunks) are not held until the walk
 * gets there.
 */
export class LeafWriter {
  readonly #init: LeafWriterInit
  readonly #inflight = new Set<Promise<void>>()
  /** Leaves written as their runs deliver them, until the walk reaches them: block number → the write. */
  readonly #arriving = new Map<number, Promise<void>>()
  /** Writes taken by the tree whose bytes are not in the file yet. */
  readonly #finishing = new Set<Promise<void>>()

  constructor (init: LeafWriterInit) {
    this.#init = init
  }

  /**
   * Writes block `i`, `data`, at `offset` of `path` (an empty one creates the
   * file). Resolves once the tree took the write (a staging directory's
   * writer thread copies it and goes on in the background; see
   * OutputTree.enqueue); the block counts as written once its bytes are in
   * the file, and a write that fails then stops the download. drain() and
   * settle() wait for these too.
   */
  async write (i: number, path: string, offset: number, data: BlockBytes): Promise<void> {
    const { tree, space } = this.#init
    const length = blockLength(data)
    if (length > 0) await space.ensure(Math.max(length, this.#init.unwritten()))
    const { done } = await tree.enqueue(path, offset, data)
    const finished: Promise<void> = done.then(async () => {
      if (length > 0) space.wrote(length)
      this.#init.hasher?.written(offset, length)
      await this.#init.written(i, length)
    }).finally(() => { this.#finishing.delete(finished) })
    this.#finishing.add(finished)
    finished.catch(this.#init.fail)
  }

  /** Raw leaf `i` (`given`, or fetched), of the size its parent declares, written at `offset` of `path`. */
  async writeLeaf (i: number, cid: CID, path: string, offset: number, declared: number | undefined, given?: Uint8Array): Promise<void> {
    const data = given ?? await this.#init.reader.getLeaf(cid)
    const length = blockLength(data)
    if (declared !== undefined && length !== declared) throw invalid(cid, `holds ${length} bytes where its parent declares ${declared}`)
    await this.write(i, path, offset, data)
  }

  /**
   * Writes leaf `i` (a raw leaf of `size` bytes at `at` in `path`) as soon as
   * its run delivers it. The walk awaits the write when it reaches the leaf.
   */
  onArrival (i: number, cid: CID, path: string, at: number, size: number): void {
    const task = this.writeLeaf(i, cid, path, at, size)
    task.catch(this.#init.fail) // the download stops at once, as when the walk's own write fails; the walk reads the outcome too
    this.#arriving.set(i, task)
  }

  /** The write of leaf `i` started on its arrival, if any (the walk takes it once). */
  take (i: number): Promise<void> | undefined {
    const arrival = this.#arriving.get(i)
    this.#arriving.delete(i)
    return arrival
  }

  /** Runs `task` with at most `concurrency` tasks in flight. */
  async dispatch (task: () => Promise<void>): Promise<void> {
    while (this.#inflight.size >= this.#init.concurrency) await Promise.race(this.#inflight)
    if (this.#init.signal.aborted) throw this.#init.stopped()
    const p: Promise<void> = task().catch(this.#init.fail).finally(() => { this.#inflight.delete(p) })
    this.#inflight.add(p)
  }

  /** Waits for every write: the walk reached every leaf it planned. */
  async drain (): Promise<void> {
    while (this.#inflight.size > 0) await Promise.race(this.#inflight)
    await Promise.all(this.#arriving.values())
    await Promise.all(this.#finishing)
  }

  /** Waits for every write to end, however it ends. */
  async settle (): Promise<void> {
    await Promise.allSettled([...this.#inflight, ...this.#arriving.values()])
    await Promise.allSettled(this.#finishing)
  }
}
