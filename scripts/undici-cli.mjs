/**
 * What the `cidget` command uses of undici, for the CLI bundle only (see
 * scripts/bundle.mjs): the HTTP/1.1 agent, the proxy agent, its connector, the redirect
 * interceptor and `request`. undici's own entry point loads all of undici at start (fetch,
 * WebSocket, EventSource, cookies, caches, mocks): about 30 ms and 7 MB of
 * every command's start-up. These are the same modules, wired as that entry
 * point wires them. The library (dist/index.js) imports undici itself.
 */
import Dispatcher from 'undici/lib/dispatcher/dispatcher.js'
import Agent from 'undici/lib/dispatcher/agent.js'
import EnvHttpProxyAgent from 'undici/lib/dispatcher/env-http-proxy-agent.js'
import buildConnector from 'undici/lib/core/connect.js'
import api from 'undici/lib/api/index.js'
import util from 'undici/lib/core/util.js'
import errors from 'undici/lib/core/errors.js'
import global from 'undici/lib/global.js'
import redirect from 'undici/lib/interceptor/redirect.js'

// as undici's index.js does: request(), stream(), … on every dispatcher
Object.assign(Dispatcher.prototype, api)

const { getGlobalDispatcher, setGlobalDispatcher } = global

/** undici's `request(url, opts)`: a URL string or URL, with `opts.dispatcher` or the global one. */
function request (url, opts) {
  if (opts != null && typeof opts !== 'object') throw new errors.InvalidArgumentError('invalid opts')
  const parsed = util.parseURL(url)
  const { dispatcher = getGlobalDispatcher(), ...rest } = opts ?? {}
  return api.request.call(dispatcher, {
    ...rest,
    origin: parsed.origin,
    path: parsed.search ? `${parsed.pathname}${parsed.search}` : parsed.pathname,
    method: rest.method || (rest.body ? 'PUT' : 'GET')
  })
}

const interceptors = { redirect }

export { Dispatcher, Agent, EnvHttpProxyAgent, buildConnector, request, getGlobalDispatcher, setGlobalDispatcher, interceptors }
