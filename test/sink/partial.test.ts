/** The check a resume makes for an output that a killed run already renamed into place. */
import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { committedAlready, partialPath } from '../../src/sink/partial.js'
import { sha256 } from '../helpers.js'

let dir: string | undefined
afterEach(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  dir = undefined
})

describe('committedAlready', () => {
  it('is true only for the recorded size and SHA-256, with no partial file beside it, and the SHA-256 asked for now', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cidget-partial-'))
    const output = join(dir, 'out.bin')
    const bytes = new TextEncoder().encode('finished content')
    const hash = sha256(bytes)
    await writeFile(output, bytes)
    expect(await committedAlready(output, bytes.length, hash)).toBe(true)
    expect(await committedAlready(output, bytes.length, hash, hash.toUpperCase())).toBe(true)
    // a different SHA-256 asked for since: the output is not what is wanted now
    expect(await committedAlready(output, bytes.length, hash, sha256(new Uint8Array([1])))).toBe(false)
    expect(await committedAlready(output, bytes.length + 1, hash)).toBe(false)
    expect(await committedAlready(output, bytes.length, sha256(new Uint8Array([2])))).toBe(false)
    expect(await committedAlready(output, null, hash)).toBe(false)
    expect(await committedAlready(output, bytes.length, null)).toBe(false)
    expect(await committedAlready(join(dir, 'missing'), bytes.length, hash)).toBe(false)
    // a partial file beside it: a run is not finished
    await writeFile(partialPath(output), bytes)
    expect(await committedAlready(output, bytes.length, hash)).toBe(false)
  })
})
