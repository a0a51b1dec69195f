import { describe, it, expect } from 'vitest'
import { parseContentRange, parseUnsatisfiedRange, parseContentLength, isStrongEtag } from '../../src/gateways/headers.js'

describe('header parsing', () => {
  it('Content-Range', () => {
    expect(parseContentRange('bytes 0-99/100')).toEqual({ start: 0, end: 99, total: 100 })
    expect(parseContentRange('bytes 5-9/*')).toEqual({ start: 5, end: 9, total: undefined })
    expect(parseContentRange('bytes 9-5/100')).toBeUndefined()
    expect(parseContentRange('bytes 0-100/100')).toBeUndefined()
    expect(parseContentRange('items 0-1/2')).toBeUndefined()
    expect(parseContentRange('bytes -1-5/10')).toBeUndefined()
    expect(parseContentRange('bytes 0-99999999999999999/1')).toBeUndefined()
    expect(parseContentRange(undefined)).toBeUndefined()
  })
  it('unsatisfied range and length', () => {
    expect(parseUnsatisfiedRange('bytes */1234')).toBe(1234)
    expect(parseUnsatisfiedRange('bytes 0-1/2')).toBeUndefined()
    expect(parseContentLength('42')).toBe(42)
    expect(parseContentLength('-1')).toBeUndefined()
    expect(parseContentLength('4x')).toBeUndefined()
  })
  it('strong ETags only', () => {
    expect(isStrongEtag('"bafy"')).toBe(true)
    expect(isStrongEtag('W/"bafy"')).toBe(false)
    expect(isStrongEtag(undefined)).toBe(false)
  })
})
