/**
 * The check of a path-mode file against its CID, fed a hostile DAG: the file's
 * own DAG with one block mutated in place (so that the sizes still add up to the
 * file's and the check goes deep), or a mutated block as the root or below a new
 * file node. It must end in a report or a CidgetError with a code chosen on
 * purpose, within a time bound.
 *
 * Kept apart from the other DAG properties: a failure here can take the whole
 * process down, and should not hide their results.
 */
import { describe, it, beforeAll, afterAll } from 'vitest'
import fc from 'fast-check'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkFileAgainstDag } from '../../src/strategies/verified/check.js'
import { PartialFile } from '../../src/sink/partial.js'
import { params } from './fc.js'
import type { CID } from 'multiformats/cid'
import { TIME_BOUND_MS, type Fixture, type Placement, type HostileDag, fixture, hostileDags, plant, source, memoryJournal, LIMITS, endsWell, blockSize } from './dag.js'

let fx: Fixture
let dir: string

beforeAll(async () => {
  fx = await fixture()
  dir = await mkdtemp(join(tmpdir(), 'cidget-property-'))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Runs the check of the file against the DAG under `root`. */
async function check (root: CID, out: string): Promise<void> {
  const file = await PartialFile.open(join(out, 'file'))
  try {
    await writeFile(file.path, fx.file.data)
    await endsWell(`checking ${fx.file.data.length} bytes against ${root.toString()}`, async () => await checkFileAgainstDag(file, fx.file.data.length, {
      cid: root.toString(), path: '', journal: memoryJournal(), blocks: source(fx), limits: LIMITS, signal: new AbortController().signal, concurrency: 4
    }))
  } finally {
    await file.close()
    await rm(out, { recursive: true, force: true })
  }
}

let runs = 0

describe('path-mode check against a mutated DAG (properties)', () => {
  it('ends in a report or a coded error', async () => {
    const where = fc.constantFrom<Placement>('in-place', 'in-place', 'in-place', 'root', 'file-child')
    await fc.assert(fc.asyncProperty(hostileDags(where), async dag => {
      await check(await plant(fx, dag, [fx.file.cid]), join(dir, `run-${++runs}`))
    }), params(2, TIME_BOUND_MS * 2))
  })

  it('inner nodes declaring other sizes for their children: a report or a coded error', async () => {
    // the file's own DAG with the block sizes of one node changed: the sizes above it still add up
    const sizes = fc.array(fc.record({ op: fc.constant('blockSize' as const), index: fc.nat(), value: blockSize }), { minLength: 1, maxLength: 3 })
    await fc.assert(fc.asyncProperty(fc.nat(), sizes, async (i, fields) => {
      const dag: HostileDag = [0, i, { fields, bytes: [] }, 'in-place']
      await check(await plant(fx, dag, [fx.file.cid]), join(dir, `run-${++runs}`))
    }), params(1, TIME_BOUND_MS * 2))
  })
})

