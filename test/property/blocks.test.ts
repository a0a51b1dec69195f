/**
 * Mutated blocks against block verification and DAG decoding.
 *
 * Real blocks (see ./dag.ts) are mutated: bits flipped, bytes replaced, cut,
 * extended, spliced, pieces of other blocks copied in, or decoded fields
 * changed. Against their own CID they must fail verification. Re-addressed (a
 * hostile DAG is hash-consistent), they are handed to the verified walk, the CAR
 * walk and path resolution, in place or as the root or below a new node. Every
 * call must end in success or a CidgetError with a code chosen on purpose,
 * within a time bound, and a verified walk never writes outside its output.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fc from 'fast-check'
import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { CID } from 'multiformats/cid'
import * as rawCodec from 'multiformats/codecs/raw'
import * as dagPb from '@ipld/dag-pb'
import * as Digest from 'multiformats/hashes/digest'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { verifyBlock } from '../../src/gateways/block.js'
import { runVerifiedDownload } from '../../src/strategies/verified/index.js'
import { runCarDownload } from '../../src/strategies/verified/car.js'
import { DagReader, exporterError } from '../../src/strategies/verified/reader.js'
import { isInside } from '../../src/sink/names.js'
import { CidgetError } from '../../src/core/errors.js'
import { params, settleWithin, expectCoded } from './fc.js'
import { TIME_BOUND_MS, type Fixture, fixture, edits, mutate, pick, hostileDags, plant, source, memoryJournal, context, endsWell, type Placement } from './dag.js'

let fx: Fixture
let dir: string
let runs = 0

beforeAll(async () => {
  fx = await fixture()
  dir = await mkdtemp(join(tmpdir(), 'cidget-property-'))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** A new directory for one run (created by the code under test). */
function freshDir (): string {
  return join(dir, `run-${++runs}`)
}

/** Everything under `out` (if it was created) is inside `root`, and so is the target of every symlink. */
async function staysInside (out: string, root: string): Promise<void> {
  const entries = await readdir(out, { recursive: true, withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return []
    throw err
  })
  for (const e of entries) {
    const path = join(e.parentPath, e.name)
    expect(isInside(root, path), path).toBe(true)
    if (e.isSymbolicLink()) {
      const target = resolve(dirname(path), await readlink(path))
      expect(isInside(root, target), `${path} → ${target}`).toBe(true)
    }
  }
}

describe('verifyBlock (properties)', () => {
  it('a mutated block never verifies against its CID, unless the edit left it unchanged', async () => {
    await fc.assert(fc.asyncProperty(fc.nat(), edits, async (i, e) => {
      const b = pick(fx, i, false)
      const bytes = mutate(fx, b.bytes, e)
      const r = await settleWithin(TIME_BOUND_MS, async () => { await verifyBlock(b.cid, bytes) })
      if (Buffer.from(bytes).equals(b.bytes)) {
        expect(r.ok).toBe(true)
      } else {
        expect(r.ok).toBe(false)
        if (!r.ok) expectCoded(r.error, ['CIDGET_ERR_BLOCK_INVALID'])
      }
    }), params(5))
  })

  it('any CID (any hash code, any digest length) and any bytes: verified, or BLOCK_INVALID / DAG_INVALID', async () => {
    const arb = fc.record({
      codec: fc.constantFrom(rawCodec.code, dagPb.code, 0x71),
      hash: fc.oneof(fc.constantFrom(0x00, 0x11, 0x12, 0x13, 0x14, 0x16, 0xb220, 0x1e), fc.nat(0xffff)),
      digest: fc.uint8Array({ maxLength: 80 }),
      bytes: fc.uint8Array({ maxLength: 200 }),
      real: fc.nat(),
      cut: fc.integer({ min: 0, max: 70 })
    })
    await fc.assert(fc.asyncProperty(arb, async a => {
      // half the time, a prefix of the block's true digest (a truncated hash)
      const block = pick(fx, a.real, false).bytes
      const useReal = a.real % 2 === 0 && (a.hash === 0x12 || a.hash === 0x13)
      const digest = useReal ? (await (a.hash === 0x12 ? sha256 : sha512).digest(block)).digest.subarray(0, a.cut) : a.digest
      const bytes = useReal ? block : a.bytes
      const cid = CID.createV1(a.codec, Digest.create(a.hash, digest))
      const r = await settleWithin(TIME_BOUND_MS, async () => { await verifyBlock(cid, bytes) })
      if (!r.ok) {
        expectCoded(r.error, ['CIDGET_ERR_BLOCK_INVALID', 'CIDGET_ERR_DAG_INVALID'])
        return
      }
      // verified: the inline bytes of an identity CID, or the digest (maybe truncated, never below 20 bytes) of a known hash
      if (a.hash === 0x00) {
        expect(Buffer.from(digest).equals(bytes)).toBe(true)
      } else {
        expect(useReal).toBe(true)
        expect(digest.length).toBeGreaterThanOrEqual(20)
      }
    }), params(5))
  })
})

describe('DAG decoding of mutated blocks (properties)', () => {
  it('the verified walk ends in success or a coded error, and writes only inside its output', async () => {
    await fc.assert(fc.asyncProperty(hostileDags(), async dag => {
      const root = await plant(fx, dag)
      const out = freshDir()
      await endsWell(`verified walk of ${root.toString()}`, async () => await runVerifiedDownload(context(fx, root, join(out, 'out'), 'verified')))
      await staysInside(out, out)
      await rm(out, { recursive: true, force: true })
    }), params(1, TIME_BOUND_MS * 2))
  })

  it('the CAR walk ends in success or a coded error', async () => {
    await fc.assert(fc.asyncProperty(hostileDags(), async dag => {
      const root = await plant(fx, dag)
      const out = freshDir()
      await endsWell(`CAR walk of ${root.toString()}`, async () => await runCarDownload(context(fx, root, join(out, 'out.car'), 'car')))
      await rm(out, { recursive: true, force: true })
    }), params(0.5, TIME_BOUND_MS * 2))
  })

  it('path resolution through a mutated directory ends in a CID or a coded error', async () => {
    const path = fc.constantFrom('/x', '/x/a.txt', '/x/sub/b.bin', '/a.txt', '/sub/deeper/c.bin', '/f3.txt', '/link', '/nope', '/x/f7.txt')
    const where = fc.constantFrom<Placement>('in-place', 'root', 'dir-entry')
    await fc.assert(fc.asyncProperty(hostileDags(where), path, async (dag, p) => {
      const root = await plant(fx, dag, [fx.top, fx.sharded])
      const reader = await DagReader.open(memoryJournal(), source(fx), new AbortController().signal, 4)
      await endsWell(`resolving ${p} in ${root.toString()}`, async () => await reader.resolve(root.toString(), p))
    }), params(2, TIME_BOUND_MS * 2))
  })

  it('exporter failures map to NOT_FOUND or DAG_INVALID; an AbortError passes through', () => {
    const thrown = fc.oneof(
      fc.tuple(fc.constantFrom('Error', 'NotFoundError', 'AbortError', 'NotUnixFSError', 'TypeError', 'RangeError', ''), fc.string()).map(([name, message]) => {
        const e = new Error(message)
        e.name = name
        return e as unknown
      }),
      fc.string(), fc.integer(), fc.boolean(),
      fc.constant(new CidgetError('CIDGET_ERR_DAG_LIMIT', 'too deep'))
    )
    fc.assert(fc.property(thrown, err => {
      const mapped = exporterError(err, 'Resolving /x')
      if (mapped instanceof CidgetError) {
        if (err instanceof CidgetError) expect(mapped).toBe(err)
        else expectCoded(mapped, ['CIDGET_ERR_NOT_FOUND', 'CIDGET_ERR_DAG_INVALID'])
      } else {
        expect(mapped).toBe(err)
        expect((err as Error).name).toBe('AbortError')
      }
    }), params(5))
  })
})
