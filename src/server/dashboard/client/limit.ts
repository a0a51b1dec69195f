/** The service's bandwidth limit for all downloads: shown, and set from its form. @module */

import { api, messageOf, statusOf } from './api.js'
import { announce, byId } from './dom.js'
import { formatBytes } from './format.js'

/** Shows the service's limit for all downloads. */
function showLimit (rate: number | null): void {
  byId('limit-status').textContent = rate === null ? 'No limit: downloads take what the network gives.' : 'Limit: ' + formatBytes(rate) + '/s for all downloads together.'
}

/** Reads the service's limit (when the page connects). */
export async function refreshLimit (): Promise<void> {
  const { limitRate } = await api<{ limitRate: number | null }>('GET', '/api/limit')
  showLimit(limitRate)
}

/** The limit form: sets the limit for all downloads at once (empty: none). */
export async function onLimit (ev: SubmitEvent): Promise<void> {
  ev.preventDefault()
  const input = byId('limit-input', HTMLInputElement)
  const error = byId('limit-error')
  error.hidden = true
  const value = input.value.trim()
  try {
    const { limitRate } = await api<{ limitRate: number | null }>('PUT', '/api/limit', { limitRate: value === '' ? null : value })
    showLimit(limitRate)
    announce(limitRate === null ? 'Limit removed' : 'Limit set to ' + formatBytes(limitRate) + '/s')
    input.value = ''
  } catch (err) {
    if (statusOf(err) !== 401) {
      error.textContent = 'Not set: ' + messageOf(err)
      error.hidden = false
    }
  }
}
