/** The dashboard's files as the service serves them (the browser test is test/e2e/dashboard.test.ts). */
import { describe, it, expect } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Downloader } from '../../src/engine/downloader.js'
import { buildServer } from '../../src/server/app.js'
import { DASHBOARD_CSS, DASHBOARD_CSS_PATH, DASHBOARD_HTML, DASHBOARD_JS, DASHBOARD_JS_PATH } from '../../src/server/dashboard/assets.js'

describe('dashboard page', () => {
  it('links the stylesheet and the script at the paths they are served at', () => {
    expect(DASHBOARD_HTML).toContain(`<link rel="stylesheet" href="${DASHBOARD_CSS_PATH}">`)
    expect(DASHBOARD_HTML).toContain(`<script type="module" src="${DASHBOARD_JS_PATH}"></script>`)
  })

  it('builds its DOM with textContent, never from HTML strings', () => {
    expect(DASHBOARD_JS).toContain('textContent')
    expect(DASHBOARD_JS).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/)
  })

  it('offers each mode once, verified (the engine\'s default) chosen', () => {
    const select = /<select id="add-mode"[^>]*>([\s\S]*?)<\/select>/.exec(DASHBOARD_HTML)?.[1] ?? ''
    expect([...select.matchAll(/<option value="([^"]*)"/g)].map(m => m[1])).toEqual(['verified', 'path', 'car'])
    expect(select).toMatch(/<option value="verified"[^>]* selected>/)
  })

  it('says it is loading until the list came, not that there are no downloads', () => {
    expect(DASHBOARD_HTML).toMatch(/data-testid="downloads-empty"><td[^>]*>Loading downloads…</)
    expect(DASHBOARD_HTML).not.toContain('No downloads yet')
  })

  it('asks in the page before deleting, not with window.confirm', () => {
    expect(DASHBOARD_HTML).toMatch(/<dialog id="confirm"/)
    expect(DASHBOARD_JS).not.toMatch(/\bconfirm\s*\(|\balert\s*\(|\bprompt\s*\(/)
  })

  it('are served without a token, with a strict CSP and an ETag', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'cidget-dashboard-'))
    const dl = await Downloader.open({ routers: [], state: join(tmp, 'state.db'), gateways: ['http://127.0.0.1:9'] })
    const app = await buildServer({ downloader: dl, dir: join(tmp, 'downloads'), token: 'secret' })
    try {
      for (const [url, type] of [['/', 'text/html'], ['/dashboard.css', 'text/css'], ['/dashboard.js', 'text/javascript']]) {
        const res = await app.inject({ url })
        expect(res.statusCode, url).toBe(200)
        expect(res.headers['content-type']).toContain(type)
        expect(res.headers['content-security-policy']).toContain("default-src 'none'")
        expect(res.headers['content-security-policy']).toContain("script-src 'self'")
        expect(res.headers['x-content-type-options']).toBe('nosniff')
        const etag = res.headers.etag as string
        expect(etag).toMatch(/^"[\w-]+"$/)
        expect((await app.inject({ url, headers: { 'if-none-match': etag } })).statusCode).toBe(304)
      }
      // the data is behind the token
      expect((await app.inject({ url: '/api/downloads' })).statusCode).toBe(401)
    } finally {
      await app.close()
      await dl.close()
      await rm(tmp, { recursive: true, force: true })
    }
  })

  it('load nothing from elsewhere and the script parses', () => {
    for (const text of [DASHBOARD_HTML, DASHBOARD_CSS, DASHBOARD_JS]) {
      expect(text).not.toMatch(/(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i)
      expect(text).not.toMatch(/@import|url\(\s*["']?(?:https?:)?\/\//i)
    }
    // a module without imports parses as a function body: a syntax error fails here, not in a browser
    expect(() => new Function(DASHBOARD_JS)).not.toThrow()
  })
})
