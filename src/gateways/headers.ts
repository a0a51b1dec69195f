/** `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`). Undefined when malformed. */
export interface ContentRange {
  start: number
  end: number
  total: number | undefined
}

const SAFE = Number.MAX_SAFE_INTEGER

function int (s: string): number | undefined {
  if (!/^\d{1,16}$/.test(s)) return undefined
  const n = Number(s)
  return n <= SAFE ? n : undefined
}

export function parseContentRange (value: string | undefined): ContentRange | undefined {
  if (value === undefined) return undefined
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value)
  if (m === null) return undefined
  const start = int(m[1] as string)
  const end = int(m[2] as string)
  const total = m[3] === '*' ? undefined : int(m[3] as string)
  if (start === undefined || end === undefined || end < start) return undefined
  if (m[3] !== '*' && (total === undefined || end >= total)) return undefined
  return { start, end, total }
}

/** The TOTAL of an unsatisfied range answer: `Content-Range: bytes *\/TOTAL`. */
export function parseUnsatisfiedRange (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const m = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(value)
  return m === null ? undefined : int(m[1] as string)
}

export function parseContentLength (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  return int(value.trim())
}

/** A strong ETag (`"…"`, not `W/"…"`), usable with If-Range. */
export function isStrongEtag (value: string | undefined): value is string {
  return value !== undefined && /^"[^"]*"$/.test(value.trim())
}
