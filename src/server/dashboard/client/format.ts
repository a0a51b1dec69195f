/** How sizes, durations, statuses, names and hosts read on the page. @module */

export function formatBytes (n: number | null | undefined): string {
  if (n === null || n === undefined || !isFinite(n)) return '?'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + units[i]
}

export function formatDuration (seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const ss = String(s % 60).padStart(2, '0')
  return h > 0 ? h + ':' + String(m).padStart(2, '0') + ':' + ss : m + ':' + ss
}

export function statusText (status: string): string { return String(status).replace(/_/g, ' ') }

export function baseName (p: string | null | undefined): string {
  const parts = String(p || '').split(/[\\/]/).filter(Boolean)
  return parts.length > 0 ? parts[parts.length - 1] ?? '' : String(p || '')
}

export function hostOf (url: string): string {
  try { return new URL(url).host } catch { return String(url) }
}

/** An error code as a short label: `CIDGET_ERR_BLOCK_UNAVAILABLE` reads "block unavailable". */
export function shortCode (code: string | null | undefined): string {
  if (!code) return 'error'
  return code.replace(/^CIDGET_ERR_/, '').replace(/_/g, ' ').toLowerCase()
}

/** "1 download", "3 downloads". */
export function plural (n: number, word: string): string {
  return n.toLocaleString('en-US') + ' ' + word + (n === 1 ? '' : 's')
}
