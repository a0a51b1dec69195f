import { describe, it, expect } from 'vitest'
import { Semaphore, abortableSleep, raceAbort } from '../../src/core/async.js'

describe('core/async', () => {
  it('abortableSleep resolves after its time and rejects with the reason at once when aborted', async () => {
    await abortableSleep(1, new AbortController().signal)
    const c = new AbortController()
    const started = performance.now()
    const waiting = abortableSleep(60_000, c.signal)
    c.abort(new Error('stop'))
    await expect(waiting).rejects.toThrow('stop')
    expect(performance.now() - started).toBeLessThan(1_000)
    await expect(abortableSleep(1, c.signal)).rejects.toThrow('stop')
  })

  it('raceAbort rejects with the reason while the promise runs on', async () => {
    const c = new AbortController()
    const racing = raceAbort(new Promise<number>(() => {}), c.signal)
    c.abort('gone')
    await expect(racing).rejects.toBe('gone')
    await expect(raceAbort(Promise.resolve(3), undefined)).resolves.toBe(3)
  })

  it('Semaphore grants in FIFO order, and an aborted waiter leaves the queue', async () => {
    const sem = new Semaphore(1)
    const never = new AbortController().signal
    await sem.acquire(never)
    expect(sem.tryAcquire()).toBe(false)
    const order: string[] = []
    const quitter = new AbortController()
    const a = sem.acquire(never).then(() => order.push('a'))
    const b = sem.acquire(quitter.signal).then(() => order.push('b'), () => order.push('b aborted'))
    const c = sem.acquire(never).then(() => order.push('c'))
    quitter.abort()
    await b
    sem.release()
    await a
    sem.release()
    await c
    expect(order).toEqual(['b aborted', 'a', 'c'])
    sem.release()
    expect(sem.tryAcquire()).toBe(true)
  })
})
