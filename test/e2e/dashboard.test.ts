/**
 * The web dashboard in a real browser: Debian's chromium driven by playwright-core,
 * against the real service (buildServer) in this process and a real test gateway
 * on loopback, bandwidth-capped so that downloads take seconds. Everything is
 * awaited through the DOM (the page's data-testids), never through sleeps. Without
 * /usr/bin/chromium it is skipped with the reason, except under CI=true (a failure).
 * The asset tests without a browser are in test/server/dashboard.test.ts.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative, isAbsolute } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Browser, Page } from 'playwright-core'
import { MemoryBlocks, addDirectory, seededBytes, startTestGateway, type TestGateway } from '../../src/testing/index.js'
import { Downloader, type GatewayTotals } from '../../src/engine/downloader.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import { buildServer } from '../../src/server/app.js'
import { fileSha256, progressReaches, sha256, MiB } from '../helpers.js'
import {
  OUTPUT_DIR, addThroughForm, content, focused, launchChromium, screenshots, shownIds, waitForPercent, waitForRows, waitForText, why, type Content
} from './dashboard-browser.js'

/** The little of the DOM the predicates given to page.waitForFunction use (see dashboard-browser.ts). */
declare const document: {
  querySelector (selector: string): { getAttribute (name: string): string | null, textContent: string | null } | null
  querySelectorAll (selector: string): { length: number }
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
  /** 24 MiB: some 8 s at the 3 MiB/s the throughput test caps the gateway to */
  let big: Content
  /** on no gateway: its download fails */
  let missing: Content
  /** what the test saw, written to test-output/dashboard-figures.txt */
  const figures: string[] = []
  let tree: { cid: string, files: Array<{ path: string, content: Uint8Array }> }
  const pageErrors: string[] = []

  beforeAll(async () => {
    small = await content(blocks, 3 * MiB, 11)
    large = await content(blocks, 8 * MiB, 12)
    third = await content(blocks, 1 * MiB, 13)
    big = await content(blocks, 24 * MiB, 14)
    missing = await content(new MemoryBlocks(), 1024, 15)
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
    browser = await launchChromium()
  })

  afterAll(async () => {
    if (figures.length > 0) {
      await mkdir(OUTPUT_DIR, { recursive: true })
      await writeFile(join(OUTPUT_DIR, 'dashboard-figures.txt'), figures.join('\n') + '\n')
    }
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
    await waitForText(page, 'downloads-empty', /No downloads yet/)
    // one menu entry per mode, verified (the engine's default) chosen
    expect(await page.$$eval('[data-testid=add-mode] option', os => os.map(o => (o as unknown as { value: string }).value))).toEqual(['verified', 'path', 'car'])
    expect(await page.inputValue('[data-testid=add-mode]')).toBe('verified')

    // 1: added through the form, watched to the end
    const first = await addThroughForm(page, small.cid, 'small.bin')
    await page.waitForSelector(`[data-testid=status-${first}]:has-text("in progress")`)
    // a live bar: some bytes and a percentage below 100 while it runs
    await waitForPercent(page, first, 1, 99)
    // bytes of total, percentage, speed, ETA and gateway (speed needs a quarter second of data)
    await waitForText(page, `progress-text-${first}`, /\d(?: B| KiB| MiB) \/ 3\.00 MiB · \d+% · [\d.]+ [KM]iB\/s · ETA \d+:\d\d · via 127\.0\.0\.1:\d+$/)
    // the header's total speed and counts
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=total-speed]')?.getAttribute('data-bps')) > 0)
    await waitForText(page, 'count-active', /^1$/)
    // only what applies to a running download
    expect(await page.isVisible(`[data-testid=pause-${first}]`)).toBe(true)
    expect(await page.isVisible(`[data-testid=cancel-${first}]`)).toBe(true)
    expect(await page.isHidden(`[data-testid=resume-${first}]`)).toBe(true)
    expect(await page.isHidden(`[data-testid=remove-${first}]`)).toBe(true)
    await page.waitForSelector(`[data-testid=status-${first}]:has-text("success")`)
    await page.waitForSelector(`[data-testid=progress-${first}][aria-valuenow="100"]`)
    expect(await page.textContent(`[data-testid=progress-text-${first}]`)).toContain('3.00 MiB / 3.00 MiB · 100%')
    for (const a of ['pause', 'resume', 'cancel']) expect(await page.isHidden(`[data-testid=${a}-${first}]`), a).toBe(true)
    expect(await page.isVisible(`[data-testid=remove-${first}]`)).toBe(true)
    await waitForText(page, 'count-done', /^1$/)

    // 2: a larger one, paused part-way and resumed
    const second = await addThroughForm(page, large.cid, 'large.bin')
    await waitForPercent(page, second, 10)
    await page.click(`[data-testid=pause-${second}]`)
    await page.waitForSelector(`[data-testid=status-${second}]:has-text("paused")`)
    await page.waitForSelector(`[data-testid=resume-${second}]:enabled`)
    expect(await page.isHidden(`[data-testid=pause-${second}]`)).toBe(true)
    await waitForText(page, 'count-paused', /^1$/)
    const paused = await dl.get(second)
    expect(paused?.status).toBe('paused')
    expect(paused?.currentSize).toBeGreaterThan(0)
    expect(paused?.currentSize).toBeLessThan(large.size)
    expect(existsSync(paused!.output)).toBe(false) // nothing at the final path before it is verified
    await page.waitForSelector('[data-testid=announcer]:has-text("is paused")', { state: 'attached' })
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

    // the gateway panel counts what was received
    await page.waitForFunction((url) => /MiB/.test(document.querySelector(`[data-testid=gateway-row][data-gateway="${url}"] [data-testid=gateway-received]`)?.textContent ?? ''), gw.url)
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

  it('asks for the token, and says why, until one works; nothing else shows meanwhile', async () => {
    const page = await openPage(`${base}/`)
    await page.waitForSelector('[data-testid=token-section]:visible')
    await waitForText(page, 'token-reason', /needs its access token/)
    expect(await page.textContent('[data-testid=token-section]')).toContain('cidget token')
    // no list, no form, no "No downloads yet": the page cannot know what there is
    expect(await page.isHidden('[data-testid=app]')).toBe(true)
    expect(await page.isHidden('[data-testid=downloads-empty]')).toBe(true)
    expect(await page.isHidden('[data-testid=summary]')).toBe(true)
    await page.fill('[data-testid=token-input]', 'wrong')
    await page.click('[data-testid=token-submit]')
    await waitForText(page, 'token-reason', /refused/)
    expect(await page.isVisible('[data-testid=token-section]')).toBe(true)
    expect(await page.isHidden('[data-testid=app]')).toBe(true)
    await page.fill('[data-testid=token-input]', token)
    await page.click('[data-testid=token-submit]')
    await page.waitForSelector('[data-testid=connection][data-state=live]')
    await page.waitForSelector('[data-testid^=download-row-]')
    expect(await page.isHidden('[data-testid=token-section]')).toBe(true)
    expect(await page.isVisible('[data-testid=summary]')).toBe(true)
    await page.close()
    // the 401s themselves are logged by the browser as failed loads; nothing else may fail
    expect(pageErrors.filter(e => !e.includes('401'))).toEqual([])
  })

  it('shows an error as a short code whose message opens under the row, by click and by keyboard', async () => {
    const page = await openPage(`${base}/#token=${token}`)
    const id = await addThroughForm(page, missing.cid, 'missing.bin')
    await page.waitForSelector(`[data-testid=status-${id}]:has-text("failed")`)
    await waitForText(page, `error-code-${id}`, /^not found ▸$/)
    expect(await page.isHidden(`[data-testid=error-detail-${id}]`)).toBe(true)
    // the row stays as compact as the others: one line for the code, not the message wrapped in a narrow column
    const row = await page.locator(`[data-testid=download-row-${id}]`).boundingBox()
    expect(row!.height).toBeLessThan(100)
    // a failed download is retried or removed; it is not paused or cancelled
    expect(await page.isVisible(`[data-testid=resume-${id}]:has-text("Retry")`)).toBe(true)
    expect(await page.isVisible(`[data-testid=remove-${id}]`)).toBe(true)
    for (const a of ['pause', 'cancel']) expect(await page.isHidden(`[data-testid=${a}-${id}]`), a).toBe(true)

    const code = page.locator(`[data-testid=error-code-${id}]`)
    expect(await code.getAttribute('aria-expanded')).toBe('false')
    expect(await code.getAttribute('aria-controls')).toBe(`detail-${id}`)
    await code.click()
    await page.waitForSelector(`[data-testid=error-detail-${id}]:visible`)
    expect(await code.getAttribute('aria-expanded')).toBe('true')
    expect(await page.textContent(`[data-testid=error-detail-${id}]`)).toMatch(/CIDGET_ERR_NOT_FOUND\s*No gateway has block \w+: all 1 answered 404/)
    // the message row sits right under its download's row
    expect(await page.$eval(`[data-testid=download-row-${id}]`, tr => tr.nextElementSibling?.getAttribute('data-testid'))).toBe(`error-detail-${id}`)
    // the keyboard: the code keeps the focus and Enter closes the message again
    expect(await focused(page)).toBe(`error-code-${id}`)
    await page.keyboard.press('Enter')
    await page.waitForSelector(`[data-testid=error-detail-${id}]`, { state: 'detached' })
    expect(await code.getAttribute('aria-expanded')).toBe('false')
    await page.keyboard.press('Space')
    await page.waitForSelector(`[data-testid=error-detail-${id}]:visible`)
    await page.close()
    expect(pageErrors).toEqual([])
  })

  it('shows what a capped gateway sends now, asks before a cancel deletes data, and looks right at 1280 and 390 px, light and dark', async () => {
    // the gateway sends 3 MiB/s to 8 requests in flight at once: each of them sees about 1/8 of it
    gw.setMaxBytesPerSecond(3 * MiB)
    const sent: Array<{ t: number, bytes: number }> = []
    const sampler = setInterval(() => { sent.push({ t: performance.now(), bytes: gw.bytesSent() }) }, 100)
    const page = await openPage(`${base}/#token=${token}`)
    try {
      const id = await addThroughForm(page, big.cid, 'big.bin')
      // the figure is the service's over its last 5 s: ask once 5 s of the transfer have gone by
      await progressReaches(dl, id, 16 * MiB)
      const answer = await page.waitForResponse(r => r.url().endsWith('/api/gateways'))
      const at = performance.now()
      const shown = ((await answer.json()) as { gateways: GatewayTotals[] }).gateways.find(g => g.url === gw.url)!.throughputBps
      await page.waitForSelector(`[data-testid=gateway-row][data-gateway="${gw.url}"] [data-testid=gateway-speed][data-bps="${shown}"]`)
      const from = sent.findLast(s => s.t <= at - 5000) ?? sent[0]!
      const to = sent.findLast(s => s.t <= at)!
      const rate = (to.bytes - from.bytes) * 1000 / (to.t - from.t)
      figures.push(`gateway throughput shown ${(shown / MiB).toFixed(2)} MiB/s, sent ${(rate / MiB).toFixed(2)} MiB/s over the same 5 s (cap 3 MiB/s)`)
      expect(rate).toBeGreaterThan(2 * MiB)
      expect(shown).toBeGreaterThan(rate / 1.5)
      expect(shown).toBeLessThan(rate * 1.5)
      expect(await page.textContent(`[data-testid=gateway-row][data-gateway="${gw.url}"] [data-testid=gateway-speed]`)).toMatch(/^[\d.]+ MiB\/s$/)

      // slowed down, so that it is still running for the pictures and the cancel
      gw.setMaxBytesPerSecond(256 * 1024)
      // the failed download's message open, as a reader would look at it
      await page.locator('button.code:visible').first().click()
      await page.waitForSelector('[data-testid^=error-detail-]:visible')
      await screenshots(page)

      // a cancel asks first, saying what goes; "Keep" keeps it running
      await page.click(`[data-testid=cancel-${id}]`)
      await page.waitForSelector('[data-testid=confirm]:visible')
      expect(await page.textContent('[data-testid=confirm-text]')).toMatch(new RegExp(`^Cancel download ${id} \\(big\\.bin\\) and delete its [\\d.]+ MiB of partial data\\?`))
      // the safe answer has the focus: Enter does not delete anything
      expect(await focused(page)).toBe('confirm-no')
      await page.click('[data-testid=confirm-no]')
      await page.waitForSelector('[data-testid=confirm]', { state: 'hidden' })
      expect((await dl.get(id))?.status).toBe('in_progress')
      expect((await readdir(dir)).filter(n => n.startsWith('big.bin'))).not.toEqual([])
      // Escape answers no as well
      await page.click(`[data-testid=cancel-${id}]`)
      await page.waitForSelector('[data-testid=confirm]:visible')
      await page.keyboard.press('Escape')
      await page.waitForSelector('[data-testid=confirm]', { state: 'hidden' })
      expect((await dl.get(id))?.status).toBe('in_progress')
      await page.click(`[data-testid=cancel-${id}]`)
      await page.click('[data-testid=confirm-yes]')
      await page.waitForSelector(`[data-testid=status-${id}]:has-text("cancelled")`)
      expect((await dl.get(id))?.status).toBe('cancelled')
      expect((await readdir(dir)).filter(n => n.startsWith('big.bin'))).toEqual([])
    } finally {
      clearInterval(sampler)
      gw.setMaxBytesPerSecond(2 * MiB)
      await page.close()
    }
    expect(pageErrors).toEqual([])
  })

  it('counts, filters and searches the list, and clears the finished and the failed downloads after asking', async () => {
    const page = await openPage(`${base}/#token=${token}`)
    await page.waitForSelector('[data-testid=connection][data-state=live]')
    const all = await dl.list({ limit: 1000 })
    const count = (...statuses: string[]): number => all.filter(r => statuses.includes(r.status)).length
    const done = count('success')
    const failed = count('failed', 'cancelled')
    expect(done).toBeGreaterThan(2)
    expect(failed).toBeGreaterThanOrEqual(2)
    await waitForText(page, 'count-done', new RegExp(`^${done}$`))
    await waitForText(page, 'count-failed', new RegExp(`^${failed}$`))
    await waitForText(page, 'filter-count-all', new RegExp(`^${all.length}$`))

    await page.click('[data-testid=filter-failed]')
    await waitForRows(page, failed)
    expect((await shownIds(page)).every(id => ['failed', 'cancelled'].includes(all.find(r => r.id === id)!.status))).toBe(true)
    expect(await page.getAttribute('[data-testid=filter-failed]', 'aria-pressed')).toBe('true')
    await page.click('[data-testid=filter-done]')
    await waitForRows(page, done)
    await page.click('[data-testid=filter-active]')
    await waitForText(page, 'downloads-empty', /No downloads among the active ones/)
    await page.click('[data-testid=filter-all]')

    // by name, by id, by CID
    await page.fill('[data-testid=search]', 'SMALL')
    await waitForRows(page, 1)
    expect(await page.textContent('[data-testid^=name-]')).toBe('small.bin')
    const one = all.find(r => r.output.endsWith('large.bin'))!
    await page.fill('[data-testid=search]', `#${one.id}`)
    await page.waitForFunction((id) => document.querySelectorAll('[data-testid^=download-row-]').length === 1 && document.querySelector(`[data-testid=download-row-${id}]`) !== null, one.id)
    await page.fill('[data-testid=search]', large.cid.slice(-12))
    await waitForRows(page, 1)
    expect(await shownIds(page)).toEqual([one.id])
    await page.fill('[data-testid=search]', 'nothing-has-this-name')
    await waitForText(page, 'downloads-empty', /No downloads match “nothing-has-this-name”/)
    await page.fill('[data-testid=search]', '')

    // clear failed: asks, then POST /api/downloads/clear {"status":["failed","cancelled"]}
    await page.click('[data-testid=clear-failed]')
    await waitForText(page, 'confirm-text', new RegExp(`^Remove ${failed} failed or cancelled downloads from the list`))
    const cleared = page.waitForRequest(r => r.url().endsWith('/api/downloads/clear'))
    await page.click('[data-testid=confirm-yes]')
    expect((await cleared).postDataJSON()).toEqual({ status: ['failed', 'cancelled'] })
    await waitForText(page, 'count-failed', /^0$/)
    expect(await page.isDisabled('[data-testid=clear-failed]')).toBe(true)
    expect((await dl.list({ limit: 1000 })).filter(r => ['failed', 'cancelled'].includes(r.status))).toEqual([])

    // one finished download removed: asked first, its file stays
    const named = all.find(r => r.output.endsWith('named.txt'))!
    await page.click(`[data-testid=remove-${named.id}]`)
    await waitForText(page, 'confirm-text', new RegExp(`^Remove download ${named.id} \\(named\\.txt\\) from the list\\? Its file stays on disk at `))
    await page.click('[data-testid=confirm-yes]')
    await page.waitForSelector(`[data-testid=download-row-${named.id}]`, { state: 'detached' })
    expect(existsSync(named.output)).toBe(true)

    // clear finished: the files stay
    const outputs = all.filter(r => r.status === 'success').map(r => r.output)
    await page.click('[data-testid=clear-finished]')
    await waitForText(page, 'confirm-text', new RegExp(`^Remove ${done - 1} finished downloads from the list\\? Their files stay on disk\\.$`))
    const finished = page.waitForRequest(r => r.url().endsWith('/api/downloads/clear'))
    await page.click('[data-testid=confirm-yes]')
    expect((await finished).postDataJSON()).toEqual({ status: ['success'] })
    await waitForText(page, 'count-done', /^0$/)
    await waitForText(page, 'downloads-empty', /No downloads yet/)
    for (const out of outputs) expect(existsSync(out), out).toBe(true)
    await page.close()
    expect(pageErrors).toEqual([])
  })

  it('draws 3,000 downloads a page at a time and stays responsive', async () => {
    // a service of its own, its records written straight to the store: 2,000 done, 600 failed, 400 paused
    const bigState = await mkdtemp(join(tmpdir(), 'cidget-dashboard-many-'))
    const many = await Downloader.open({ state: join(bigState, 'state.db'), gateways: [gw.url], routers: [] })
    const svc = await buildServer({ downloader: many, dir: join(bigState, 'downloads'), token })
    try {
      const recs = await many.store.createDownloads(Array.from({ length: 3000 }, (_, i) => ({
        cid: small.cid, path: '', target: small.cid, output: join(bigState, 'downloads', `file-${i + 1}.bin`), mode: 'verified' as const, gateways: [gw.url]
      })))
      for (const r of recs) {
        if (r.id % 5 === 0) await many.store.markDownloadFailed(r.id, 'No gateway has block ' + small.cid + ': all 1 answered 404', 'CIDGET_ERR_NOT_FOUND')
        else if (r.id % 5 === 1 && r.id > 1000) await many.store.markDownloadPaused(r.id, null)
        else await many.store.markDownloadSuccess(r.id, small.sha, small.size)
      }
      const counts = await many.store.countByStatus()
      await svc.listen({ port: 0, host: '127.0.0.1' })
      const addr = svc.server.address()
      if (addr === null || typeof addr === 'string') throw new Error('no port')
      const page = await openPage(`http://127.0.0.1:${addr.port}/#token=${token}`)
      const loading = performance.now()
      await waitForText(page, 'page-info', /^1–50 of 3,000$/)
      const loaded = performance.now() - loading
      // one page of rows in the document, whatever the list holds
      await waitForRows(page, 50)
      expect(await shownIds(page)).toEqual(Array.from({ length: 50 }, (_, i) => 3000 - i))
      await waitForText(page, 'count-done', new RegExp(`^${counts.success.toLocaleString('en-US')}$`))
      await waitForText(page, 'count-failed', new RegExp(`^${counts.failed}$`))
      await waitForText(page, 'count-paused', new RegExp(`^${counts.paused}$`))

      // each step below answers within a frame or two of the click, not after a redraw of 3,000 rows
      const timed = async (what: string, act: () => Promise<void>, done: () => Promise<void>): Promise<void> => {
        const t = performance.now()
        await act()
        await done()
        const ms = performance.now() - t
        figures.push(`3,000 records: ${what} in ${Math.round(ms)} ms`)
        expect(ms, what).toBeLessThan(1000)
      }
      figures.push(`3,000 records: the first page shown ${Math.round(loaded)} ms after the page loaded`)
      await timed('next page', async () => { await page.click('[data-testid=page-next]') }, async () => { await waitForText(page, 'page-info', /^51–100 of 3,000$/) })
      expect((await shownIds(page))[0]).toBe(2950)
      await timed('filter paused', async () => { await page.click('[data-testid=filter-paused]') },
        async () => { await waitForText(page, 'page-info', new RegExp(`^1–50 of ${counts.paused}$`)) })
      await timed('search an id', async () => { await page.click('[data-testid=filter-all]'); await page.fill('[data-testid=search]', '#1234') },
        async () => { await waitForRows(page, 1); await page.waitForSelector('[data-testid=download-row-1234]') })
      await timed('search a name', async () => { await page.fill('[data-testid=search]', 'file-2999.') }, async () => { await waitForRows(page, 1) })
      expect(await page.isHidden('[data-testid=pager]')).toBe(true)
      await page.close()
      expect(pageErrors).toEqual([])
    } finally {
      await svc.close()
      await many.close()
      await rm(bigState, { recursive: true, force: true })
    }
  })
})
