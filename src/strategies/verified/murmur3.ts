/**
 * The first 64 bits of murmur3-x64-128 (seed 0): the hash by which a UnixFS
 * HAMT places a name. The arithmetic of `@multiformats/murmur3` (the tests
 * check both against each other), done on 32-bit halves held in local
 * variables: that library makes an object for every 64-bit step, some 4 KB
 * of garbage per name, which a directory of a million names pays a million
 * times.
 *
 * @module
 */

/** The high and low halves of the last 64-bit result (the helpers below return through them). */
let H = 0
let L = 0

/** `(ah:al) × (bh:bl)` modulo 2^64, into H:L. */
function mul (ah: number, al: number, bh: number, bl: number): void {
  // al × bl in full from 16-bit pieces (each partial sum stays below 2^32), the cross terms modulo 2^32
  const a0 = al & 0xffff
  const a1 = al >>> 16
  const b0 = bl & 0xffff
  const b1 = bl >>> 16
  const t0 = a0 * b0
  const t1 = a1 * b0 + (t0 >>> 16)
  const t2 = a0 * b1 + (t1 & 0xffff)
  L = ((t2 << 16) | (t0 & 0xffff)) >>> 0
  H = (a1 * b1 + (t1 >>> 16) + (t2 >>> 16) + Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0
}

/** `(ah:al) + (bh:bl)` modulo 2^64, into H:L. */
function add (ah: number, al: number, bh: number, bl: number): void {
  const low = al + bl
  L = low >>> 0
  H = (ah + bh + (low > 0xffffffff ? 1 : 0)) >>> 0
}

/** `(h:l)` rotated left by `n` bits (0 < n < 64, n ≠ 32), into H:L. */
function rotl (h: number, l: number, n: number): void {
  if (n > 32) {
    const t = h
    h = l
    l = t
    n -= 32
  }
  H = ((h << n) | (l >>> (32 - n))) >>> 0
  L = ((l << n) | (h >>> (32 - n))) >>> 0
}

/** murmur3's finalizer of a 64-bit half, into H:L. */
function fmix (h: number, l: number): void {
  l = (l ^ (h >>> 1)) >>> 0
  mul(h, l, 0xff51afd7, 0xed558ccd)
  h = H
  l = (L ^ (H >>> 1)) >>> 0
  mul(h, l, 0xc4ceb9fe, 0x1a85ec53)
  L = (L ^ (H >>> 1)) >>> 0
}

const C1H = 0x87c37b91
const C1L = 0x114253d5
const C2H = 0x4cf5ad43
const C2L = 0x2745937f

/** The little-endian 32-bit word of `key` at `at` (bytes past its end count as 0). */
function word (key: Uint8Array, at: number, end: number): number {
  let w = 0
  for (let i = Math.min(end, at + 4) - 1; i >= at; i--) w = (w << 8) | (key[i] as number)
  return w >>> 0
}

/** The first 8 bytes of murmur3-x64-128 of `key` (seed 0), big-endian, written into `out` from 0. */
export function murmur3x64First64 (key: Uint8Array, out: Uint8Array): void {
  const length = key.length
  const blocks = length >>> 4
  let h1h = 0
  let h1l = 0
  let h2h = 0
  let h2l = 0
  for (let i = 0; i < blocks; i++) {
    const at = i * 16
    // k1 = rotl(k1 × c1, 31) × c2; h1 ^= k1; h1 = rotl(h1, 27) + h2; h1 = h1 × 5 + 0x52dce729
    mul(word(key, at + 4, length), word(key, at, length), C1H, C1L)
    rotl(H, L, 31)
    mul(H, L, C2H, C2L)
    rotl((h1h ^ H) >>> 0, (h1l ^ L) >>> 0, 27)
    add(H, L, h2h, h2l)
    mul(H, L, 0, 5)
    add(H, L, 0, 0x52dce729)
    h1h = H
    h1l = L
    // k2 = rotl(k2 × c2, 33) × c1; h2 ^= k2; h2 = rotl(h2, 31) + h1; h2 = h2 × 5 + 0x38495ab5
    mul(word(key, at + 12, length), word(key, at + 8, length), C2H, C2L)
    rotl(H, L, 33)
    mul(H, L, C1H, C1L)
    rotl((h2h ^ H) >>> 0, (h2l ^ L) >>> 0, 31)
    add(H, L, h1h, h1l)
    mul(H, L, 0, 5)
    add(H, L, 0, 0x38495ab5)
    h2h = H
    h2l = L
  }
  const tail = blocks * 16
  const rest = length - tail
  if (rest > 8) {
    mul(word(key, tail + 12, length), word(key, tail + 8, length), C2H, C2L)
    rotl(H, L, 33)
    mul(H, L, C1H, C1L)
    h2h = (h2h ^ H) >>> 0
    h2l = (h2l ^ L) >>> 0
  }
  if (rest > 0) {
    mul(word(key, tail + 4, length), word(key, tail, length), C1H, C1L)
    rotl(H, L, 31)
    mul(H, L, C2H, C2L)
    h1h = (h1h ^ H) >>> 0
    h1l = (h1l ^ L) >>> 0
  }
  // the length (below 2^32 for any name) into both halves, then h1 += h2, h2 += h1, fmix each, h1 += h2
  h1l = (h1l ^ length) >>> 0
  h2l = (h2l ^ length) >>> 0
  add(h1h, h1l, h2h, h2l)
  h1h = H
  h1l = L
  add(h2h, h2l, h1h, h1l)
  fmix(H, L)
  h2h = H
  h2l = L
  fmix(h1h, h1l)
  add(H, L, h2h, h2l)
  out[0] = H >>> 24
  out[1] = (H >>> 16) & 0xff
  out[2] = (H >>> 8) & 0xff
  out[3] = H & 0xff
  out[4] = L >>> 24
  out[5] = (L >>> 16) & 0xff
  out[6] = (L >>> 8) & 0xff
  out[7] = L & 0xff
}
