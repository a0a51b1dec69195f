import { describe, it, expect } from 'vitest'
import { parseTarget, defaultName, normalizeGateway, gatewayUrl } from '../../src/target/parse.js'
import { isCidgetError } from '../../src/core/errors.js'

const V1 = 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi'
const V0 = 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG'

describe('parseTarget', () => {
  it.each([
    [V1, V1, ''],
    [V0, V0, ''],
    [`${V1}/a/b.bin`, V1, '/a/b.bin'],
    [`/ipfs/${V1}`, V1, ''],
    [`/ipfs/${V1}/dir/file%20name.txt`, V1, '/dir/file name.txt'],
    [`ipfs://${V1}/x`, V1, '/x'],
    [`https://ipfs.io/ipfs/${V1}/x?filename=y#z`, V1, '/x'],
    [`http://127.0.0.1:8080/ipfs/${V0}`, V0, ''],
    [`https://${V1}.ipfs.dweb.link/p/q`, V1, '/p/q'],
    // a CIDv1 in base58btc is normalised to base32
    ['zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7', 'bafybeiasb5vpmaounyilfuxbd3lryvosl4yefqrfahsb2esg46q6tu6y5q', '']
  ])('%s', (input, cid, path) => {
    const t = parseTarget(input)
    expect(t.cid).toBe(cid)
    expect(t.path).toBe(path)
  })

  it('keeps the gateway of a gateway URL', () => {
    expect(parseTarget(`https://example.org/prefix/ipfs/${V1}`).gateway).toBe('https://example.org/prefix')
    expect(parseTarget(`https://${V1}.ipfs.dweb.link/`).gateway).toBe('https://dweb.link')
  })

  it.each([
    '', '   ', 'bafy', 'not a cid', 'Qm123', `/ipfs/${V1}/../etc/passwd`, `/ipfs/${V1}/./x`,
    'ftp://host/ipfs/x', 'https://example.com/no/cid/here', '/ipns/localhost', `/ipns/${V1}`, 'ipns://', '/ipns/exa_mple.com', 'https://x.ipns.dweb.link/', `/ipns/example.com/../x`, `ipfs://${V1}/a%00b`, `${V1}/bad%zz`,
    // control characters, as in names from a DAG (issue 14: ESC [2J and a newline became an output name)
    `${V1}/a%1B%5B2Jb%0Ac`, `/ipfs/${V1}/x%0Ay`, `/ipfs/${V1}/tab%09`, `${V1}/del%7F`, `${V1}/c1%C2%9B2J`, `https://ipfs.io/ipfs/${V1}/a%0Db`, `${V1}/raw\u001b[2J`
  ])('refuses %j with CIDGET_ERR_BAD_TARGET', (input) => {
    let caught: unknown
    try { parseTarget(input) } catch (err) { caught = err }
    expect(isCidgetError(caught, 'CIDGET_ERR_BAD_TARGET')).toBe(true)
    expect((caught as Error).message).toMatch(/^Invalid target/)
  })
})

describe('names (/ipns/)', () => {
  const KEY = 'k51qzi5uqu5dhxw20dywa87mx0ijvq7veabi8gwxcbog866ysnn5u7jthyvd4i'
  const PEER = '12D3KooWEZm4Rr8SXXGYCQFZiNagqkrMwAZqnRLbWV7zkjybhG49'
  it.each([
    [`/ipns/${KEY}`, `/ipns/${KEY}`, undefined],
    [`/ipns/${PEER}/a/b.bin`, `/ipns/${KEY}/a/b.bin`, undefined],
    [`ipns://${KEY}/x%20y`, `/ipns/${KEY}/x y`, undefined],
    ['/ipns/Docs.IPFS.tech/a/', '/ipns/docs.ipfs.tech/a', undefined],
    ['IPNS://example.org', '/ipns/example.org', undefined],
    [`https://ipfs.io/ipns/${KEY}/f?x=1`, `/ipns/${KEY}/f`, 'https://ipfs.io'],
    [`https://${KEY}.ipns.dweb.link/f`, `/ipns/${KEY}/f`, 'https://dweb.link'],
    ['https://en-wikipedia--on--ipfs-org.ipns.dweb.link/wiki/', '/ipns/en.wikipedia-on-ipfs.org/wiki', 'https://dweb.link']
  ])('%s', (input, name, gateway) => {
    const t = parseTarget(input)
    expect(t).toMatchObject({ cid: '', path: '', name })
    expect(t.gateway).toBe(gateway)
  })
  it('default name is the last segment after the name, else the name', () => {
    expect(defaultName(parseTarget('/ipns/example.org'))).toBe('example.org')
    expect(defaultName(parseTarget('/ipns/example.org/d/f.bin'))).toBe('f.bin')
    expect(defaultName(parseTarget(`/ipns/${PEER}`))).toBe(KEY)
  })
})

describe('names and gateway URLs', () => {
  it('default name is the last path segment, else the CID', () => {
    expect(defaultName(parseTarget(V1))).toBe(V1)
    expect(defaultName(parseTarget(`${V1}/a/b.bin`))).toBe('b.bin')
  })
  it('normalises gateway base URLs', () => {
    expect(normalizeGateway('https://ipfs.io/ipfs/')).toBe('https://ipfs.io')
    expect(normalizeGateway('http://127.0.0.1:9/')).toBe('http://127.0.0.1:9')
    expect(() => normalizeGateway('ftp://x')).toThrow(/http or https/)
    expect(() => normalizeGateway('nope')).toThrow(/Invalid gateway URL/)
  })
  it('encodes path segments', () => {
    expect(gatewayUrl('http://g', V1, '/a b/c#d')).toBe(`http://g/ipfs/${V1}/a%20b/c%23d`)
  })
})
