import type { DownloadRecord } from '../core/types.js'

/**
 * Text from elsewhere (targets, names from a DAG, output paths, errors that
 * quote them) as it may go to a terminal: C0 and C1 control characters and
 * DEL become visible escapes (`\n`, `\x1b`), so a name cannot move the
 * cursor, clear the screen or forge a line.
 */
export function printable (text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is escaped here
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    switch (c) {
      case '\n': return '\\n'
      case '\r': return '\\r'
      case '\t': return '\\t'
      default: return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`
    }
  })
}

export function humanBytes (n: number | null): string {
  if (n === null) return '?'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = 0
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++ }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`
}

export function humanDuration (ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?'
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`
}

/** How long ago `at` was, for people: `12s`, `5m`, `3h`, `2d`. */
export function ago (at: number, now: number = Date.now()): string {
  const s = Math.max(0, Math.round((now - at) / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}

/** A time for people: UTC to the second, and how long ago. */
function when (at: number, now: number): string {
  return `${new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z')} (${ago(at, now)} ago)`
}

/** The command that moves a download on from where it is, if any. */
export function nextStep (r: DownloadRecord): string | undefined {
  switch (r.status) {
    case 'paused':
      return `cidget resume ${r.id}`
    case 'failed':
      return `cidget resume ${r.id} (to try again), or cidget rm ${r.id}`
    case 'pending':
      return `cidget resume ${r.id} (a running cidget serve or worker also takes it)`
    case 'in_progress':
    case 'resuming':
      return `cidget pause ${r.id} (if no process runs it any more, cidget resume ${r.id} takes it over)`
    case 'cancelled':
      return `cidget rm ${r.id}`
    default:
      return undefined
  }
}

/** Why a download is where it is: its error, or for a pause without one, who paused it. */
function reason (r: DownloadRecord): string | undefined {
  if (r.error !== null) return `${printable(r.error)}${r.errorCode !== null ? ` [${r.errorCode}]` : ''}`
  if (r.status === 'paused') return 'paused on request (cidget pause, Ctrl-C, a signal, the API or the dashboard)'
  return undefined
}

/** A multi-line description of one download for `cidget status`. */
export function describe (r: DownloadRecord, now: number = Date.now()): string {
  const pct = r.size !== null && r.size > 0 ? ` (${Math.floor(r.currentSize * 100 / r.size)}%)` : ''
  const why = reason(r)
  const next = nextStep(r)
  const lines = [
    `id:        ${r.id}`,
    `status:    ${r.status}`,
    ...(why === undefined ? [] : [`reason:    ${why}`]),
    `target:    ${printable(r.target)}`,
    ...(r.name === null ? [] : [`name:      ${printable(r.name)}${nameDetails(r)}`]),
    `cid:       ${r.cid === '' ? '- (resolved when the download starts)' : r.cid + printable(r.path)}`,
    `output:    ${printable(r.output)}`,
    `mode:      ${r.mode}`,
    `progress:  ${humanBytes(r.currentSize)} of ${humanBytes(r.size)}${pct}`,
    `added:     ${when(r.createdAt, now)}`,
    `updated:   ${when(r.updatedAt, now)}`,
    ...(r.completedAt === null ? [] : [`finished:  ${when(r.completedAt, now)}`]),
    // path mode counts its requests for the body; the other modes fetch blocks from many gateways at once
    ...(r.mode === 'path' && r.attempts > 0 ? [`requests:  ${r.attempts}${r.lastAttempt !== null ? ` (last ${when(r.lastAttempt, now)})` : ''}`] : []),
    ...(r.gateway === null ? [] : [`gateway:   ${printable(r.gateway)}`]),
    ...(r.limitRate === null ? [] : [`limit:     ${humanBytes(r.limitRate)}/s`])
  ]
  if (r.hash !== null) lines.push(`sha256:    ${r.hash}`)
  if (r.expectedSha256 !== null) lines.push(`expected:  ${r.expectedSha256}`)
  if (next !== undefined) lines.push(`next:      ${next}`)
  return lines.join('\n')
}

/** How a name resolved: the IPNS record's sequence and validity, and when. */
function nameDetails (r: DownloadRecord): string {
  if (r.nameResolvedAt === null) return ''
  const record = r.nameSequence === null ? '' : `sequence ${r.nameSequence}, valid until ${printable(r.nameValidity ?? '?')}, `
  return ` (${record}resolved ${new Date(r.nameResolvedAt).toISOString()})`
}

/** A table for `cidget list`: what each download is, how far, when it was added, and why it stopped. */
export function table (rows: DownloadRecord[], now: number = Date.now()): string {
  const head = ['ID', 'STATUS', 'PROGRESS', 'SIZE', 'ADDED', 'OUTPUT', 'NOTE']
  const body = rows.map(r => [
    String(r.id),
    r.status,
    r.size !== null && r.size > 0 ? `${Math.floor(r.currentSize * 100 / r.size)}%` : r.status === 'success' ? '100%' : '-',
    humanBytes(r.size ?? (r.status === 'success' ? r.currentSize : r.currentSize > 0 ? r.currentSize : null)),
    `${ago(r.createdAt, now)} ago`,
    printable(r.output),
    note(r)
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map(row => (row[i] ?? '').length)))
  const line = (cols: string[]): string => cols.map((c, i) => i === cols.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(head), ...body.map(line)].join('\n')
}

/** The last column of `cidget list`: the error (its code without the prefix, the start of its message), else the name. */
function note (r: DownloadRecord): string {
  if (r.error !== null) {
    const text = printable(r.error)
    return `${(r.errorCode ?? '').replace(/^CIDGET_ERR_/, '')}: ${text.length > 60 ? text.slice(0, 59) + '…' : text}`
  }
  return r.name === null ? '' : printable(r.name)
}
