import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { ERROR_CODES, CidgetError, fsError, toCidgetError } from '../../src/core/errors.js'
import { exitCodeForError } from '../../src/cli/exit.js'

describe('error registry', () => {
  it('every code is documented in the error table of docs/errors.md with its exit code', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
    for (const code of Object.keys(ERROR_CODES) as Array<keyof typeof ERROR_CODES>) {
      const row = doc.split('\n').find(l => l.startsWith(`| \`${code}\``))
      expect(row, `docs/errors.md row for ${code}`).toBeDefined()
      expect(row).toContain(`| ${exitCodeForError(new CidgetError(code))} |`)
    }
  })

  it('classifies file-system errors', () => {
    const enospc = Object.assign(new Error('no space'), { code: 'ENOSPC' })
    expect(fsError(enospc, 'write').code).toBe('CIDGET_ERR_DISK_FULL')
    const eacces = Object.assign(new Error('denied'), { code: 'EACCES' })
    expect(fsError(eacces, 'write').code).toBe('CIDGET_ERR_FS')
    const reset = Object.assign(new Error('reset'), { code: 'ECONNRESET' })
    expect(toCidgetError(reset).code).toBe('CIDGET_ERR_NETWORK')
  })

  it('maps errors to the documented exit codes', () => {
    expect(exitCodeForError(new CidgetError('CIDGET_ERR_BAD_TARGET'))).toBe(2)
    expect(exitCodeForError(new CidgetError('CIDGET_ERR_DISK_FULL'))).toBe(3)
    expect(exitCodeForError(new CidgetError('CIDGET_ERR_HASH_MISMATCH'))).toBe(1)
    expect(exitCodeForError(new CidgetError('CIDGET_ERR_STATE'))).toBe(2)
  })
})
