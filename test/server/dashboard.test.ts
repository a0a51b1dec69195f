/** The dashboard's files as the service serves them (the browser test is test/e2e/dashboard.test.ts). */
import { describe, it, expect } from 'vitest'
import { DASHBOARD_CSS_PATH, DASHBOARD_HTML, DASHBOARD_JS, DASHBOARD_JS_PATH } from '../../src/server/dashboard/assets.js'

describe('dashboard page', () => {
  it('links the stylesheet and the script at the paths they are served at', () => {
    expect(DASHBOARD_HTML).toContain(`<link rel="stylesheet" href="${DASHBOARD_CSS_PATH}">`)
    expect(DASHBOARD_HTML).toContain(`<script type="module" src="${DASHBOARD_JS_PATH}"></script>`)
  })

  it('builds its DOM with textContent, never from HTML strings', () => {
    expect(DASHBOARD_JS).toContain('textContent')
    expect(DASHBOARD_JS).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/)
  })
})
