/**
 * Building and finding elements (text only through `textContent`: names from
 * a DAG and targets are untrusted), and the page-wide messages.
 *
 * @module
 */

/** The element with this id, checked to be of the type the caller expects. */
export function byId<T extends HTMLElement = HTMLElement> (id: string, type?: new () => T): T {
  const e = document.getElementById(id)
  if (e === null || !(e instanceof (type ?? HTMLElement))) throw new Error('the page has no ' + (type?.name ?? 'element') + ' #' + id)
  return e as T
}

export function el<K extends keyof HTMLElementTagNameMap> (tag: K, attrs?: Readonly<Record<string, string>> | null, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag)
  if (attrs) for (const k of Object.keys(attrs)) e.setAttribute(k, attrs[k] ?? '')
  if (text !== undefined) e.textContent = text
  return e
}

/** A line for screen readers (the live region keeps the latest five). */
export function announce (text: string): void {
  const a = byId('announcer')
  const line = el('p', null, text)
  a.append(line)
  while (a.childElementCount > 5) a.firstElementChild?.remove()
}

export function showMessage (text: string): void {
  byId('message-text').textContent = text
  byId('message').hidden = false
}

export type ConnectionState = 'connecting' | 'live' | 'offline' | 'unauthorized'

export function setConnection (s: ConnectionState, text: string): void {
  const c = byId('connection')
  if (c.dataset.state === s && c.textContent === text) return
  c.dataset.state = s
  c.textContent = text
}
