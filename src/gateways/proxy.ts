/**
 * Requests through an HTTP proxy: which proxy, from a flag, the config file
 * or the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, as
 * curl reads them), and the undici dispatcher that sends them there (CONNECT
 * tunnels for https targets, absolute-URI requests for http ones).
 *
 * @module
 */
import { isIP } from 'node:net'
import { EnvHttpProxyAgent, type Agent, type Dispatcher } from 'undici'
import { CidgetError } from '../core/errors.js'
import type { AddressGuard } from './address.js'

/** The proxy of each kind of target, and the hosts that bypass it. */
export interface ProxySettings {
  /** Proxy URL for http:// targets; undefined: direct. */
  http?: string
  /** Proxy URL for https:// targets; undefined: direct. */
  https?: string
  /** Hosts that are reached directly: NO_PROXY's syntax (comma-separated names, `.suffix`, `host:port`, `*`). */
  noProxy?: string
}

/** Checks a proxy URL (http or https, a host, nothing after the port) and returns it; `from` names where it came from. */
export function checkProxyUrl (url: string, from: string): string {
  let u: URL
  try {
    // curl takes a bare host:port as an http proxy
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(url.trim()) ? url.trim() : `http://${url.trim()}`)
  } catch {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: "${redact(url)}" is not a proxy URL`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: the proxy URL must be http:// or https://, got ${u.protocol}//`)
  }
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') {
    throw new CidgetError('CIDGET_ERR_BAD_OPTION', `${from}: the proxy URL must not have a path, query or fragment`)
  }
  return u.href.replace(/\/$/, '')
}

/** A proxy URL without its password, for messages. */
export function redact (url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/]*):[^@/]*@/i, '$1:***@')
}

function envValue (env: NodeJS.ProcessEnv, name: string): string | undefined {
  // lower case first, as curl reads them
  const v = env[name.toLowerCase()] ?? env[name.toUpperCase()]
  return v === undefined || v.trim() === '' ? undefined : v.trim()
}

/**
 * The proxies to use: `explicit` (the `--proxy` flag, else the config file's
 * `proxy`) for every target, else the environment's `HTTP_PROXY` (http
 * targets), `HTTPS_PROXY` (https targets) and `ALL_PROXY` (both, when the
 * other is not set). `NO_PROXY` applies in both cases. Undefined: no proxy.
 */
export function resolveProxy (explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): ProxySettings | undefined {
  const noProxy = envValue(env, 'no_proxy')
  const extra = noProxy === undefined ? {} : { noProxy }
  if (explicit !== undefined) {
    const url = checkProxyUrl(explicit, '--proxy')
    return { http: url, https: url, ...extra }
  }
  const all = envValue(env, 'all_proxy')
  // curl reads only the lower-case http_proxy (a CGI program's HTTP_PROXY comes from a request header)
  const http = env.http_proxy !== undefined && env.http_proxy.trim() !== '' ? env.http_proxy.trim() : all
  const https = envValue(env, 'https_proxy') ?? all
  if (http === undefined && https === undefined) return undefined
  return {
    ...(http === undefined ? {} : { http: checkProxyUrl(http, 'http_proxy') }),
    ...(https === undefined ? {} : { https: checkProxyUrl(https, 'HTTPS_PROXY') }),
    ...extra
  }
}

/**
 * A dispatcher that sends requests through the proxies of `settings`, with
 * `agent`'s options for every connection (timeouts, pool sizes). A `guard`
 * (the service) checks each request's host before it is sent, as the
 * direct connector does: an IP literal as it is, a name by resolving it here
 * (the proxy resolves it again to connect).
 */
export function proxyDispatcher (settings: ProxySettings, agent: Agent.Options, guard: AddressGuard | undefined): Dispatcher {
  const proxy = new EnvHttpProxyAgent({
    ...agent,
    // '' (not undefined): undici would read the environment itself
    httpProxy: settings.http ?? '',
    httpsProxy: settings.https ?? '',
    noProxy: settings.noProxy ?? '',
    // http targets as absolute-URI requests, as curl sends them; https ones through CONNECT
    proxyTunnel: false
  } as EnvHttpProxyAgent.Options)
  return guard === undefined ? proxy : proxy.compose(guardInterceptor(guard))
}

/** Refuses, before it is sent, a request whose host the guard refuses. */
function guardInterceptor (guard: AddressGuard): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    const origin = new URL(String(opts.origin))
    const { guarded, error } = guard.check(origin.protocol, origin.hostname, origin.port)
    const fail = (err: Error): void => { handler.onResponseError?.(null as unknown as Dispatcher.DispatchController, err) }
    if (error !== undefined) {
      queueMicrotask(() => { fail(error) })
      return true
    }
    const host = origin.hostname.replace(/^\[|\]$/g, '')
    if (!guarded || isIP(host) !== 0) return dispatch(opts, handler)
    guard.lookup(host, { all: true }, (err) => {
      if (err !== null) fail(err)
      else dispatch(opts, handler)
    })
    return true
  }
}

/**
 * The proxy's refusal in an undici error, as a CidgetError. A 407 to a
 * CONNECT (an https gateway) is the proxy's own: CIDGET_ERR_PROXY_AUTH, which
 * no gateway can help with. A 407 to an absolute-URI request (an http
 * gateway) may be the gateway's, passed on: a failure of that gateway only
 * (a hostile gateway must not end the download). Another status is a network
 * failure of this gateway (`opaque`: without the status). Undefined when `err`
 * is not a proxy's refusal.
 */
export function proxyRefusal (err: unknown, gateway: string, opaque = false): CidgetError | undefined {
  const message = err instanceof Error ? err.message : ''
  const tunnel = /Proxy response \((\d{3})\) !== 200/.exec(message)?.[1]
  if (tunnel === '407') {
    return new CidgetError('CIDGET_ERR_PROXY_AUTH', `The proxy asks for credentials (HTTP 407) for ${gateway}`, { cause: err, gateway, status: 407 })
  }
  if (tunnel === undefined && /Proxy Authentication Required \(407\)/.test(message)) {
    return new CidgetError('CIDGET_ERR_HTTP_STATUS', `${gateway}: HTTP 407 through the proxy (the proxy, or the gateway, asks for credentials)`, { cause: err, gateway, status: 407 })
  }
  if (tunnel === undefined) return undefined
  return new CidgetError('CIDGET_ERR_NETWORK', opaque ? `${gateway}: the connection failed` : `${gateway}: the proxy refused the connection (HTTP ${tunnel})`, { cause: err, gateway })
}
