/** The set of verified blocks as it is stored: a bitmap. */
import { describe, it, expect } from 'vitest'
import { Bitmap } from '../../src/strategies/verified/bitmap.js'

describe('Bitmap', () => {
  it('union adds every number of the other, growing as needed, and stores compactly', () => {
    const a = new Bitmap()
    for (const i of [0, 3, 9]) a.add(i)
    const b = new Bitmap()
    for (const i of [3, 4, 100]) b.add(i)
    a.union(b)
    expect([...Array(128).keys()].filter(i => a.has(i))).toEqual([0, 3, 4, 9, 100])
    expect(a.count).toBe(5)
    expect(new Bitmap(a.toBytes()).count).toBe(5)
    expect(a.toBytes().byteLength).toBe(13)
    // the other is unchanged
    expect(b.count).toBe(3)
  })
})
