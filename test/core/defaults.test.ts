import { describe, it, expect } from 'vitest'
import { DEFAULTS } from '../../src/core/defaults.js'
import { DEFAULT_DAG_LIMITS } from '../../src/strategies/verified/index.js'

describe('defaults', () => {
  it('let a tree of millions of entries through the entries limit', () => {
    expect(DEFAULTS.MAX_DAG_ENTRIES).toBe(10_000_000)
    expect(DEFAULT_DAG_LIMITS.maxEntries).toBe(10_000_000)
    // a million files and the directories holding them fit
    expect(DEFAULT_DAG_LIMITS.maxEntries).toBeGreaterThan(1_000_000 + 1_000)
  })
})
