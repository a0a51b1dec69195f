/**
 * Body streams: file content read a window at a time, bytes regrouped into
 * equal writes, and the never-ending body of the `endless` fault.
 *
 * @module
 */

/** Bytes of file content asked of the exporter at a time; see {@link windowed}. */
const CONTENT_WINDOW = 1024 * 1024

/**
 * Reads `[offset, offset + length)` as a series of 1 MiB `content()` calls.
 *
 * ipfs-unixfs-exporter 16's `content()` walks the whole requested range
 * eagerly into an unbounded queue, copying every block, whatever the pace of
 * its reader: one call for a 512 MiB file grew the RSS by 550 MiB. Asking for
 * one window at a time keeps what is read ahead to about a window, so a slow
 * client (or a throttle) holds back the DAG walk as well as the socket.
 */
export async function * windowed (
  offset: number,
  length: number,
  content: (offset: number, length: number) => AsyncIterable<Uint8Array>
): AsyncGenerator<Uint8Array> {
  const end = offset + length
  for (let at = offset; at < end; at += CONTENT_WINDOW) {
    yield * content(at, Math.min(CONTENT_WINDOW, end - at))
  }
}

/** Regroups a byte stream into pieces of exactly `size` bytes (the last may be shorter). */
export async function * rechunk (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = []
  let pendingLength = 0
  for await (const piece of source) {
    if (piece.length === 0) continue
    let bytes = piece
    if (pendingLength > 0) {
      pending.push(piece)
      pendingLength += piece.length
      if (pendingLength < size) continue
      bytes = Buffer.concat(pending, pendingLength)
      pending = []
      pendingLength = 0
    }
    let offset = 0
    while (bytes.length - offset >= size) {
      yield bytes.subarray(offset, offset + size)
      offset += size
    }
    if (offset < bytes.length) {
      pending = [bytes.subarray(offset)]
      pendingLength = bytes.length - offset
    }
  }
  if (pendingLength > 0) yield pending.length === 1 && pending[0] !== undefined ? pending[0] : Buffer.concat(pending, pendingLength)
}

/** `body`, then zero bytes in pieces of `piece` bytes, without end. */
export async function * endless (body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, piece: number): AsyncIterable<Uint8Array> {
  yield * body
  const zeros = new Uint8Array(piece)
  while (true) yield zeros
}
