import { open, type FileHandle } from 'node:fs/promises'
import { constants } from 'node:fs'
import type { CID } from 'multiformats/cid'
import * as dagPb from '@ipld/dag-pb'
import * as rawCodec from 'multiformats/codecs/raw'
import { UnixFS } from 'ipfs-unixfs'
import { CidgetError, fsError, systemCode } from '../../core/errors.js'
import { MAX_BLOCK_BYTES, verifyBlock } from '../../gateways/block.js'
import type { Bitmap } from './bitmap.js'

/** Bytes read first from a leaf's range: all zero, it is taken for a hole (never written) and not read further. */
const PROBE_BYTES = 4096

export interface Recovered {
  /** Block numbers (in walk order) whose bytes on disk hash to their CIDs. */
  blocks: number[]
  bytes: number
}

/**
 * After a crash, the leaves an earlier run wrote after its last record are
 * usually still in the partial file (a killed process is not a power cut).
 * This finds them without a request: it walks the file's DAG through the
 * inner nodes that were kept, numbering data-bearing blocks as the download's
 * walk does, and hashes the range of each raw leaf not in `done` against the
 * leaf's CID. The caller fsyncs the file before it counts them as done.
 *
 * It stops at the first inner node that was not kept (the numbers after it
 * cannot be told without fetching it), reads at most the file's allocated
 * bytes beyond `durable`, and takes a range whose first bytes are all zero
 * for a hole. A leaf it does not find is fetched as before.
 */
export async function recoverLeaves (file: string, root: CID, rootBytes: Uint8Array, done: Bitmap, durable: number,
  cached: (cid: CID) => Uint8Array | undefined, signal: AbortSignal): Promise<Recovered> {
  const found: Recovered = { blocks: [], bytes: 0 }
  if (root.code !== dagPb.code) return found
  let fh: FileHandle
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return found
    throw fsError(err, `open ${file}`)
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) return found
    const size = st.size
    // bytes the file holds beyond the recorded ones; nothing to look for when there are none
    let budget = st.blocks * 512 - durable
    if (budget <= 0) return found
    let index = 0

    const read = async (at: number, length: number): Promise<Uint8Array> => {
      const buf = new Uint8Array(length)
      let got = 0
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, at + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      return buf.subarray(0, got)
    }
    const leaf = async (cid: CID, at: number, length: number): Promise<void> => {
      const i = index++
      if (done.has(i) || length === 0 || length > MAX_BLOCK_BYTES || at + length > size || budget <= 0) return
      const probe = await read(at, Math.min(PROBE_BYTES, length))
      if (probe.every(b => b === 0)) return
      const bytes = await read(at, length)
      budget -= length
      try {
        await verifyBlock(cid, bytes)
      } catch (err) {
        if (err instanceof CidgetError && err.code === 'CIDGET_ERR_BLOCK_INVALID') return // torn, or never written
        throw err
      }
      found.blocks.push(i)
      found.bytes += length
    }
    /** One inner node at `at`; false when the walk cannot go on (a node that was not kept). */
    const node = async (bytes: Uint8Array, at: number): Promise<boolean> => {
      if (signal.aborted) throw signal.reason
      let pb: dagPb.PBNode
      let fs: UnixFS
      try {
        pb = dagPb.decode(bytes)
        fs = UnixFS.unmarshal(pb.Data ?? new Uint8Array(0))
      } catch {
        return false // the walk itself says what is wrong with it
      }
      const data = fs.data ?? new Uint8Array(0)
      if (pb.Links.length === 0 || fs.blockSizes.length !== pb.Links.length) {
        index++ // a dag-pb leaf: its bytes cannot be told from its CID without the node
        return pb.Links.length === 0
      }
      if (data.byteLength > 0) index++ // data in an inner node: written with the node, fetched anyway
      let offset = at + data.byteLength
      for (let j = 0; j < pb.Links.length; j++) {
        const child = (pb.Links[j] as dagPb.PBLink).Hash
        const length = Number(fs.blockSizes[j])
        if (child.code === rawCodec.code) {
          await leaf(child, offset, length)
        } else if (child.code === dagPb.code) {
          const kept = cached(child)
          if (kept !== undefined) {
            if (!await node(kept, offset)) return false
          } else if (done.has(index)) {
            index++ // a leaf written in an earlier run, as the walk counts it
          } else {
            return false
          }
        } else {
          return false
        }
        offset += length
      }
      return true
    }
    await node(rootBytes, 0)
    return found
  } finally {
    await fh.close().catch(() => {})
  }
}
