/**
 * The gateway's view of its {@link MemoryBlocks}: resolving `CID/path` to the
 * block it names, and the wrong bytes the `wrong-block` fault sends.
 *
 * @module
 */

import { walkPath } from 'ipfs-unixfs-exporter'
import type { CID } from 'multiformats/cid'
import type { MemoryBlocks, UnixFSStorage } from '../blocks.js'
import { HttpError, errorStatus } from './request.js'

export interface Resolved {
  cid: CID
  /** Every block on the way, from the URL's CID to the terminal one (HAMT shards included). */
  roots: CID[]
}

export class GatewayContent {
  readonly blocks: MemoryBlocks
  /** The same blocks as the UnixFS exporter reads them. */
  readonly store: UnixFSStorage

  constructor (blocks: MemoryBlocks) {
    this.blocks = blocks
    this.store = blocks.asBlockstore()
  }

  /** Walks `cid/segments…`, mapping failures to 404. */
  async resolve (cid: CID, segments: string[], signal: AbortSignal): Promise<Resolved> {
    let last: Resolved = { cid, roots: [cid] }
    try {
      const path = [cid.toString(), ...segments].join('/')
      for await (const entry of walkPath(path, this.store, { signal, yieldSubShards: true })) {
        last = { cid: entry.cid, roots: entry.roots }
      }
    } catch (err) {
      throw new HttpError(errorStatus(err), err instanceof Error ? err.message : String(err))
    }
    if (!this.blocks.has(last.cid)) {
      throw new HttpError(404, `block ${last.cid.toString()} is not in the test blockstore`)
    }
    return last
  }

  /** A different valid block's bytes, or `bytes` mutated when the store has no other block. */
  wrongBytes (cid: CID, bytes: Uint8Array): Uint8Array {
    for (const [other, otherBytes] of this.blocks.entries()) {
      if (!other.multihash.bytes.every((b, i) => cid.multihash.bytes[i] === b) && !sameBytes(otherBytes, bytes)) {
        return otherBytes
      }
    }
    if (bytes.length === 0) return Uint8Array.of(0)
    const mutated = new Uint8Array(bytes)
    mutated[0] = (mutated[0] ?? 0) ^ 0xff
    return mutated
  }
}

function sameBytes (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))
}
