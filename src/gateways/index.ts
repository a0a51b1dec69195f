export { HttpClient } from './http.js'
export type { HttpClientInit, HttpResponse } from './http.js'
