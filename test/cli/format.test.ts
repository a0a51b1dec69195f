import { describe, it, expect } from 'vitest'
import { describe as describeRecord, printable, table } from '../../src/cli/format.js'
import type { DownloadRecord } from '../../src/core/types.js'

const hostile = 'a\u001b[2J\nforged line\r\u009b31m\u007f.bin'

function record (over: Partial<DownloadRecord>): DownloadRecord {
  return {
    id: 1, cid: 'bafy', path: '', target: 'bafy', output: '/tmp/x', mode: 'verified', gateways: [], gateway: null, size: 10,
    expectedSha256: null, status: 'failed', attempts: 1, lastAttempt: null, currentSize: 0, hash: null, etag: null, error: null,
    errorCode: null, priority: 0, createdAt: 0, updatedAt: 0, completedAt: null, leaseOwner: null, leaseExpires: null, control: null,
    name: null, nameSequence: null, nameValidity: null, nameResolvedAt: null, updateOf: null, updateReport: null, limitRate: null, ...over
  } as DownloadRecord
}

describe('printable (issue 14, item 8)', () => {
  it('escapes C0 and C1 control characters and DEL, and leaves everything else', () => {
    expect(printable(hostile)).toBe('a\\x1b[2J\\nforged line\\r\\x9b31m\\x7f.bin')
    expect(printable('naïve 日本 ✓ tab\there')).toBe('naïve 日本 ✓ tab\\there')
  })

  it('cidget list and status print names escaped: no control character reaches the terminal', () => {
    const rec = record({ output: `/tmp/${hostile}`, target: `bafy/${hostile}`, path: `/${hostile}`, error: `Cannot write ${hostile}` })
    for (const text of [table([rec]), describeRecord(rec)]) {
      // eslint-disable-next-line no-control-regex -- control characters are what must be absent
      expect(text.replace(/\n/g, '')).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/)
      expect(text).toContain('a\\x1b[2J\\nforged line')
    }
    expect(table([rec]).split('\n')).toHaveLength(2)
  })

  it('cidget status shows a name, what it resolved to, and a name not resolved yet', () => {
    const waiting = describeRecord(record({ cid: '', name: '/ipns/example.org/a.bin', target: 'ipns://example.org/a.bin' }))
    expect(waiting).toContain('name:      /ipns/example.org/a.bin\n')
    expect(waiting).toContain('cid:       - (resolved when the download starts)')
    const done = describeRecord(record({ cid: 'bafyx', path: '/v2/a.bin', name: `/ipns/k51/a${hostile}`, nameSequence: '7', nameValidity: '2030-01-01T00:00:00Z', nameResolvedAt: Date.UTC(2026, 11, 7) }))
    expect(done).toContain('(sequence 7, valid until 2030-01-01T00:00:00Z, resolved 2026-12-07T00:00:00.000Z)')
    expect(done).toContain('cid:       bafyx/v2/a.bin')
    // eslint-disable-next-line no-control-regex -- control characters are what must be absent
    expect(done.replace(/\n/g, '')).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/)
    expect(describeRecord(record({}))).not.toContain('name:')
  })
})
