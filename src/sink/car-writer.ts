/**
 * The CAR file a CAR download writes: a CARv1 header, then one section per
 * block, appended at the end, with the free space checked before each.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { CID } from 'multiformats/cid'
import { varint } from 'multiformats'
import { createWriter, close as closeWriter, headerLength } from '@ipld/car/buffer-writer'
import { fsError, systemCode } from '../core/errors.js'
import { PartialFile } from './partial.js'
import { DiskSpace } from './space.js'

/** The CARv1 header naming `root`. */
export function carHeader (root: CID): Uint8Array {
  const size = headerLength({ roots: [root] })
  return closeWriter(createWriter(new ArrayBuffer(size), { roots: [root], headerSize: size }))
}

/** One CAR section: varint(length) ‖ CID ‖ bytes. */
export function carSection (cid: CID, bytes: Uint8Array): Uint8Array {
  const length = cid.bytes.byteLength + bytes.byteLength
  const prefix = varint.encodingLength(length)
  const out = new Uint8Array(prefix + length)
  varint.encodeTo(length, out, 0)
  out.set(cid.bytes, prefix)
  out.set(bytes, prefix + cid.bytes.byteLength)
  return out
}

/** The size of the file at `path`, or -1 when there is none. */
export async function sizeOf (path: string): Promise<number> {
  try {
    return (await stat(path)).size
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return -1
    throw fsError(err, `look for ${path}`)
  }
}

/**
 * The partial CAR of one download (`<output>.cidget-partial`), written at its
 * end. A CAR declares no size ahead: each piece must fit in the free space as
 * it comes.
 */
export class CarWriter {
  readonly file: PartialFile
  readonly #space: DiskSpace
  #end: number

  private constructor (file: PartialFile, end: number) {
    this.file = file
    this.#space = new DiskSpace(dirname(file.path))
    this.#end = end
  }

  /** Opens the partial CAR of `output`, whose first `end` bytes are kept. */
  static async open (output: string, end: number): Promise<CarWriter> {
    return new CarWriter(await PartialFile.open(output), end)
  }

  /** Where the CAR ends (what is written, durable or not). */
  get end (): number {
    return this.#end
  }

  /** Appends `data` at the end. */
  async append (data: Uint8Array): Promise<void> {
    await this.#space.ensure(data.byteLength)
    await this.file.write(data, this.#end)
    this.#space.wrote(data.byteLength)
    this.#end += data.byteLength
  }

  /** Takes the bytes on disk up to `end` as written (sections found there). */
  keepTo (end: number): void {
    this.#end = end
  }

  /** Cuts the file at `length`. */
  async truncate (length: number): Promise<void> {
    await this.file.truncate(length)
  }

  /** The hex SHA-256 of the whole file. */
  async digest (): Promise<string> {
    const hash = createHash('sha256')
    for await (const chunk of createReadStream(this.file.path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
    return hash.digest('hex')
  }
}
