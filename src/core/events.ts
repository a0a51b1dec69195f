import { EventEmitter } from 'node:events'

export type { ProgressEvent, StatusEvent, RetryEvent, RepairEvent, ResolvedEvent, GatewayEvent, CidgetEvents } from './event-types.js'

/** A typed EventEmitter: event names and payloads checked at compile time. */
export class TypedEmitter<E extends { [K in keyof E]: unknown[] }> {
  readonly #ee = new EventEmitter()

  constructor () {
    this.#ee.setMaxListeners(0)
  }

  on<K extends keyof E & string> (event: K, listener: (...args: E[K]) => void): this {
    this.#ee.on(event, listener as (...args: unknown[]) => void)
    return this
  }

  off<K extends keyof E & string> (event: K, listener: (...args: E[K]) => void): this {
    this.#ee.off(event, listener as (...args: unknown[]) => void)
    return this
  }

  once<K extends keyof E & string> (event: K, listener: (...args: E[K]) => void): this {
    this.#ee.once(event, listener as (...args: unknown[]) => void)
    return this
  }

  emit<K extends keyof E & string> (event: K, ...args: E[K]): boolean {
    return this.#ee.emit(event, ...args)
  }
}
