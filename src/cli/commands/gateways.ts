import type { Command } from 'commander'
import { DEFAULT_GATEWAYS, DEFAULT_ROUTERS } from '../../core/defaults.js'
import { normalizeEndpoint } from '../../engine/options.js'
import { ProviderFinder } from '../../routing/providers.js'
import { normalizeGateway } from '../../target/parse.js'
import { HttpClient } from '../../gateways/http.js'
import { probeGateways, type GatewayProbe } from '../../gateways/probe.js'
import { loadSettings } from '../config.js'
import { action, gatewaysWithEnv, parseIntOption, proxyFrom } from '../context.js'
import { EXIT } from '../exit.js'
import { humanBytes } from '../format.js'

/** Idle timeout of each probe request unless `--timeout` says otherwise. */
export const DEFAULT_PROBE_TIMEOUT_MS = 10_000

interface GatewaysFlags {
  gateway?: string[]
  json?: boolean
  timeout: number
  sample?: string
  proxy?: string
  router?: string[]
  routing?: boolean
  allowLocal?: boolean
}

/** A probe of a provider found by routing: the router that named it. */
type Row = GatewayProbe & { foundBy?: string }

function yesNo (v: boolean | null): string {
  return v === null ? '?' : v ? 'yes' : 'no'
}

/** Throughput in the progress bar's units (KiB/s, MiB/s: powers of 1024). */
function perSecond (bps: number): string {
  return `${humanBytes(Math.round(bps))}/s`
}

/** The table `cidget gateways` prints. */
export function probeTable (rows: Row[]): string {
  const head = ['GATEWAY', 'REACHABLE', 'RAW', 'CAR', 'RANGE', 'LATENCY', 'THROUGHPUT']
  const body = rows.map(r => r.reachable
    ? [
        r.foundBy === undefined ? r.gateway : `${r.gateway} (provider)`,
        'yes',
        yesNo(r.trustlessRaw),
        yesNo(r.trustlessCar),
        yesNo(r.range),
        r.latencyMs === null ? '?' : `${r.latencyMs.toFixed(r.latencyMs < 10 ? 1 : 0)} ms`,
        r.throughputBps === null ? '-' : perSecond(r.throughputBps)
      ]
    : [r.foundBy === undefined ? r.gateway : `${r.gateway} (provider)`, `no (${r.error ?? '?'})`, '-', '-', '-', '-', '-'])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map(row => (row[i] ?? '').length)))
  const line = (cols: string[]): string => cols.map((c, i) => i === cols.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join('  ')
  return [line(head), ...body.map(line)].join('\n')
}

/** The providers of the sample's CID that the routers name (their gateway URLs, and which router). */
async function providersOf (sample: string, flags: GatewaysFlags, http: HttpClient): Promise<Array<{ gateway: string, router: string }>> {
  const routers = (flags.router ?? loadSettings().routers ?? [...DEFAULT_ROUTERS]).map((r) => normalizeEndpoint(r, 'router'))
  const cid = sample.replace(/^\/ipfs\//, '').split('/')[0] ?? ''
  const out: Array<{ gateway: string, router: string }> = []
  await new ProviderFinder({ http, routers, allowLocal: flags.allowLocal === true }).find(cid, (urls, router) => {
    for (const gateway of urls) if (!out.some((p) => p.gateway === gateway)) out.push({ gateway, router })
  })
  return out
}

export function registerGateways (program: Command): void {
  program.command('gateways')
    .description('probe gateways: reachability, trustless raw/CAR support, Range support, latency and throughput')
    .option('-g, --gateway <url>', 'gateway base URL; repeat for several (replaces the default list)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--sample <cid>', 'content the gateways have (CID or CID/path), to test Range and measure throughput')
    .option('--timeout <ms>', 'idle timeout of each request', parseIntOption('--timeout', 1), DEFAULT_PROBE_TIMEOUT_MS)
    .option('--json', 'print the results as one JSON array')
    .option('--proxy <url>', 'HTTP proxy for every request (default: the config file\'s proxy, else HTTPS_PROXY / HTTP_PROXY / ALL_PROXY; NO_PROXY applies)')
    .option('--router <url>', `with --sample: delegated router asked for providers of the sample; repeat for several (default: ${DEFAULT_ROUTERS.join(', ')})`, (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--no-routing', 'with --sample: do not look up providers')
    .option('--allow-local', 'keep providers whose addresses are loopback, private or link-local')
    .action(async (flags: GatewaysFlags) => {
      await action(async () => {
        // -g replaces the list; only without it do the config file and CIDGET_GATEWAYS count.
        const configured = loadSettings().gateways
        const urls = flags.gateway ?? gatewaysWithEnv(configured) ?? configured ?? [...DEFAULT_GATEWAYS]
        const proxy = proxyFrom(flags.proxy)
        const http = new HttpClient({ timeoutMs: flags.timeout, ...(proxy === undefined ? {} : { proxy }) })
        try {
          const found = flags.sample === undefined || flags.routing === false ? [] : await providersOf(flags.sample, flags, http)
          const configuredUrls = new Set(urls.map(normalizeGateway))
          const providers = found.filter((p) => !configuredUrls.has(p.gateway))
          const foundBy = new Map(providers.map((p) => [p.gateway, p.router]))
          const probed = await probeGateways([...urls, ...providers.map((p) => p.gateway)], { http, ...(flags.sample === undefined ? {} : { sample: flags.sample }) })
          const results: Row[] = probed.map((r) => { const by = foundBy.get(r.gateway); return by === undefined ? r : { ...r, foundBy: by } })
          if (flags.json === true) {
            process.stdout.write(JSON.stringify(results) + '\n')
          } else {
            process.stdout.write(probeTable(results) + '\n')
            if (flags.sample === undefined) process.stderr.write('(Range and throughput need --sample CID: content the gateways have)\n')
            else if (flags.routing !== false) process.stderr.write(`(${providers.length} provider(s) of the sample found by routing, marked "provider")\n`)
          }
          return results.some(r => r.reachable) ? EXIT.SUCCESS : EXIT.FAILED
        } finally {
          await http.close()
        }
      })
    })
}
