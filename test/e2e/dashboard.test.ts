/**
 * The web dashboard in a real browser: Debian's chromium driven by playwright-core,
 * against the real service (buildServer) in this process and a real test gateway
 * on loopback, bandwidth-capped so that downloads take seconds. Everything is
 * awaited through the DOM (the page's data-testids), never through sleeps.
 *
 * Without /usr/bin/chromium the browser tests are skipped with the reason, except
 * under CI=true, where `.ci/run` installs it and its absence is a failure.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative, isAbsolute } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { chromium, type Browser, type Page } from 'playwright-core'
import { MemoryBlocks, addDirectory, addFile, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { Downloader } from '../../src/engine/downloader.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import type { DownloadRecord } from '../../src/core/types.js'
import { buildServer } from '../../src/server/app.js'
import { DASHBOARD_HTML, DASHBOARD_JS, DASHBOARD_CSS } from '../../src/server/dashboard/assets.js'
import { fileSha256, sha256, MiB } from '../helpers.js'

const CHROMIUM = '/usr/bin/chromium'
const OUTPUT_DIR = new URL('../../test-output/', import.meta.url).pathname
const why = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing (apt-get install -y chromium)`
if (why !== undefined && process.env.CI === 'true') throw new Error(`the dashboard browser test is required in CI: ${why}`)
if (why !== undefined) console.log(`skipping the dashboard browser test: ${why}`)

/**
 * The little of the DOM that the predicates given to page.waitForFunction use: they run in the
 * page (functions, not strings: the dashboard's CSP forbids eval), and this project's tsconfig has
 * no DOM library.
 */
declare const document: {
  querySelector (selector: string): { getAttribute (name: string): string | null, textContent: string | null } | null
}

interface Content { cid: string, sha: string, size: number }

async function content (blocks: MemoryBlocks, size: number, seed: number): Promise<Content> {
  const data = seededBytes(size, seed)
  return { cid: (await addFile(blocks, data)).toString(), sha: sha256(data), size }
}

describe.skipIf(why !== undefined)('web dashboard in chromium', () => {
  let browser: Browser
  let gw: TestGateway
  let dl: Downloader
  let app: FastifyInstance
  let tmp: string
  let dir: string
  let base: string
  const token = randomBytes(16).toString('hex')
  const blocks = new MemoryBlocks()
  let small: Content
  let large: Content
  let third: Content
  let tree: { cid: string, files: Array<{ path: string, content: Uint8Array }> }
  const pageErrors: string[] = []

  beforeAll(async () => {
    small = await content(blocks, 3 * MiB, 11)
    large = await content(blocks, 8 * MiB, 12)
    third = await content(blocks, 1 * MiB, 13)
    const files = [
      { path: 'a.bin', content: seededBytes(300 * 1024, 21) },
      { path: 'sub/b.bin', content: seededBytes(200 * 1024, 22) },
      { path: 'sub/c.txt', content: new TextEncoder().encode('hello from a directory\n') }
    ]
    tree = { cid: (await addDirectory(blocks, files)).toString(), files }
    // 2 MiB/s shared by every request: the small file takes ~1.5 s, the large one ~4 s
    gw = await startTestGateway({ blocks, maxBytesPerSecond: 2 * MiB, chunkSize: 16 * 1024 })
    tmp = await mkdtemp(join(tmpdir(), 'cidget-dashboard-'))
    dir = join(tmp, 'downloads')
    await mkdir(dir)
    // names resolve through the gateway's records only: no router, no resolver is asked
    dl = await Downloader.open({ state: join(tmp, 'state.db'), gateways: [gw.url], routers: [], dnsResolvers: ['system'], nameSettleMs: 10 })
    app = await buildServer({ downloader: dl, dir, token })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const addr = app.server.address()
    if (addr === null || typeof addr === 'string') throw new Error('no port')
    base = `http://127.0.0.1:${addr.port}`
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run', '--disable-quic']
    })
  })

  afterAll(async () => {
    await browser?.close()
    await app?.close()
    await dl?.close()
    await gw?.close()
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true })
  })

  async function openPage (url: string): Promise<Page> {
    pageErrors.length = 0
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    page.on('pageerror', (err) => { pageErrors.push(`pageerror: ${err.message}`) })
    page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`) })
    await page.goto(url)
    return page
  }

  async function addThroughForm (page: Page, target: string, output: string): Promise<number> {
    await page.fill('[data-testid=add-target]', target)
    await page.fill('[data-testid=add-output]', output)
    await page.selectOption('[data-testid=add-mode]', 'verified')
    const answer = page.waitForResponse(r => r.url().endsWith('/api/downloads') && r.request().method() === 'POST')
    await page.click('[data-testid=add-submit]')
    const res = await answer
    expect(res.status()).toBe(201)
    const rec = await res.json() as DownloadRecord
    await page.waitForSelector(`[data-testid=download-row-${rec.id}]`)
    return rec.id
  }

  /** Waits until download `id`'s bar shows a percentage within [min, max]. */
  async function waitForPercent (page: Page, id: number, min: number, max = 100): Promise<void> {
    await page.waitForFunction(([id, min, max]) => {
      const v = Number(document.querySelector(`[data-testid=progress-${id}]`)?.getAttribute('aria-valuenow') ?? NaN)
      return v >= min && v <= max
    }, [id, min, max] as const)
  }

  /** Waits until the element with this data-testid has a text that matches `re`. */
  async function waitForText (page: Page, testid: string, re: RegExp): Promise<void> {
    await page.waitForFunction(([testid, source]) => new RegExp(source).test(document.querySelector(`[data-testid=${testid}]`)?.textContent ?? ''), [testid, re.source] as const)
  }

  function inside (path: string): boolean {
    const rel = relative(dir, path)
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)
  }

  it('adds downloads, shows live progress to 100 %, pauses and resumes, and the files are right', async () => {
    const page = await openPage(`${base}/#token=${token}`)
    // the token leaves the address bar at once and lives in the tab's session
    await page.waitForSelector('[data-testid=connection][data-state=live]')
    expect(new URL(page.url()).hash).toBe('')
    expect(await page.isHidden('[data-testid=token-section]')).toBe(true)
    await page.waitForSelector('[data-testid=gateway-row]')

    // 1: added through the form, watched to the end
    const first = await addThroughForm(page, small.cid, 'small.bin')
    await page.waitForSelector(`[data-testid=status-${first}]:has-text("in progress")`)
    // a live bar: some bytes and a percentage below 100 while it runs
    await waitForPercent(page, first, 1, 99)
    // bytes of total, percentage, speed, ETA and gateway (speed needs a quarter second of data)
    await waitForText(page, `progress-text-${first}`, /\d(?: B| KiB| MiB) \/ 3\.00 MiB · \d+% · [\d.]+ [KM]iB\/s · ETA \d+:\d\d · via 127\.0\.0\.1:\d+$/)
    await page.waitForSelector(`[data-testid=status-${first}]:has-text("success")`)
    await page.waitForSelector(`[data-testid=progress-${first}][aria-valuenow="100"]`)
    expect(await page.textContent(`[data-testid=progress-text-${first}]`)).toContain('3.00 MiB / 3.00 MiB · 100%')
    expect(await page.isDisabled(`[data-testid=pause-${first}]`)).toBe(true)
    expect(await page.isDisabled(`[data-testid=resume-${first}]`)).toBe(true)

    // 2: a larger one, paused part-way and resumed
    const second = await addThroughForm(page, large.cid, 'large.bin')
    await waitForPercent(page, second, 10)
    await page.click(`[data-testid=pause-${second}]`)
    await page.waitForSelector(`[data-testid=status-${second}]:has-text("paused")`)
    await page.waitForSelector(`[data-testid=resume-${second}]:enabled`)
    expect(await page.isDisabled(`[data-testid=pause-${second}]`)).toBe(true)
    const paused = await dl.get(second)
    expect(paused?.status).toBe('paused')
    expect(paused?.currentSize).toBeGreaterThan(0)
    expect(paused?.currentSize).toBeLessThan(large.size)
    expect(existsSync(paused!.output)).toBe(false) // nothing at the final path before it is verified
    await page.waitForSelector('[data-testid=announcer]:has-text("is paused")', { state: 'attached' })
    await mkdir(OUTPUT_DIR, { recursive: true })
    await page.screenshot({ path: join(OUTPUT_DIR, 'dashboard-paused.png'), fullPage: true, animations: 'disabled' })
    await page.click(`[data-testid=resume-${second}]`)
    await page.waitForSelector(`[data-testid=status-${second}]:has-text("success")`, { timeout: 30_000 })
    await page.waitForSelector(`[data-testid=progress-${second}][aria-valuenow="100"]`)

    // 3: a directory, its files counted
    const folder = await addThroughForm(page, tree.cid, 'tree')
    await page.waitForSelector(`[data-testid=status-${folder}]:has-text("success")`)
    await page.waitForSelector(`[data-testid=progress-text-${folder}]:has-text("${tree.files.length} files")`)

    // newest first
    const rows = await page.$$eval('[data-testid^=download-row-]', trs => trs.map(tr => tr.getAttribute('data-testid')))
    expect(rows).toEqual([`download-row-${folder}`, `download-row-${second}`, `download-row-${first}`])

    // the files, on disk, inside the service's directory, with the right bytes
    for (const [id, c] of [[first, small], [second, large]] as const) {
      const rec = await dl.get(id)
      expect(rec?.status).toBe('success')
      expect(inside(rec!.output)).toBe(true)
      expect((await stat(rec!.output)).size).toBe(c.size)
      expect(await fileSha256(rec!.output)).toBe(c.sha)
      expect(rec!.hash).toBe(c.sha)
    }
    const folderRec = await dl.get(folder)
    expect(inside(folderRec!.output)).toBe(true)
    for (const f of tree.files) expect(await fileSha256(join(folderRec!.output, f.path))).toBe(sha256(f.content))

    // the gateway table counts what was fetched
    const gwText = await page.textContent(`[data-testid=gateway-row][data-gateway="${gw.url}"]`)
    expect(gwText).toContain(gw.url)
    await page.waitForFunction((url) => Number(document.querySelector(`[data-testid=gateway-row][data-gateway="${url}"] td:nth-child(2)`)?.textContent) > 0, gw.url)

    await mkdir(OUTPUT_DIR, { recursive: true })
    await page.screenshot({ path: join(OUTPUT_DIR, 'dashboard.png'), fullPage: true, animations: 'disabled' })
    await page.close()
    expect(pageErrors).toEqual([])
  })

  it('shows a name and, once its download starts, the CID it resolved to', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = peerIdFromPrivateKey(key).toCID().toString(base36)
    gw.setIpnsRecord(name, marshalIPNSRecord(await createIPNSRecord(key, `/ipfs/${tree.cid}`, 1, 3_600_000)))
    const page = await openPage(`${base}/#token=${token}`)
    const id = await addThroughForm(page, `/ipns/${name}/sub/c.txt`, 'named.txt')
    await waitForText(page, `target-${id}`, new RegExp(`/ipns/${name}/sub/c\\.txt → /ipfs/${tree.cid}/sub/c\\.txt`))
    await waitForText(page, `status-${id}`, /done|success|complete/i)
    await page.close()
    expect(pageErrors).toEqual([])
  })

  it('sets the limit for all downloads and a download\'s own limit', async () => {
    const page = await openPage(`${base}/#token=${token}`)
    await waitForText(page, 'limit-status', /No limit/)
    await page.fill('[data-testid=limit-input]', '3M')
    await page.click('[data-testid=limit-submit]')
    await waitForText(page, 'limit-status', /Limit: 3\.00 MiB\/s for all downloads/)
    expect(dl.limitRate).toBe(3 * MiB)
    await page.fill('[data-testid=limit-input]', 'fast')
    await page.click('[data-testid=limit-submit]')
    await page.waitForSelector('[data-testid=limit-error]:not([hidden])')
    expect(dl.limitRate).toBe(3 * MiB)
    await page.fill('[data-testid=limit-input]', '')
    await page.click('[data-testid=limit-submit]')
    await waitForText(page, 'limit-status', /No limit/)
    expect(dl.limitRate).toBeUndefined()
    await page.fill('[data-testid=add-limit]', '4M')
    const id = await addThroughForm(page, third.cid, 'limited.bin')
    expect((await dl.get(id))?.limitRate).toBe(4 * MiB)
    await waitForText(page, `status-${id}`, /done|success|complete/i)
    await page.close()
    // the refused rate answered 400: the page said so in the form, nothing went to the console
    expect(pageErrors.filter((e) => !e.includes('400'))).toEqual([])
  })

  it('reconnects after the event socket drops and shows what happened meanwhile', async () => {
    const page = await openPage(`${base}/#token=${token}`)
    await page.waitForSelector('[data-testid=connection][data-state=live]')
    const context = page.context()
    await context.setOffline(true)
    for (const client of app.websocketServer.clients) client.terminate()
    await page.waitForSelector('[data-testid=connection]:not([data-state=live])')
    // added while the page is disconnected: it only learns of it by refreshing after reconnecting
    const job = await dl.add(third.cid, { output: join(dir, 'third.bin') })
    await job.done
    await context.setOffline(false)
    await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: 30_000 })
    await page.waitForSelector(`[data-testid=status-${job.id}]:has-text("success")`)
    await page.close()
    // the page's own failed requests while offline are logged by the browser; nothing else may fail
    expect(pageErrors.filter(e => !e.includes('ERR_INTERNET_DISCONNECTED'))).toEqual([])
  })

  it('asks for the token when there is none or it is refused', async () => {
    const page = await openPage(`${base}/`)
    await page.waitForSelector('[data-testid=token-section]:visible')
    await page.fill('[data-testid=token-input]', 'wrong')
    await page.click('[data-testid=token-submit]')
    await page.waitForSelector('#token-reason:has-text("refused")')
    await page.fill('[data-testid=token-input]', token)
    await page.click('[data-testid=token-submit]')
    await page.waitForSelector('[data-testid=connection][data-state=live]')
    await page.waitForSelector('[data-testid^=download-row-]')
    expect(await page.isHidden('[data-testid=token-section]')).toBe(true)
    await page.close()
    // the 401s themselves are logged by the browser as failed loads; nothing else may fail
    expect(pageErrors.filter(e => !e.includes('401'))).toEqual([])
  })
})

describe('dashboard assets', () => {
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
