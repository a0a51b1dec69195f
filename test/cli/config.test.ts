import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadSettings, envName } from '../../src/cli/config.js'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'cidget-config-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('settings', () => {
  it('names variables after the settings', () => {
    expect(envName('maxResumeAttempts')).toBe('CIDGET_MAX_RESUME_ATTEMPTS')
    expect(envName('state')).toBe('CIDGET_STATE')
  })

  it('reads the config file, and the environment wins over it', async () => {
    const file = join(dir, 'config.json')
    await writeFile(file, JSON.stringify({ timeoutMs: 5000, gateways: ['https://a.example'], maxResumeAttempts: 7 }))
    const s = loadSettings({ CIDGET_CONFIG: file, CIDGET_TIMEOUT_MS: '900', CIDGET_GATEWAYS: 'https://b.example, https://c.example' })
    expect(s).toEqual({ timeoutMs: 900, gateways: ['https://b.example', 'https://c.example'], maxResumeAttempts: 7 })
  })

  it('reads the DAG limits as flat keys into the Downloader\'s limits, the environment winning key by key', async () => {
    const file = join(dir, 'config.json')
    await writeFile(file, JSON.stringify({ maxEntries: 20_000_000, maxDepth: 64 }))
    const s = loadSettings({ CIDGET_CONFIG: file, CIDGET_MAX_ENTRIES: '3', CIDGET_MAX_SIZE: '1024' })
    expect(s).toEqual({ limits: { maxEntries: 3, maxDepth: 64, maxSize: 1024 } })
    expect(envName('maxEntries')).toBe('CIDGET_MAX_ENTRIES')
  })

  it.each([0, -1, 1.5, 'many', '', null])('refuses maxEntries %j, and in the environment too', async (value) => {
    const file = join(dir, 'config.json')
    await writeFile(file, JSON.stringify({ maxEntries: value }))
    expect(() => loadSettings({ CIDGET_CONFIG: file })).toThrow(/maxEntries must be a positive integer/)
    if (typeof value !== 'string' || value === '') return
    expect(() => loadSettings({ HOME: dir + '/none', CIDGET_MAX_ENTRIES: value })).toThrow(/maxEntries must be a positive integer/)
  })

  it('reads routers (an empty list turns them off) and DNS resolvers, from the file and the environment', async () => {
    const file = join(dir, 'config.json')
    await writeFile(file, JSON.stringify({ routers: [], dnsResolvers: ['https://dns.example/dns-query', 'system'] }))
    expect(loadSettings({ CIDGET_CONFIG: file })).toEqual({ routers: [], dnsResolvers: ['https://dns.example/dns-query', 'system'] })
    expect(loadSettings({ CIDGET_CONFIG: file, CIDGET_ROUTERS: 'https://r1.example, https://r2.example', CIDGET_DNS_RESOLVERS: 'system' }))
      .toEqual({ routers: ['https://r1.example', 'https://r2.example'], dnsResolvers: ['system'] })
    // set and empty: no routers at all (an empty variable of another setting is as unset)
    expect(loadSettings({ HOME: dir, CIDGET_ROUTERS: '', CIDGET_STATE: '' })).toEqual({ routers: [] })
    expect(envName('dnsResolvers')).toBe('CIDGET_DNS_RESOLVERS')
  })

  it('finds ~/.cidget/config.json through HOME, and is empty without one', async () => {
    expect(loadSettings({ HOME: dir })).toEqual({})
  })

  it.each([
    [{ timeoutMs: 'soon' }, /timeoutMs must be a non-negative number/],
    [{ timeotMs: 5 }, /unknown setting "timeotMs"/],
    [{ gateways: [] }, /gateways must be a non-empty list/],
    [{ dnsResolvers: [] }, /dnsResolvers must be a non-empty list/],
    [{ routers: 5 }, /routers must be a list/],
    [[1, 2], /must hold a JSON object/]
  ])('refuses %j', async (content, message) => {
    const file = join(dir, 'config.json')
    await writeFile(file, JSON.stringify(content))
    expect(() => loadSettings({ CIDGET_CONFIG: file })).toThrow(message)
  })

  it('refuses a file that is not JSON, or a named file that is missing', async () => {
    const file = join(dir, 'config.json')
    await writeFile(file, '{ nope')
    expect(() => loadSettings({ CIDGET_CONFIG: file })).toThrow(/not valid JSON/)
    expect(() => loadSettings({ CIDGET_CONFIG: join(dir, 'missing.json') })).toThrow(/Cannot read config file/)
    expect(() => loadSettings({ CIDGET_CONFIG: file.replace('config', 'x'), CIDGET_MAX_RESUME_ATTEMPTS: '-1' })).toThrow()
  })
})
