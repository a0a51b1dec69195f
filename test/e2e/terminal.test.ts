/**
 * What a person sees in a terminal: the CLI run in a real pseudo-terminal
 * (util-linux `script`), against test gateways on loopback that are
 * bandwidth-capped so that a download takes seconds. The bars, the lines, the
 * figures in them; pipes closed by their reader; paths no file can be
 * written to; a gateway nobody can reach; `status`, `list`, `rm --finished`.
 */
import { describe, it, expect, afterEach } from 'vitest'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MemoryBlocks, addDirectory, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import type { DownloadRecord } from '../../src/core/types.js'
import { CLI, IN_CI, KiB, MiB, childEnv, closedUrl, fileSha256, lastRecord, runCli, world, type World } from '../helpers.js'

const SCRIPT = '/usr/bin/script'
const why = existsSync(SCRIPT) ? undefined : `${SCRIPT} is missing (util-linux)`
if (why !== undefined && IN_CI) throw new Error(`the terminal tests are required in CI: ${why}`)
if (why !== undefined) console.log(`skipping the pseudo-terminal tests: ${why}`)

let w: World | undefined
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await w?.close()
  w = undefined
  for (const c of cleanups.splice(0)) await c()
})

function env (world: World): NodeJS.ProcessEnv {
  return { HOME: world.dir, CIDGET_STATE: world.state, CIDGET_INITIAL_BACKOFF_MS: '20', CIDGET_TIMEOUT_MS: '2000', TERM: 'xterm' }
}

const quote = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`

/** What a terminal shows, without its control sequences, one line per redraw (a move to the first column starts one). */
function screen (raw: string): string[] {
  // eslint-disable-next-line no-control-regex -- the terminal's control sequences are what is removed
  return raw.replace(/\x1b\[\d*G/g, '\n').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split(/[\r\n]+/).map(l => l.trimEnd()).filter(l => l !== '')
}

interface Pty {
  child: ChildProcessWithoutNullStreams
  lines: () => string[]
  /** Resolves once a line on the screen matches. */
  shows: (re: RegExp) => Promise<string>
  exit: Promise<number | null>
}

/** The CLI in a pseudo-terminal `cols` wide: stdout and stderr are a terminal, as when a person runs it. */
function inPty (args: string[], childEnvironment: NodeJS.ProcessEnv, cols = 160): Pty {
  const cmd = `stty cols ${cols} rows 40; exec ` + [process.execPath, CLI, ...args].map(quote).join(' ')
  // stdin stays open: `script` ends the session when its input ends
  const child = spawn(SCRIPT, ['-qfec', cmd, '/dev/null'], { env: childEnv(childEnvironment), stdio: 'pipe' })
  let raw = ''
  const waiters: Array<{ re: RegExp, resolve: (line: string) => void }> = []
  const check = (): void => {
    const lines = screen(raw)
    for (const waiter of [...waiters]) {
      const line = lines.find(l => waiter.re.test(l))
      if (line !== undefined) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve(line)
      }
    }
  }
  child.stdout.on('data', (d: Buffer) => { raw += d.toString(); check() })
  child.stderr.on('data', (d: Buffer) => { raw += d.toString(); check() })
  const exit = new Promise<number | null>(resolve => child.on('close', (code) => { resolve(code) }))
  cleanups.push(async () => { if (child.exitCode === null) child.kill('SIGKILL') })
  return {
    child,
    lines: () => screen(raw),
    shows: async (re) => await new Promise<string>((resolve, reject) => {
      waiters.push({ re, resolve })
      check()
      void exit.then(() => { check(); reject(new Error(`the terminal never showed ${String(re)}; it showed:\n${screen(raw).slice(-15).join('\n')}`)) })
    }),
    exit
  }
}

/** Speeds the bars showed, in bytes per second. */
function speeds (lines: string[]): number[] {
  const unit: Record<string, number> = { B: 1, KiB: KiB, MiB: MiB, GiB: 1024 * MiB }
  return lines.flatMap(l => [...l.matchAll(/\| (\d+(?:\.\d+)?) (B|KiB|MiB|GiB)\/s \|/g)].map(m => Number(m[1]) * (unit[m[2] ?? 'B'] ?? 1)))
}

/** Resolves once the gateway has sent `bytes` in all. */
async function sent (g: TestGateway, bytes: number): Promise<void> {
  await new Promise<void>(resolve => {
    const on = (): void => { if (g.bytesSent() >= bytes) { g.off('progress', on); resolve() } }
    g.on('progress', on)
    on()
  })
}

describe.skipIf(why !== undefined)('a download in a terminal', () => {
  it('names the download with its id at the start, prefixes its bar with id and name, and after a pause from another terminal resumes with a true speed', async () => {
    w = await world({ size: 4 * MiB, maxBytesPerSecond: MiB })
    // the gateway stalls once past 1 MiB, so that the pause below lands while the download runs (the run
    // sees a pause from another process at its next heartbeat: 50 ms here)
    w.gateways[0]!.addFault({ fault: { type: 'stall', afterBytes: 1.2 * MiB }, times: 1 })
    const out = join(w.dir, 'file.bin')
    const get = inPty(['get', w.cid, '-o', out, '-g', w.gateways[0]!.url], { ...env(w), CIDGET_HEARTBEAT_MS: '50' })
    // the id comes first, so that another terminal can act on it
    expect(await get.shows(/^download 1: downloading \/ipfs\//)).toContain('cidget pause 1')
    await get.shows(/^ 1 file\.bin [█░]+ \d+% \| \d+(\.\d+)? (KiB|MiB) of 4\.0 MiB \| .* \| ETA \S+ \| http:\/\/127\.0\.0\.1:\d+$/)
    await sent(w.gateways[0]!, MiB)
    const pause = await runCli(['pause', '1'], { env: env(w) })
    expect(pause.code, pause.stderr).toBe(0)
    expect(await get.exit).toBe(3)
    expect(get.lines().join('\n')).toMatch(/paused download 1 at .* of 4\.0 MiB; continue with: cidget resume 1/)

    const resume = inPty(['resume', '1'], env(w))
    expect(await resume.exit).toBe(0)
    const lines = resume.lines()
    expect(lines[0]).toMatch(/^download 1: resuming \/ipfs\//)
    const bars = lines.filter(l => l.startsWith(' 1 file.bin '))
    expect(bars.length).toBeGreaterThan(0)
    // the gateway sends 1 MiB/s at most: a speed that counted the bytes of the first run would show several times that
    const shown = speeds(bars)
    expect(shown.length).toBeGreaterThan(0)
    expect(Math.max(...shown)).toBeLessThanOrEqual(1.5 * MiB)
    expect(await fileSha256(out)).toBe(w.sha)
  })

  it('prints every line when no bar is ever drawn: the start, each gateway once, the repeats, that nothing could be reached, the end', async () => {
    w = await world({ size: 64 * KiB })
    const [a, b] = [await closedUrl(), await closedUrl()]
    const get = inPty(['get', w.cid, '-o', join(w.dir, 'x.bin'), '-g', a, '-g', b], env(w))
    expect(await get.exit).toBe(1)
    const lines = get.lines()
    expect(lines[0]).toMatch(/^download 1: downloading \/ipfs\//)
    expect(lines.filter(l => l.includes('→ switching gateway'))).toHaveLength(2)
    expect(lines.some(l => /^1 x\.bin: the same from http:\/\/127\.0\.0\.1:\d+ \d+ more times?$/.test(l))).toBe(true)
    expect(lines).toContainEqual(expect.stringMatching(/^1 x\.bin: no gateway could be reached \(connection refused by /))
    expect(lines.at(-1)).toMatch(/^download 1 failed: /)
  })

  it('fits each bar to an 80-column terminal: the ETA stays, the gateway goes first', async () => {
    w = await world({ size: 2 * MiB, maxBytesPerSecond: MiB })
    const get = inPty(['get', w.cid, '-o', join(w.dir, 'twenty-one-chars.bin'), '-g', w.gateways[0]!.url], env(w), 80)
    expect(await get.exit).toBe(0)
    const bars = get.lines().filter(l => l.startsWith(' 1 twenty-one-chars.bin '))
    expect(bars.length).toBeGreaterThan(0)
    for (const bar of bars) {
      expect([...bar].length).toBeLessThanOrEqual(79)
      expect(bar).toMatch(/ \d+% \| .* of 2\.0 MiB \| .*\/s \| ETA \S+$/)
    }
  })

  it('shows a tree, whose total is not known, as bytes and files without a bar or a percentage, against the size its root declares marked as an estimate', async () => {
    const blocks = new MemoryBlocks()
    const files = Array.from({ length: 8 }, (_, i) => ({ path: `tree/f${i}.bin`, content: seededBytes(64 * KiB, i + 1) }))
    const root = (await addDirectory(blocks, files)).toString()
    const g = await startTestGateway({ blocks, maxBytesPerSecond: 256 * KiB })
    cleanups.push(async () => { await g.close() })
    w = await world({ size: 1 })
    const get = inPty(['get', root, '-o', join(w.dir, 'tree'), '-g', g.url], env(w))
    expect(await get.exit).toBe(0)
    const bars = get.lines().filter(l => l.startsWith(' 1 tree '))
    expect(bars.length).toBeGreaterThan(0)
    for (const bar of bars) {
      // the root declares its links' sizes, the DAG's own bytes included: a little over the files' 512 KiB
      expect(bar).toMatch(/^ 1 tree {2}\d+(\.\d+)? (B|KiB|MiB) of ~51\d KiB(, \d+ files)? \| \d+(\.\d+)? (B|KiB|MiB)\/s \| http:/)
      expect(bar).not.toMatch(/[█░%]|ETA/)
    }
    expect(get.lines().at(-1)).toMatch(/^saved .*tree\/ \(512 KiB, every block verified/)
  })
})

describe('quiet failures', () => {
  it('a reader that closed the pipe (get --json | jq, then Ctrl-C) ends the command quietly, paused, without a stack trace', async () => {
    w = await world({ size: 4 * MiB, maxBytesPerSecond: MiB })
    const out = join(w.dir, 'file.bin')
    const child = spawn(process.execPath, [CLI, 'get', w.cid, '-o', out, '-g', w.gateways[0]!.url, '--json'], { env: childEnv(env(w)), stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const exit = new Promise<number | null>(resolve => child.on('close', (code) => { resolve(code) }))
    // the reader goes away (jq ended by the same Ctrl-C)
    child.stdout.destroy()
    await sent(w.gateways[0]!, 512 * KiB)
    child.kill('SIGINT')
    expect(await exit).toBe(3)
    expect(stderr).toContain('pausing')
    expect(stderr).not.toMatch(/EPIPE|Unhandled|at .*\(node:|Error:/)
    const status = await runCli(['status', '1', '--json'], { env: env(w) })
    expect(lastRecord(status.stdout).status).toBe('paused')
  })

  it('an output under /proc or /sys is refused at once with its reason (exit 2), and no download is recorded', async () => {
    w = await world({ size: 64 * KiB })
    for (const [output, reason] of [['/proc/nope/small.bin', /on proc, a kernel file system/], ['/sys/small.bin', /on sysfs, a kernel file system/]] as const) {
      const r = await runCli(['get', w.cid, '-o', output, '-g', w.gateways[0]!.url], { env: env(w) })
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toMatch(reason)
      expect(r.stderr).toContain('[CIDGET_ERR_OUTPUT_NOT_WRITABLE]')
    }
    expect((await runCli(['list'], { env: env(w) })).stdout.trim()).toBe('no downloads')
  })

  it('gateways nobody can reach: one line each, repeats folded into a count, then one line that says the network is unreachable', async () => {
    w = await world({ size: 64 * KiB })
    const a = await closedUrl()
    const b = await closedUrl()
    const r = await runCli(['get', w.cid, '-o', join(w.dir, 'x.bin'), '-g', a, '-g', b], { env: env(w) })
    expect(r.code).toBe(1)
    const lines = r.stderr.trim().split('\n')
    const retries = lines.filter(l => l.includes('→ switching gateway'))
    // one line per gateway however many times each was tried
    expect(retries.filter(l => l.includes(a))).toHaveLength(1)
    expect(retries.filter(l => l.includes(b))).toHaveLength(1)
    expect(lines.some(l => /^1 x\.bin: the same from http:\/\/127\.0\.0\.1:\d+ \d+ more times?$/.test(l))).toBe(true)
    expect(lines).toContainEqual(expect.stringMatching(/^1 x\.bin: no gateway could be reached \(connection refused by 127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+\): is the network up\?/))
  })

  it('the first signal ends the process even when the pause never finishes', async () => {
    // a Downloader whose pause never settles (a file system that never answers), in a real child process
    const script = `
      import { pauseOnSignals } from ${JSON.stringify(new URL('../../src/cli/context.ts', import.meta.url).pathname)}
      const dl = { runningIds: [1], pause: () => new Promise(() => {}) }
      pauseOnSignals(dl, 100)
      setInterval(() => {}, 1000)
      process.stdout.write('ready\\n')
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    await new Promise<void>(resolve => child.stdout.once('data', () => { resolve() }))
    const exit = new Promise<number | null>(resolve => child.on('close', (code) => { resolve(code) }))
    child.kill('SIGTERM')
    expect(await exit).toBe(143)
    expect(stderr).toContain('pausing')
    expect(stderr).toContain('the pause did not finish in 0.1 s; quitting')
  })
})

describe('status, list and rm', () => {
  it('status says why, when, and what to run next; list shows age and the error; rm --finished and --failed clear them', async () => {
    w = await world({ size: 256 * KiB })
    const g = ['-g', w.gateways[0]!.url]
    const ok = await runCli(['get', w.cid, '-o', join(w.dir, 'done.bin'), ...g], { env: env(w) })
    expect(ok.code, ok.stderr).toBe(0)
    const bad = await runCli(['get', w.cid, '-o', join(w.dir, 'bad.bin'), ...g, '--sha256', '0'.repeat(64)], { env: env(w) })
    expect(bad.code).toBe(1)
    await writeFile(join(w.dir, 'bad.bin.cidget-partial'), 'partial')

    const status = await runCli(['status', '2'], { env: env(w) })
    expect(status.stdout).toMatch(/^reason: {4}.*\[CIDGET_ERR_/m)
    expect(status.stdout).toMatch(/^added: {5}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s ago\)$/m)
    expect(status.stdout).toMatch(/^next: {6}cidget resume 2 \(to try again\), or cidget rm 2$/m)
    // verified mode makes no "attempts" of one request: none shown
    expect(status.stdout).not.toContain('attempts')

    const list = (await runCli(['list'], { env: env(w) })).stdout.split('\n')
    expect(list[0]).toMatch(/^ID +STATUS +PROGRESS +SIZE +ADDED +OUTPUT +NOTE$/)
    expect(list[2]).toMatch(/^2 +failed .* \d+s ago +\S*bad\.bin +[A-Z_]+: /)

    for (const args of [['rm'], ['rm', '1', '--finished'], ['rm', '--finished', '--delete-file']]) {
      const r = await runCli(args, { env: env(w) })
      expect(r.code, args.join(' ')).toBe(2)
    }
    const finished = await runCli(['rm', '--finished', '--json'], { env: env(w) })
    expect(JSON.parse(finished.stdout)).toEqual({ removed: [1], skipped: [] })
    expect(await fileSha256(join(w.dir, 'done.bin'))).toBe(w.sha)
    const failed = await runCli(['rm', '--failed'], { env: env(w) })
    expect(failed.stderr).toBe('removed 1 download: 2\n')
    expect(existsSync(join(w.dir, 'bad.bin.cidget-partial'))).toBe(false)
    expect((await runCli(['list', '--json'], { env: env(w) })).stdout.trim().split('\n').filter(l => l !== '').map(l => (JSON.parse(l) as DownloadRecord).id)).toEqual([])
  })

  it('every command\'s help ends with examples and shows each default once', async () => {
    const help = async (...args: string[]): Promise<string> => (await runCli([...args, '--help'])).stdout
    const commands = ['get', 'resume', 'pause', 'cancel', 'rm', 'status', 'list', 'gateways', 'serve', 'add', 'worker', 'token', 'demo']
    for (const c of commands) expect(await help(c), c).toMatch(/\nExamples:\n( {2}cidget .*\n)+$/)
    expect(await help()).toMatch(/\nExamples:\n/)
    const serve = (await help('serve')).replace(/\s+/g, ' ')
    expect(serve.match(/\(default: 7690\)/g)).toHaveLength(1)
    const get = (await help('get')).replace(/\s+/g, ' ')
    expect(get).toMatch(/--timeout <ms> idle timeout: longest wait without a byte \(default: 30000\)/)
    expect(get).toMatch(/--max-resume-attempts <n> resumes after interruptions before giving up \(default: 3\)/)
  })
})
