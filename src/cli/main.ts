#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { registerGet } from './commands/get.js'
import { registerResume } from './commands/resume.js'
import { registerPause, registerCancel, registerRm } from './commands/control.js'
import { registerStatus, registerList } from './commands/status.js'
import { registerDemo } from './commands/demo.js'
import { registerGateways } from './commands/gateways.js'
import { registerServe } from './commands/serve.js'
import { registerAdd } from './commands/add.js'
import { registerWorker } from './commands/worker.js'
import { registerToken } from './commands/token.js'
import { EXIT } from './exit.js'

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

const program = new Command('cidget')
  .description('Resumable, verifying downloads of IPFS content over HTTP gateways')
  .version(pkg.version)
  .showHelpAfterError('(run "cidget help" for usage)')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => { write(`cidget: ${str.replace(/^error: /, '')}`) } })

registerGet(program)
registerResume(program)
registerPause(program)
registerCancel(program)
registerRm(program)
registerStatus(program)
registerList(program)
registerGateways(program)
registerServe(program)
registerAdd(program)
registerWorker(program)
registerToken(program)
registerDemo(program)

// Subcommands exit through the same override as the program.
for (const cmd of program.commands) {
  cmd.exitOverride()
  cmd.configureOutput({ outputError: (str, write) => { write(`cidget: ${str.replace(/^error: /, '')}`) } })
}

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    // help and --version exit 0; help shown for a missing command, and every parse error, are usage errors
    process.exitCode = err.exitCode === 0 ? EXIT.SUCCESS : EXIT.USAGE
  } else {
    process.stderr.write(`cidget: ${(err as Error).message}\n`)
    process.exitCode = EXIT.FAILED
  }
}
