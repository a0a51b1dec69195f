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

/** A multi-line description of one download for `cidget status`. */
export function describe (r: DownloadRecord): string {
  const pct = r.size !== null && r.size > 0 ? ` (${Math.floor(r.currentSize * 100 / r.size)}%)` : ''
  const lines = [
    `id:        ${r.id}`,
    `status:    ${r.status}`,
    `target:    ${printable(r.target)}`,
    ...(r.name === null ? [] : [`name:      ${printable(r.name)}${nameDetails(r)}`]),
    `cid:       ${r.cid === '' ? '- (resolved when the download starts)' : r.cid + printable(r.path)}`,
    `output:    ${printable(r.output)}`,
    `mode:      ${r.mode}`,
    `progress:  ${humanBytes(r.currentSize)} of ${humanBytes(r.size)}${pct}`,
    `attempts:  ${r.attempts}${r.lastAttempt !== null ? ` (last ${new Date(r.lastAttempt).toISOString()})` : ''}`,
    `gateway:   ${printable(r.gateway ?? '-')}`
  ]
  if (r.hash !== null) lines.push(`sha256:    ${r.hash}`)
  if (r.expectedSha256 !== null) lines.push(`expected:  ${r.expectedSha256}`)
  if (r.error !== null) lines.push(`error:     ${printable(r.error)}${r.errorCode !== null ? ` [${r.errorCode}]` : ''}`)
  return lines.join('\n')
}

/** How a name resolved: the IPNS record's sequence and validity, and when. */
function nameDetails (r: DownloadRecord): string {
  if (r.nameResolvedAt === null) return ''
  const record = r.nameSequence === null ? '' : `sequence ${r.nameSequence}, valid until ${printable(r.nameValidity ?? '?')}, `
  return ` (${record}resolved ${new Date(r.nameResolvedAt).toISOString()})`
}

/** A table for `cidget list`. */
export function table (rows: DownloadRecord[]): string {
  const head = ['ID', 'STATUS', 'PROGRESS', 'SIZE', 'OUTPUT']
  const body = rows.map(r => [
    String(r.id),
    r.status,
    r.size !== null && r.size > 0 ? `${Math.floor(r.currentSize * 100 / r.size)}%` : r.status === 'success' ? '100%' : '-',
    humanBytes(r.size ?? (r.status === 'success' ? r.currentSize : null)),
    printable(r.output)
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map(row => (row[i] ?? '').length)))
  const line = (cols: string[]): string => cols.map((c, i) => i === cols.length - 1 ? c : c.padEnd(widths[i] ?? 0)).join('  ')
  return [line(head), ...body.map(line)].join('\n')
}
