/**
 * Properties of the name checks that stand between a DAG and the file system:
 * on any string, a name is refused with CIDGET_ERR_UNSAFE_NAME or stays strictly
 * inside the output directory, alone or joined with others; a symlink target is
 * refused with CIDGET_ERR_UNSAFE_SYMLINK or resolves inside it.
 */
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { checkName, checkSymlink, isInside, safeJoin } from '../../src/sink/names.js'
import { params, attempt, expectCoded, anyString, anyCodePoint } from './fc.js'

/** Names a hostile DAG might carry: traversal, separators, NUL, controls, absolute paths, any unicode, very long. */
const hostile = fc.oneof(
  { weight: 3, arbitrary: anyString(30) },
  {
    weight: 3,
    arbitrary: fc.array(fc.oneof(
      fc.constantFrom('', '.', '..', '...', '/', '\\', '\0', '../', '..\\', '/etc/passwd', 'C:\\', 'C:', '~', '\n', '\u007f', '\u0085',
        '\u202e', '\u2215', '\uff0f', '\u200b', ' ', '%2e%2e', 'a', 'é', '😀', '\ud800', '\udc00'),
      anyString(4)
    ), { maxLength: 8 }).map(ps => ps.join(''))
  },
  {
    weight: 1,
    // around the 255-byte limit, in 1- to 4-byte characters
    arbitrary: fc.tuple(fc.constantFrom('a', 'é', '€', '😀', '\ud800'), fc.integer({ min: 60, max: 300 }), fc.string({ unit: anyCodePoint, maxLength: 3 }))
      .map(([c, n, tail]) => c.repeat(n) + tail)
  },
  { weight: 1, arbitrary: fc.string({ unit: anyCodePoint, minLength: 256, maxLength: 2000 }) }
)

/** Output roots: absolute, relative, the file-system root, unnormalised. */
const root = fc.constantFrom<string>('/tmp/out', '/tmp/out/', 'out', './a/../out', '/', '/tmp/a b/ü', '.')

/** `path` is strictly inside `r`: a descendant, never `r` itself nor outside it. */
function strictlyInside (r: string, path: string): boolean {
  const rel = relative(resolve(r), resolve(path))
  return rel !== '' && rel !== '..' && !rel.startsWith('..' + sep) && !isAbsolute(rel)
}

describe('checkName (properties)', () => {
  it('refuses with CIDGET_ERR_UNSAFE_NAME, or gives back the name, one level strictly inside the root', () => {
    fc.assert(fc.property(root, hostile, (r, name) => {
      const got = attempt(() => checkName(name, 'bafytest'))
      if (!got.ok) {
        expectCoded(got.error, ['CIDGET_ERR_UNSAFE_NAME'])
        return
      }
      expect(got.value).toBe(name)
      const full = resolve(r, name)
      expect(strictlyInside(r, full), `${JSON.stringify(name)} leaves ${r}`).toBe(true)
      expect(dirname(full)).toBe(resolve(r))
      expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255)
      // eslint-disable-next-line no-control-regex -- control characters must never be accepted
      expect(/[/\\\u0000-\u001f\u007f-\u009f]/.test(name)).toBe(false)
    }), params(20))
  })

  it('accepts every plain name: no separator, NUL or control character, not . or .., at most 255 bytes', () => {
    const plain = fc.string({ unit: 'binary', minLength: 1, maxLength: 60 })
      // eslint-disable-next-line no-control-regex -- control characters are refused on purpose
      .filter(n => !/[/\\\u0000-\u001f\u007f-\u009f]/.test(n) && n !== '.' && n !== '..' && Buffer.byteLength(n) <= 255)
    fc.assert(fc.property(root, plain, (r, name) => {
      expect(checkName(name, 'bafytest')).toBe(name)
      expect(dirname(resolve(r, name))).toBe(resolve(r))
    }), params(5))
  })
})

describe('safeJoin (properties)', () => {
  it('several segments: refused with CIDGET_ERR_UNSAFE_NAME, or joined strictly inside the root, one level per segment', () => {
    fc.assert(fc.property(root, fc.array(hostile, { minLength: 1, maxLength: 6 }), (r, parts) => {
      const got = attempt(() => safeJoin(r, parts, 'bafytest'))
      if (!got.ok) {
        expectCoded(got.error, ['CIDGET_ERR_UNSAFE_NAME'])
        return
      }
      expect(got.value).toBe(join(r, ...parts))
      expect(strictlyInside(r, got.value)).toBe(true)
      expect(isInside(r, got.value)).toBe(true)
      expect(relative(resolve(r), resolve(got.value)).split(sep)).toEqual(parts)
    }), params(20))
  })

  it('joining segments one by one (as a directory walk does) stays inside the root at every step', () => {
    fc.assert(fc.property(root, fc.array(hostile, { minLength: 1, maxLength: 6 }), (r, parts) => {
      let at = r
      for (const p of parts) {
        const got = attempt(() => safeJoin(at, [p], 'bafytest'))
        if (!got.ok) {
          expectCoded(got.error, ['CIDGET_ERR_UNSAFE_NAME'])
          return
        }
        expect(strictlyInside(at, got.value)).toBe(true)
        expect(strictlyInside(r, got.value)).toBe(true)
        at = got.value
      }
    }), params(10))
  })
})

describe('checkSymlink (properties)', () => {
  it('refuses with CIDGET_ERR_UNSAFE_SYMLINK, or the target resolves inside the root', () => {
    const safeSegment = fc.stringMatching(/^[a-z0-9]{1,6}$/)
    const target = fc.oneof(
      hostile,
      fc.array(fc.oneof(fc.constantFrom('..', '.', '', 'x'), safeSegment, hostile), { minLength: 1, maxLength: 8 }).map(ps => ps.join('/'))
    )
    fc.assert(fc.property(root, fc.array(safeSegment, { minLength: 1, maxLength: 4 }), target, (r, link, t) => {
      const linkPath = join(r, ...link)
      const got = attempt(() => { checkSymlink(r, linkPath, t) })
      if (!got.ok) {
        expectCoded(got.error, ['CIDGET_ERR_UNSAFE_SYMLINK'])
        return
      }
      expect(isAbsolute(t)).toBe(false)
      expect(t.includes('\0')).toBe(false)
      expect(isInside(r, resolve(dirname(linkPath), t))).toBe(true)
    }), params(20))
  })
})
