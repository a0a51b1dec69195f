import type { Command } from 'commander'
import { DEFAULT_GATEWAYS } from '../../core/defaults.js'
import { HttpClient } from '../../gateways/http.js'
import { probeGateways, type GatewayProbe } from '../../gateways/probe.js'
import { loadSettings } from '../config.js'
import { action, gatewaysWithEnv, parseIntOption, proxyFrom } from '../context.js'
import { EXIT } from '../exit.js'

/** Idle timeout of each probe request unless `--timeout` says otherwise. */
export const DEFAULT_PROBE_TIMEOUT_MS = 10_000

interface GatewaysFlags {
  gateway?: string[]
  json?: boolean
  timeout: number
  sample?: string
  proxy?: string
}

function yesNo (v: boolean | null): string {
  return v === null ? '?' : v ? 'yes' : 'no'
}

function megabytesPerSecond (bps: number): string {
  const mb = bps / 1e6
  return `${mb.toFixed(mb >= 100 ? 0 : mb >= 10 ? 1 : 2)} MB/s`
}

/** The table `cidget gateways` prints. */
export function probeTable (rows: GatewayProbe[]): string {
  const head = ['GATEWAY', 'REACHABLE', 'RAW', 'CAR', 'RANGE', 'LATENCY', 'THROUGHPUT']
  const body = rows.map(r => r.reachable
    ? [
        r.gateway,
        'yes',
        yesNo(r.trustlessRaw),
        yesNo(r.trustlessCar),
        yesNo(r.range),
        r.latencyMs === null ? '?' : `${r.latencyMs.toFixed(r.latencyMs < 10 ? 1 : 0)} ms`,
        r.throughputBps === null ? '-' : megabytesPerSecond(r.throughputBps)
      ]
    : [r.gateway, `no (${r.error ?? '?'})`, '-', '-', '-', '-', '-'])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map(row => (row[i] ?? '').length)))
  const line = (cols: string[]): string => cols.map((c, i) => i === cols.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join('  ')
  return [line(head), ...body.map(line)].join('\n')
}

export function registerGateways (program: Command): void {
  program.command('gateways')
    .description('probe gateways: reachability, trustless raw/CAR support, Range support, latency and throughput')
    .option('-g, --gateway <url>', 'gateway base URL; repeat for several (replaces the default list)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--sample <cid>', 'content the gateways have (CID or CID/path), to test Range and measure throughput')
    .option('--timeout <ms>', 'idle timeout of each request', parseIntOption('--timeout', 1), DEFAULT_PROBE_TIMEOUT_MS)
    .option('--json', 'print the results as one JSON array')
    .option('--proxy <url>', 'HTTP proxy for every request (default: the config file\'s proxy, else HTTPS_PROXY / HTTP_PROXY / ALL_PROXY; NO_PROXY applies)')
    .action(async (flags: GatewaysFlags) => {
      await action(async () => {
        // -g replaces the list; only without it do the config file and CIDGET_GATEWAYS count.
        const configured = loadSettings().gateways
        const urls = flags.gateway ?? gatewaysWithEnv(configured) ?? configured ?? [...DEFAULT_GATEWAYS]
        const proxy = proxyFrom(flags.proxy)
        const http = new HttpClient({ timeoutMs: flags.timeout, ...(proxy === undefined ? {} : { proxy }) })
        try {
          const results = await probeGateways(urls, { http, ...(flags.sample === undefined ? {} : { sample: flags.sample }) })
          if (flags.json === true) {
            process.stdout.write(JSON.stringify(results) + '\n')
          } else {
            process.stdout.write(probeTable(results) + '\n')
            if (flags.sample === undefined) process.stderr.write('(Range and throughput need --sample CID: content the gateways have)\n')
          }
          return results.some(r => r.reachable) ? EXIT.SUCCESS : EXIT.FAILED
        } finally {
          await http.close()
        }
      })
    })
}
