import { InvalidArgumentError, type Command } from 'commander'
import { MODES, type Mode } from '../../core/types.js'
import { CidgetError } from '../../core/errors.js'
import { action, printRecord, EXIT } from '../context.js'
import { DEFAULT_SERVER, RemoteClient } from '../remote.js'

interface AddFlags {
  server?: string
  token?: string
  output?: string
  mode?: string
  sha256?: string
  gateway?: string[]
  priority?: number
  json?: boolean
  quiet?: boolean
}

export function registerAdd (program: Command): void {
  program.command('add')
    .description('queue a download on a running `cidget serve` (it starts at once; follow it with `cidget status ID --server URL`)')
    .argument('<target>', 'CID, /ipfs/CID[/path], ipfs://CID[/path] or https://gateway/ipfs/CID[/path]')
    .option('--server <url>', `the service (default: $CIDGET_SERVER or ${DEFAULT_SERVER})`)
    .option('--token <token>', 'API token (default: $CIDGET_TOKEN, else the token file next to the default state)')
    .option('-o, --output <path>', 'output path relative to the service\'s --dir (default: the target\'s name)')
    .option('--mode <mode>', 'verified, path or car (default: verified)')
    .option('--sha256 <hex>', 'expected SHA-256 of the file')
    .option('-g, --gateway <url>', 'gateway base URL; repeat for several (default: the service\'s list)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--priority <n>', 'higher runs first (default: 0)', (v: string) => {
      if (!/^-?\d{1,7}$/.test(v.trim())) throw new InvalidArgumentError(`must be an integer, got "${v}"`)
      return Number(v)
    })
    .option('--json', 'print the queued record as JSON')
    .option('-q, --quiet', 'print nothing but errors')
    .action(async (target: string, flags: AddFlags) => {
      await action(async () => {
        if (flags.mode !== undefined && !MODES.includes(flags.mode as Mode)) {
          throw new CidgetError('CIDGET_ERR_BAD_OPTION', `--mode must be verified, path or car, got "${flags.mode}"`)
        }
        const client = await RemoteClient.from(flags)
        const rec = await client.add({
          target,
          ...(flags.output === undefined ? {} : { output: flags.output }),
          ...(flags.mode === undefined ? {} : { mode: flags.mode as Mode }),
          ...(flags.sha256 === undefined ? {} : { sha256: flags.sha256 }),
          ...(flags.gateway === undefined ? {} : { gateways: flags.gateway }),
          ...(flags.priority === undefined ? {} : { priority: flags.priority })
        })
        if (flags.json === true) printRecord(rec, true)
        else if (flags.quiet !== true) process.stderr.write(`queued download ${rec.id}: ${rec.target} → ${rec.output} (${client.url})\n`)
        return EXIT.SUCCESS
      })
    })
}
