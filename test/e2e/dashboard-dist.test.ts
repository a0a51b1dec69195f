/**
 * The dashboard as the build ships it: the CLI bundle (`cidget serve`) and the
 * library (dist/server/) serve the same page, stylesheet and script as the
 * sources (src/server/dashboard/public/ and the client bundled from client/).
 */
import { describe, it, expect } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { CLI } from '../helpers.js'
import { DASHBOARD_CSS, DASHBOARD_CSS_PATH, DASHBOARD_HTML, DASHBOARD_JS, DASHBOARD_JS_PATH } from '../../src/server/dashboard/assets.js'

const FILES: ReadonlyArray<readonly [string, string, string]> = [
  ['/', 'index.html', DASHBOARD_HTML],
  [DASHBOARD_CSS_PATH, 'dashboard.css', DASHBOARD_CSS],
  [DASHBOARD_JS_PATH, 'dashboard.js', DASHBOARD_JS]
]

describe('the built dashboard', () => {
  it('lies beside both modules that read it, as the sources make it', async () => {
    for (const dir of ['../../dist/server/dashboard/public/', '../../dist/bin/public/']) {
      for (const [, name, text] of FILES) expect(await readFile(new URL(dir + name, import.meta.url), 'utf8'), dir + name).toBe(text)
    }
  })

  it('is what `cidget serve` serves', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'cidget-dashboard-dist-'))
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--no-auth', '--state', join(tmp, 'state.db'), '--dir', join(tmp, 'downloads')],
      { env: { ...process.env, HOME: tmp, CIDGET_TOKEN: '', CIDGET_SERVER: '' }, stdio: ['ignore', 'ignore', 'pipe'] })
    try {
      let stderr = ''
      const base = await new Promise<string>((resolve, reject) => {
        child.stderr.setEncoding('utf8').on('data', (s: string) => {
          stderr += s
          const m = /cidget serving (http:\/\/\S+?)\/ /.exec(stderr)
          if (m !== null) resolve(m[1]!)
        })
        child.once('exit', (code) => reject(new Error(`cidget serve exited (${code}): ${stderr}`)))
      })
      for (const [path, , text] of FILES) {
        const res = await request(base + path)
        expect(res.statusCode, path).toBe(200)
        expect(res.headers['content-security-policy']).toContain("default-src 'none'")
        expect(await res.body.text(), path).toBe(text)
      }
    } finally {
      child.kill('SIGKILL')
      await rm(tmp, { recursive: true, force: true })
    }
  })
})
