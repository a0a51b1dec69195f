import { Worker, type WorkerOptions } from 'node:worker_threads'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { heapBoundFlags, reapplyHeapBound } from '../core/memory.js'

/** A sink worker's young generation (V8 splits it into two semi-spaces and a space for large objects). */
const WORKER_YOUNG_GENERATION_MIB = 3

/**
 * Starts one of the sink's worker threads (`hash-worker`, `write-worker`):
 * the .js module of that name beside this one in dist/, which the bundled
 * CLI in dist/bin/ finds at the same relative place (both sit one level below
 * dist/). From the TypeScript sources (tests, benchmarks) it is the .ts
 * module, loaded through tsx.
 */
export function startSinkWorker (name: 'hash-worker' | 'write-worker', workerData: object): Worker {
  // a worker's isolate, once up, gives V8's flags their defaults back: the worker sets the heap bound's
  // again as it starts (write-worker.ts, hash-worker.ts), and this thread once it hears the worker is online
  const worker = start(name, {
    workerData: { ...workerData, v8Flags: heapBoundFlags() } satisfies SinkWorkerData,
    // their heaps hold little (descriptors, a message at a time: the bytes travel in array buffers):
    // semi-spaces of 1 MiB instead of growing to the main thread's
    resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MIB }
  })
  worker.once('online', reapplyHeapBound)
  return worker
}

/** What every sink worker is given besides its own data: the V8 flags to set again as it starts. */
export interface SinkWorkerData {
  v8Flags: string[]
}

function start (name: string, options: WorkerOptions): Worker {
  // the process's options, but not --input-type: it applies to a string given with --eval, and refuses a module file
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'))
  try {
    return newWorker(name, options, execArgv)
  } catch (err) {
    // V8's flags (--max-semi-space-size=…) are the whole process's, the worker's too, and a Worker
    // refuses them in its execArgv: they are left out, by the names its error gives
    if ((err as { code?: string }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw err
    const refused = new Set((err as Error).message.split(': ').slice(1).join(': ').split(', '))
    return newWorker(name, options, execArgv.filter((a) => !refused.has(a)))
  }
}

function newWorker (name: string, options: WorkerOptions, execArgv: string[]): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL(`../sink/${name}.js`, import.meta.url), { ...options, execArgv })
  const url = JSON.stringify(new URL(`./${name}.ts`, import.meta.url).href)
  // tsx's ES module API, found from here (its CommonJS one does not load .ts modules in a worker)
  const require = createRequire(import.meta.url)
  const pkg = require.resolve('tsx/package.json')
  const api = (require(pkg) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api']?.import.default ?? ''
  const tsx = JSON.stringify(pathToFileURL(join(dirname(pkg), api)).href)
  return new Worker(`import(${tsx}).then((tsx) => tsx.tsImport(${url}, ${url}))`, { ...options, eval: true, execArgv })
}
