/**
 * The web dashboard's three files: `public/index.html`, `public/dashboard.css`
 * and the browser client (`client/*.ts`, bundled by esbuild into one script).
 * The page loads nothing from elsewhere (no CDN, no web fonts), builds its DOM
 * with `textContent` only (names from a DAG and targets are untrusted), and
 * speaks the same REST API and WebSocket events as any other client.
 *
 * They are read once, when this module loads. From dist/ (the library, or
 * the CLI bundle in dist/bin/) they are the build's copies in `public/` beside
 * the module; run from the TypeScript sources, the client is bundled here.
 *
 * @module
 */

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { bundleClient } from './client-build.js'

/** Paths the assets are served at (besides `/` for the page); public/index.html links to both. */
export const DASHBOARD_CSS_PATH = '/dashboard.css'
export const DASHBOARD_JS_PATH = '/dashboard.js'

const FROM_SOURCE = import.meta.url.endsWith('.ts')
const PUBLIC = new URL('./public/', import.meta.url)

function read (name: string): string {
  return readFileSync(new URL(name, PUBLIC), 'utf8')
}

export const DASHBOARD_HTML = read('index.html')
export const DASHBOARD_CSS = read('dashboard.css')
export const DASHBOARD_JS = FROM_SOURCE ? bundleClient(fileURLToPath(new URL('../../../', import.meta.url))) : read('dashboard.js')
