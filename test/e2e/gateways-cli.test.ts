/**
 * `cidget gateways` as a user runs it: the built CLI in a child process,
 * probing gateways on loopback. Run `npm run build` first.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { runCli, closedUrl } from '../helpers.js'
import { MemoryBlocks, addFile, seededBytes, startTestGateway, startTestRouter, type TestGateway } from '../../src/testing/index.js'
import type { GatewayProbe } from '../../src/gateways/probe.js'

let gateways: TestGateway[] = []
afterEach(async () => {
  for (const g of gateways) await g.close()
  gateways = []
})

/** No config file from the user's home, no CIDGET_GATEWAYS from the environment. */
const env: NodeJS.ProcessEnv = { HOME: '/nonexistent-cidget-home', CIDGET_GATEWAYS: '', CIDGET_CONFIG: undefined }

describe('cidget gateways', () => {
  it('probes the -g gateways and prints one JSON array (exit 0)', async () => {
    const blocks = new MemoryBlocks()
    const sample = (await addFile(blocks, seededBytes(256 * 1024, 5))).toString()
    gateways = [await startTestGateway({ blocks }), await startTestGateway({ blocks })]
    gateways[1]!.addFault({ fault: { type: 'ignore-range' } })
    const r = await runCli(['gateways', '-g', gateways[0]!.url, '-g', gateways[1]!.url, '--sample', sample, '--json', '--timeout', '2000'], { env })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const probes = JSON.parse(r.stdout) as GatewayProbe[]
    expect(probes).toHaveLength(2)
    expect(probes[0]).toMatchObject({ gateway: gateways[0]!.url, reachable: true, error: null, trustlessRaw: true, trustlessCar: true, range: true })
    expect(probes[1]).toMatchObject({ gateway: gateways[1]!.url, reachable: true, range: false })
    for (const p of probes) {
      expect(Object.keys(p).sort()).toEqual(['error', 'gateway', 'latencyMs', 'range', 'reachable', 'throughputBps', 'trustlessCar', 'trustlessRaw'])
      expect(p.latencyMs).toBeGreaterThan(0)
      expect(p.throughputBps).toBeGreaterThan(0)
    }
  })

  it('with --sample, also probes the providers the routers name for it, marked with the router', async () => {
    const blocks = new MemoryBlocks()
    const sample = (await addFile(blocks, seededBytes(64 * 1024, 6))).toString()
    gateways = [await startTestGateway({ blocks }), await startTestGateway({ blocks })]
    const router = await startTestRouter()
    try {
      const port = new URL(gateways[1]!.url).port
      router.setProviders(sample, [{ Schema: 'peer', ID: 'x', Addrs: [`/ip4/127.0.0.1/tcp/${port}/http`], Protocols: ['transport-ipfs-gateway-http'] }])
      const r = await runCli(['gateways', '-g', gateways[0]!.url, '--sample', sample, '--json', '--timeout', '2000', '--router', router.url, '--allow-local'], { env })
      expect(r.code, r.stderr).toBe(0)
      const probes = JSON.parse(r.stdout) as Array<GatewayProbe & { foundBy?: string }>
      expect(probes.map((p) => [p.gateway, p.foundBy])).toEqual([[gateways[0]!.url, undefined], [gateways[1]!.url, router.url]])
      expect(probes[1]).toMatchObject({ reachable: true, trustlessRaw: true, range: true })
      const table = await runCli(['gateways', '-g', gateways[0]!.url, '--sample', sample, '--timeout', '2000', '--router', router.url, '--allow-local'], { env })
      expect(table.stdout).toContain(`${gateways[1]!.url} (provider)`)
      // without --allow-local, a loopback provider is left out
      const strict = await runCli(['gateways', '-g', gateways[0]!.url, '--sample', sample, '--json', '--timeout', '2000', '--router', router.url], { env })
      expect((JSON.parse(strict.stdout) as GatewayProbe[]).map((p) => p.gateway)).toEqual([gateways[0]!.url])
    } finally {
      await router.close()
    }
  })

  it('prints a table without --json, and says what a sample would add', async () => {
    const blocks = new MemoryBlocks()
    gateways = [await startTestGateway({ blocks })]
    const down = await closedUrl()
    const r = await runCli(['gateways', '-g', gateways[0]!.url, '-g', down], { env })
    expect(r.code).toBe(0)
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^GATEWAY\s+REACHABLE\s+RAW\s+CAR\s+RANGE\s+LATENCY\s+THROUGHPUT$/)
    expect(lines[1]).toMatch(new RegExp(`^${gateways[0]!.url}\\s+yes\\s+yes\\s+yes\\s+\\?\\s+[\\d.]+ ms\\s+-$`))
    expect(lines[2]).toMatch(new RegExp(`^${down}\\s+no \\(CIDGET_ERR_NETWORK\\)(\\s+-){5}$`))
    expect(r.stderr).toMatch(/--sample/)
  })

  it('exits 1 when no gateway is reachable', async () => {
    const a = await closedUrl()
    const b = await closedUrl()
    const r = await runCli(['gateways', '-g', a, '-g', b, '--json', '--timeout', '2000'], { env })
    expect(r.code).toBe(1)
    const probes = JSON.parse(r.stdout) as GatewayProbe[]
    expect(probes.map(p => [p.reachable, p.error])).toEqual([[false, 'CIDGET_ERR_NETWORK'], [false, 'CIDGET_ERR_NETWORK']])
  })

  it('uses CIDGET_GATEWAYS when no -g is given', async () => {
    const blocks = new MemoryBlocks()
    gateways = [await startTestGateway({ blocks })]
    const r = await runCli(['gateways', '--json'], { env: { ...env, CIDGET_GATEWAYS: gateways[0]!.url } })
    expect(r.code).toBe(0)
    expect((JSON.parse(r.stdout) as GatewayProbe[]).map(p => p.gateway)).toEqual([gateways[0]!.url])
  })

  it('exits 2 with one line on stderr for a bad gateway URL, a bad sample or a bad timeout', async () => {
    const cases = [
      ['gateways', '-g', 'ftp://x'],
      ['gateways', '-g', 'http://127.0.0.1:1', '--sample', 'not-a-cid'],
      ['gateways', '-g', 'http://127.0.0.1:1', '--timeout', 'soon']
    ]
    for (const args of cases) {
      const r = await runCli(args, { env })
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr.startsWith('cidget: ')).toBe(true)
      if (args.includes('ftp://x')) {
        expect(r.stderr.trim().split('\n')).toHaveLength(1)
        expect(r.stderr).toMatch(/CIDGET_ERR_BAD_OPTION/)
      }
    }
  })
})
