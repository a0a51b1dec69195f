/**
 * Hostile DAGs for the decoding properties: real blocks built with
 * ipfs-unixfs-importer (files in several layouts, dag-pb and raw leaves, a
 * directory tree, a sharded directory, a symlink), mutated byte by byte or field
 * by field, and re-addressed so that they pass verification (a hostile DAG is
 * hash-consistent). Also the smallest context the verified walks run in.
 */
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced, trickle } from 'ipfs-unixfs-importer/layout'
import { MemoryBlocks, addFile, addDirectory, seededBytes } from '../../src/testing/index.js'
import { verifyBlock } from '../../src/gateways/block.js'
import { DEFAULT_DAG_LIMITS, type DagLimits, type VerifiedContext } from '../../src/strategies/verified/index.js'
import type { BlockSource } from '../../src/strategies/verified/reader.js'
import { DEFAULT_POLICY } from '../../src/core/policy.js'
import type { ErrorCode } from '../../src/core/errors.js'
import type { DownloadRecord } from '../../src/core/types.js'
import type { Store } from '../../src/store/store.js'
import { Journal } from '../../src/engine/journal.js'
import type { HttpClient } from '../../src/gateways/http.js'
import { settleWithin, expectDeliberate } from './fc.js'

/** Longest a single call may take (the walks write and fsync small files). */
export const TIME_BOUND_MS = 10_000

export interface Block {
  cid: CID
  bytes: Uint8Array
}

export interface Fixture {
  /** Every block, and every mutated block put since. */
  blocks: MemoryBlocks
  /** The blocks built, dag-pb and raw. */
  all: Block[]
  /** Roots of whole DAGs, whose inner blocks can be mutated in place: files, then `top` and `sharded`. */
  roots: CID[]
  /** A directory with subdirectories, files, a symlink, an empty file. */
  top: CID
  /** A HAMT-sharded directory of 12 files. */
  sharded: CID
  /** A file of 20 KiB in 1 KiB raw leaves, 4 links per node: its bytes and root. */
  file: { cid: CID, data: Uint8Array }
}

function pbNode (fs: UnixFS, links: dagPb.PBLink[] = []): Uint8Array {
  return dagPb.encode(dagPb.prepare({ Data: fs.marshal(), Links: links }))
}

async function put (blocks: MemoryBlocks, bytes: Uint8Array, code: number, version: 0 | 1 = 1, hasher: typeof sha256 | typeof sha512 = sha256): Promise<CID> {
  const digest = await hasher.digest(bytes)
  return blocks.put(version === 0 ? CID.createV0(await sha256.digest(bytes)) : CID.createV1(code, digest), bytes)
}

let built: Promise<Fixture> | undefined

/** The blocks, built once per test file. */
export async function fixture (): Promise<Fixture> {
  built ??= build()
  return await built
}

async function build (): Promise<Fixture> {
  const blocks = new MemoryBlocks()
  const kib = (n: number): number => n * 1024
  const data = seededBytes(kib(20) + 7, 11)
  const file = await addFile(blocks, data, { chunker: fixedSize({ chunkSize: 1024 }), layout: balanced({ maxChildrenPerNode: 4 }) })
  const trickled = await addFile(blocks, seededBytes(kib(9), 12), { chunker: fixedSize({ chunkSize: 1024 }), rawLeaves: false, cidVersion: 0, layout: trickle({ maxChildrenPerNode: 3, layerRepeat: 1 }) })
  const pbLeaves = await addFile(blocks, seededBytes(kib(5), 13), { chunker: fixedSize({ chunkSize: 2048 }), rawLeaves: false, leafType: 'raw' })
  // leaves addressed by sha2-512
  const sha512Leaves = await Promise.all([0, 1, 2].map(async i => await put(blocks, seededBytes(1000, 40 + i), rawCodec.code, 1, sha512)))
  const sha512File = await put(blocks, pbNode(new UnixFS({ type: 'file', blockSizes: [1000n, 1000n, 1000n] }), sha512Leaves.map(Hash => ({ Hash, Tsize: 1000 }))), dagPb.code)
  const tree = await addDirectory(blocks, [
    { path: 'a.txt', content: new TextEncoder().encode('hello') },
    { path: 'sub/b.bin', content: seededBytes(kib(3), 15) },
    { path: 'sub/deeper/c.bin', content: seededBytes(300, 16) },
    { path: 'empty' }
  ], { chunker: fixedSize({ chunkSize: 1024 }) })
  const sharded = await addDirectory(blocks, Array.from({ length: 12 }, (_, i) => ({ path: `f${i}.txt`, content: seededBytes(40 + i, 20 + i) })), { shardSplitThresholdBytes: 1 })
  // nodes the importer does not make: a symlink, a file with inline data and links, an empty file
  const link = await put(blocks, pbNode(new UnixFS({ type: 'symlink', data: new TextEncoder().encode('a.txt') })), dagPb.code)
  const leaf = await put(blocks, seededBytes(500, 30), rawCodec.code)
  const mixed = await put(blocks, pbNode(new UnixFS({ type: 'file', data: seededBytes(100, 31), blockSizes: [500n] }), [{ Hash: leaf, Tsize: 500 }]), dagPb.code)
  const empty = await put(blocks, pbNode(new UnixFS({ type: 'file' })), dagPb.code)
  const top = await put(blocks, pbNode(new UnixFS({ type: 'directory' }), [
    ...dagPb.decode(blocks.get(tree)).Links,
    { Name: 'link', Hash: link, Tsize: 10 },
    { Name: 'mixed', Hash: mixed, Tsize: 700 },
    { Name: 'zero', Hash: empty, Tsize: 10 }
  ]), dagPb.code)
  return {
    blocks,
    all: [...blocks.entries()].map(([cid, bytes]) => ({ cid, bytes })),
    roots: [file, trickled, pbLeaves, sha512File, top, sharded],
    top,
    sharded,
    file: { cid: file, data }
  }
}

/** One edit of a block's bytes; positions are taken modulo the length. */
export type ByteEdit =
  | { op: 'flip', at: number, bit: number }
  | { op: 'set', at: number, value: number }
  | { op: 'truncate', at: number }
  | { op: 'extend', bytes: Uint8Array }
  | { op: 'insert', at: number, bytes: Uint8Array }
  | { op: 'delete', at: number, length: number }
  | { op: 'duplicate', at: number, length: number }
  | { op: 'graft', at: number, from: number, start: number, length: number }

const byteEdit: fc.Arbitrary<ByteEdit> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.oneof(fc.constantFrom(0, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12, 0x18, 0x20), fc.nat(255)) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 80 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('graft' as const), at: fc.nat(), from: fc.nat(), start: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }) }
)

/**
 * One edit of a decoded node, re-encoded afterwards: reaches the checks behind
 * the parsers (sizes, types, names, links) that random bytes rarely get past.
 */
export type FieldEdit =
  | { op: 'blockSize', index: number, value: bigint }
  | { op: 'type', value: 'raw' | 'directory' | 'file' | 'metadata' | 'symlink' | 'hamt-sharded-directory' }
  | { op: 'data', bytes: Uint8Array | undefined }
  | { op: 'name', index: number, name: string }
  | { op: 'drop', index: number }
  | { op: 'duplicate', index: number }
  | { op: 'relink', index: number, to: number }
  | { op: 'fanout', value: bigint }

/** A UnixFS block size (uint64): edge values, and any. */
export const blockSize = fc.oneof(
  fc.constantFrom(0n, 1n, 1023n, 1024n, 1025n, 2n ** 21n, 2n ** 31n, 2n ** 32n, 2n ** 40n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
)
const unixfsType = fc.constantFrom('raw' as const, 'directory' as const, 'file' as const, 'metadata' as const, 'symlink' as const, 'hamt-sharded-directory' as const)
const linkName = fc.oneof(fc.constantFrom('', '.', '..', '../x', '/abs', 'a\\b', 'a\0b', 'x', 'a.txt', 'é'.repeat(200)), fc.string({ maxLength: 10 }))
const fieldEdit: fc.Arbitrary<FieldEdit> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('blockSize' as const), index: fc.nat(), value: blockSize }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('type' as const), value: unixfsType }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('data' as const), bytes: fc.option(fc.uint8Array({ maxLength: 64 }), { nil: undefined }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('name' as const), index: fc.nat(), name: linkName }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('drop' as const), index: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), index: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('relink' as const), index: fc.nat(), to: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fanout' as const), value: fc.oneof(fc.constantFrom(0n, 1n, 3n, 256n, 2n ** 32n), blockSize) }) }
)

/** Edits of a block: of its fields (when it decodes), then of its bytes. */
export interface Edits {
  fields: FieldEdit[]
  bytes: ByteEdit[]
}
export const edits: fc.Arbitrary<Edits> = fc.oneof(
  fc.record({ fields: fc.constant<FieldEdit[]>([]), bytes: fc.array(byteEdit, { minLength: 1, maxLength: 4 }) }),
  fc.record({ fields: fc.array(fieldEdit, { minLength: 1, maxLength: 3 }), bytes: fc.array(byteEdit, { maxLength: 1 }) })
)

function editFields (fx: Fixture, bytes: Uint8Array, list: FieldEdit[]): Uint8Array {
  if (list.length === 0) return bytes
  let node: dagPb.PBNode
  let fs: UnixFS
  try {
    node = dagPb.decode(bytes)
    fs = UnixFS.unmarshal(node.Data ?? new Uint8Array(0))
  } catch {
    return bytes // a raw leaf: the byte edits do the work
  }
  const links = [...node.Links]
  const at = (i: number): number => i % Math.max(1, links.length)
  for (const e of list) {
    switch (e.op) {
      case 'blockSize':
        if (fs.blockSizes.length > 0) fs.blockSizes[e.index % fs.blockSizes.length] = e.value
        else fs.blockSizes.push(e.value)
        break
      case 'type': fs.type = e.value; break
      case 'data': fs.data = e.bytes === undefined ? undefined : Uint8Array.from(e.bytes); break
      case 'name': if (links.length > 0) links[at(e.index)] = { ...links[at(e.index)] as dagPb.PBLink, Name: e.name }; break
      case 'drop': links.splice(at(e.index), 1); break
      case 'duplicate': if (links.length > 0) links.splice(at(e.index), 0, links[at(e.index)] as dagPb.PBLink); break
      case 'relink': {
        const to = (fx.all[e.to % fx.all.length] as Block).cid
        if (links.length > 0) links[at(e.index)] = { ...links[at(e.index)] as dagPb.PBLink, Hash: to }
        else links.push({ Hash: to, Name: '', Tsize: 1 })
        break
      }
      case 'fanout': fs.fanout = e.value; break
    }
  }
  try {
    return dagPb.encode(dagPb.prepare({ Data: fs.marshal(), Links: links }))
  } catch {
    return bytes
  }
}

/** `bytes` with `edits` applied. */
export function mutate (fx: Fixture, bytes: Uint8Array, edits: Edits): Uint8Array {
  let out: Uint8Array = Uint8Array.from(editFields(fx, bytes, edits.fields))
  const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts))
  for (const e of edits.bytes) {
    const n = out.length
    switch (e.op) {
      case 'flip': if (n > 0) out[e.at % n] = (out[e.at % n] as number) ^ (1 << e.bit); break
      case 'set': if (n > 0) out[e.at % n] = e.value; break
      case 'truncate': out = out.subarray(0, e.at % (n + 1)); break
      case 'extend': out = cat(out, e.bytes); break
      case 'insert': { const at = e.at % (n + 1); out = cat(out.subarray(0, at), e.bytes, out.subarray(at)); break }
      case 'delete': { const at = e.at % (n + 1); out = cat(out.subarray(0, at), out.subarray(at + e.length)); break }
      case 'duplicate': { const at = e.at % (n + 1); out = cat(out.subarray(0, at + e.length), out.subarray(at)); break }
      case 'graft': {
        // a piece of another real block: well-formed fields in the wrong place
        const other = (fx.all[e.from % fx.all.length] as Block).bytes
        const start = e.start % (other.length + 1)
        const at = e.at % (n + 1)
        out = cat(out.subarray(0, at), other.subarray(start, start + e.length), out.subarray(at))
        break
      }
    }
  }
  return out
}

/** The `i`th built block (dag-pb ones only with `pbOnly`). */
export function pick (fx: Fixture, i: number, pbOnly: boolean): Block {
  const pool = pbOnly ? fx.all.filter(b => b.cid.code === dagPb.code) : fx.all
  return pool[i % pool.length] as Block
}

/** Every block reachable from `root`, each once, depth-first. */
export function reachable (fx: Fixture, root: CID, seen = new Set<string>(), out: Block[] = []): Block[] {
  const key = root.toString()
  if (seen.has(key)) return out
  seen.add(key)
  const bytes = fx.blocks.get(root)
  out.push({ cid: root, bytes })
  if (root.code === dagPb.code) for (const l of dagPb.decode(bytes).Links) reachable(fx, l.Hash, seen, out)
  return out
}

/**
 * The DAG under `root` with the block `target` replaced by `bytes` (re-addressed),
 * and every node above it re-encoded with the new links. Returns the new root.
 */
async function replaceInDag (fx: Fixture, root: CID, target: CID, bytes: Uint8Array): Promise<CID> {
  const replacement = await put(fx.blocks, bytes, target.code, target.version === 0 ? 0 : 1)
  const memo = new Map<string, CID>()
  const visit = async (cid: CID): Promise<CID> => {
    if (cid.equals(target)) return replacement
    if (cid.code !== dagPb.code) return cid
    const known = memo.get(cid.toString())
    if (known !== undefined) return known
    const node = dagPb.decode(fx.blocks.get(cid))
    const links = await Promise.all(node.Links.map(async l => ({ ...l, Hash: await visit(l.Hash) })))
    const changed = links.some((l, i) => !l.Hash.equals((node.Links[i] as dagPb.PBLink).Hash))
    const out = changed ? await put(fx.blocks, dagPb.encode({ ...node, Links: links }), dagPb.code, cid.version) : cid
    memo.set(cid.toString(), out)
    return out
  }
  return await visit(root)
}

/**
 * Where the mutated block goes: in place inside the DAG it came from (every node
 * above it re-encoded), as the root (dag-pb, or its bytes as a raw block), or
 * below a new directory or file node.
 */
export type Placement = 'in-place' | 'root' | 'raw-root' | 'dir-entry' | 'file-child'
export const placements = fc.constantFrom<Placement>('in-place', 'in-place', 'root', 'dir-entry', 'file-child', 'raw-root')

/** A hostile DAG: which tree, which of its blocks, the edits, the placement. */
export type HostileDag = [tree: number, block: number, edits: Edits, where: Placement]
export function hostileDags (where: fc.Arbitrary<Placement> = placements): fc.Arbitrary<HostileDag> {
  return fc.tuple(fc.nat(), fc.nat(), edits, where)
}

/** Stores the hostile DAG and returns its root; `roots` are the trees to mutate in place. */
export async function plant (fx: Fixture, [tree, i, e, where]: HostileDag, roots = fx.roots): Promise<CID> {
  if (where === 'in-place') {
    const root = roots[tree % roots.length] as CID
    const blocks = reachable(fx, root)
    const original = blocks[i % blocks.length] as Block
    return await replaceInDag(fx, root, original.cid, mutate(fx, original.bytes, e))
  }
  const original = pick(fx, i, where !== 'file-child' && where !== 'dir-entry')
  const bytes = mutate(fx, original.bytes, e)
  if (where === 'raw-root') return await put(fx.blocks, bytes, rawCodec.code)
  const cid = await put(fx.blocks, bytes, original.cid.code)
  if (where === 'root') return cid
  if (where === 'dir-entry') {
    const sibling = pick(fx, 0, false)
    return await put(fx.blocks, pbNode(new UnixFS({ type: 'directory' }), [
      { Name: 'x', Hash: cid, Tsize: bytes.length },
      { Name: 'y', Hash: sibling.cid, Tsize: sibling.bytes.length }
    ]), dagPb.code)
  }
  // the size the original declared, so that only the mutation can make it wrong
  let declared = BigInt(original.bytes.length)
  if (original.cid.code === dagPb.code) {
    try {
      declared = UnixFS.unmarshal(dagPb.decode(original.bytes).Data ?? new Uint8Array(0)).fileSize()
    } catch {
      // not a UnixFS node: keep its length
    }
  }
  return await put(fx.blocks, pbNode(new UnixFS({ type: 'file', blockSizes: [declared] }), [{ Hash: cid, Tsize: bytes.length }]), dagPb.code)
}

/** The verified blocks a gateway pool hands out: from the blockstore, checked against their CID. */
export function source (fx: Fixture): BlockSource {
  return {
    get: async (cid: CID) => {
      const bytes = fx.blocks.get(cid)
      await verifyBlock(cid, bytes)
      return bytes
    }
  }
}

/** The part of the Store the verified walks use, in memory. */
export function memoryStore (): Store {
  const kept = new Map<string, Uint8Array>()
  let progress: Uint8Array | undefined
  const store: Pick<Store, 'getProgress' | 'saveProgress' | 'clearProgress' | 'getBlocks' | 'getBlock' | 'getBlockKeys' | 'putBlock' | 'putBlocks' | 'updateDownload'> = {
    getProgress: async () => progress,
    saveProgress: async (_id, bitmap) => { progress = bitmap },
    clearProgress: async () => { progress = undefined; kept.clear() },
    getBlocks: async () => new Map(kept),
    getBlock: async (_id, cid) => kept.get(cid),
    getBlockKeys: async () => [...kept.keys()],
    putBlock: async (_id, cid, bytes) => { kept.set(cid, bytes) },
    putBlocks: async (_id, blocks) => { for (const { cid, bytes } of blocks) kept.set(cid, bytes) },
    updateDownload: async () => {}
  }
  return store as Store
}

/** The journal of download 1 over `memoryStore()`. */
export function memoryJournal (): Journal {
  return new Journal({ store: memoryStore(), id: 1, owner: 'test-host:1:owner' })
}

/** The default limits: what a download runs with. */
export const LIMITS: DagLimits = { ...DEFAULT_DAG_LIMITS }

/** The context of one verified or CAR download of `root` into `output`. */
export function context (fx: Fixture, root: CID, output: string, mode: 'verified' | 'car'): VerifiedContext {
  const record = {
    id: 1, cid: root.toString(), path: '', target: root.toString(), output, mode, gateways: ['http://gateway.test'], gateway: null,
    size: null, expectedSha256: null, status: 'in_progress', attempts: 0, lastAttempt: null, currentSize: 0, hash: null, etag: null,
    error: null, errorCode: null, priority: 0, createdAt: 0, updatedAt: 0, completedAt: null, leaseOwner: null, leaseExpires: null, control: null,
    name: null, nameSequence: null, nameValidity: null, nameResolvedAt: null, updateOf: null, updateReport: null, limitRate: null
  } satisfies DownloadRecord
  return {
    record,
    journal: memoryJournal(),
    http: {} as HttpClient,
    policy: { ...DEFAULT_POLICY, syncIntervalBytes: 4096 },
    signal: new AbortController().signal,
    now: Date.now,
    sleep: async () => {},
    random: Math.random,
    setStatus: async () => {},
    onProgress: () => {},
    onRetry: () => {},
    blocks: source(fx),
    limits: LIMITS,
    skipSymlinks: false,
    concurrency: 4,
    lastGateway: () => 'http://gateway.test'
  }
}

/** `fn` ends in success or a CidgetError with a code chosen on purpose (one of `codes`), within the time bound. */
export async function endsWell (what: string, fn: () => Promise<unknown>, codes?: readonly ErrorCode[]): Promise<void> {
  const r = await settleWithin(TIME_BOUND_MS, fn)
  if (r.ok) return
  try {
    expectDeliberate(r.error, codes)
  } catch (err) {
    throw new Error(`${what}: ${(err as Error).message}`, { cause: r.error })
  }
}
