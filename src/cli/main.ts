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
import { addExamples } from './examples.js'

/**
 * A reader of standard output or error that went away (`cidget … --json | jq`
 * and Ctrl-C, `| head`) is not an error to report: what it would have read is
 * dropped, and the command ends as it would have (its state is right). Any
 * other error there (a full disk behind `>`) is said once on stderr.
 */
let outputLost = false
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    // messages for people that could not be shown change nothing; the command's output is its result
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED' || stream === process.stderr || outputLost) return
    outputLost = true
    // `get -o -` listens itself and says it in its own words
    if (stream.listenerCount('error') === 1) process.stderr.write(`cidget: cannot write to standard output: ${err.message}\n`)
  })
}
// what the command printed did not reach its file (a full disk behind `>`): it did not do what was asked
process.on('exit', () => { if (outputLost && (process.exitCode ?? 0) === EXIT.SUCCESS) process.exitCode = EXIT.FAILED })

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

addExamples(program)

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
