/**
 * What the dashboard's browser test (dashboard.test.ts) drives the page with:
 * Debian's chromium through playwright-core, waits on the page's DOM (never
 * sleeps), and the screenshots it writes to test-output/.
 */
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'vitest'
import { chromium, type Browser, type Page } from 'playwright-core'
import { addFile, seededBytes, type MemoryBlocks } from '../../src/testing/index.js'
import type { DownloadRecord } from '../../src/core/types.js'
import { sha256 } from '../helpers.js'

export const CHROMIUM = '/usr/bin/chromium'
export const OUTPUT_DIR = new URL('../../test-output/', import.meta.url).pathname

/** Why the browser tests cannot run here (skipped), or undefined; under CI=true a missing browser is a failure. */
export const why = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing (apt-get install -y chromium)`
if (why !== undefined && process.env.CI === 'true') throw new Error(`the dashboard browser test is required in CI: ${why}`)
if (why !== undefined) console.log(`skipping the dashboard browser test: ${why}`)

export async function launchChromium (): Promise<Browser> {
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic']
  })
}

/**
 * The little of the DOM that the predicates given to page.waitForFunction use: they run in the
 * page (functions, not strings: the dashboard's CSP forbids eval), and this project's tsconfig has
 * no DOM library.
 */
declare const document: {
  querySelector (selector: string): { getAttribute (name: string): string | null, textContent: string | null } | null
  querySelectorAll (selector: string): { length: number }
}

export interface Content { cid: string, sha: string, size: number }

/** A file of `size` seeded bytes added to `blocks`. */
export async function content (blocks: MemoryBlocks, size: number, seed: number): Promise<Content> {
  const data = seededBytes(size, seed)
  return { cid: (await addFile(blocks, data)).toString(), sha: sha256(data), size }
}

/** Adds a download through the page's form (verified mode) and returns its id once its row shows. */
export async function addThroughForm (page: Page, target: string, output: string): Promise<number> {
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
export async function waitForPercent (page: Page, id: number, min: number, max = 100): Promise<void> {
  await page.waitForFunction(([id, min, max]) => {
    const v = Number(document.querySelector(`[data-testid=progress-${id}]`)?.getAttribute('aria-valuenow') ?? NaN)
    return v >= min && v <= max
  }, [id, min, max] as const)
}

/** Waits until the element with this data-testid has a text that matches `re`. */
export async function waitForText (page: Page, testid: string, re: RegExp): Promise<void> {
  await page.waitForFunction(([testid, source, flags]) => new RegExp(source, flags).test(document.querySelector(`[data-testid=${testid}]`)?.textContent ?? ''),
    [testid, re.source, re.flags] as const)
}

/** Waits until the table shows `n` download rows. */
export async function waitForRows (page: Page, n: number): Promise<void> {
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid^=download-row-]').length === n, n)
}

/** The ids of the download rows shown, top to bottom. */
export async function shownIds (page: Page): Promise<number[]> {
  return await page.$$eval('[data-testid^=download-row-]', trs => trs.map(tr => Number(tr.getAttribute('data-id'))))
}

/** The data-testid of the element that has the focus. */
export async function focused (page: Page): Promise<string | null> {
  return await page.evaluate(() => (document as unknown as { activeElement: { getAttribute (n: string): string | null } | null }).activeElement?.getAttribute('data-testid') ?? null)
}

/**
 * The page as it is, at 1280 px (light and dark) and at 390 px (light and dark), whole, in
 * test-output/; and dashboard.png, what a 1280 × 900 window shows in light: docs/images/dashboard.png
 * (the README's picture) is a copy of it.
 */
export async function screenshots (page: Page): Promise<void> {
  await mkdir(OUTPUT_DIR, { recursive: true })
  const shot = async (name: string, fullPage = true): Promise<void> => {
    // the bars' animation and the caret would make every picture differ
    await page.screenshot({ path: join(OUTPUT_DIR, name), fullPage, animations: 'disabled', caret: 'hide' })
  }
  await page.evaluate(() => { (document as unknown as { activeElement: { blur?: () => void } | null }).activeElement?.blur?.() })
  await shot('dashboard.png', false)
  await shot('dashboard-desktop.png')
  await page.emulateMedia({ colorScheme: 'dark' })
  await shot('dashboard-desktop-dark.png')
  await page.setViewportSize({ width: 390, height: 844 })
  await shot('dashboard-phone-dark.png')
  await page.emulateMedia({ colorScheme: 'light' })
  await shot('dashboard-phone.png')
  await page.setViewportSize({ width: 1280, height: 900 })
}
