/** Progress events of one run: the speed and the throttle, on an injected clock. */
import { describe, it, expect } from 'vitest'
import type { ProgressEvent } from '../../src/core/events.js'
import { ProgressThrottle } from '../../src/engine/progress.js'

function throttle (startBytes?: number): { t: ProgressThrottle, events: ProgressEvent[], clock: { now: number } } {
  const clock = { now: 0 }
  const events: ProgressEvent[] = []
  const t = new ProgressThrottle({
    id: 1,
    intervalMs: 100,
    emit: (e) => { events.push(e) },
    clock: () => clock.now,
    ...(startBytes === undefined ? {} : { startBytes })
  })
  return { t, events, clock }
}

describe('progress', () => {
  it('the speed counts the bytes of the samples', () => {
    const { t, events, clock } = throttle()
    clock.now = 500
    t.update(500, 10_000, 'g')
    expect(events.at(-1)?.speed).toBe(1000)
  })

  it('the speed after a resume counts only the bytes fetched since, not those done before it', () => {
    const { t, events, clock } = throttle(1_000_000)
    clock.now = 500
    t.update(1_000_500, 2_000_000, 'g')
    expect(events.at(-1)?.speed).toBe(1000)
  })

  it('a restart from zero starts a new sample', () => {
    const { t, events, clock } = throttle(1_000_000)
    clock.now = 100
    t.update(0, 2_000_000, 'g')
    clock.now = 600
    t.update(500, 2_000_000, 'g')
    expect(events.at(-1)?.speed).toBe(1000)
  })

  it('holds events back to one per interval, with a trailing one that carries the last value', async () => {
    const { t, events, clock } = throttle()
    clock.now = 1000
    t.update(1, 100, 'g')
    t.update(2, 100, 'g')
    t.update(3, 100, 'g')
    expect(events.map(e => e.bytes)).toEqual([1])
    t.flush()
    expect(events.map(e => e.bytes)).toEqual([1, 3])
    t.update(100, 100, 'g')
    expect(events.map(e => e.bytes)).toEqual([1, 3, 100])
  })
})
