import { createHash, type Hash } from 'node:crypto'
import { dirname } from 'node:path'
import { DEFAULTS } from '../core/defaults.js'
import { CidgetError, systemCode, toCidgetError } from '../core/errors.js'
import { blame, decideRetry, endsTheRun, type FileRetryState, type RetryAction, type RetryFailure, type RetryPolicy } from '../core/retry.js'
import { gatewayUrl } from '../target/parse.js'
import { GatewayRotation } from '../gateways/rotation.js'
import { isStrongEtag } from '../gateways/headers.js'
import { PartialFile, ensureFreeSpace } from '../sink/partial.js'
import { DiskSpace } from '../sink/space.js'
import type { DownloadRecord } from '../core/types.js'
import type { HttpResponse } from '../gateways/http.js'
import { noGatewayLeft, readAnswer, type Answer } from './path-answer.js'
import type { StrategyContext, StrategyResult } from './types.js'
import { committedOutput, recordThenRename, restartWithoutPartial } from './steps.js'

/** Path mode writes received bytes in batches of this size. */
const WRITE_BYTES = 1024 * 1024

/**
 * Path mode: `GET /ipfs/CID[/path]` with `Range: bytes=N-` and `If-Range`,
 * streamed into the partial file while hashing SHA-256; renamed onto the
 * output only after the hash is known (and matches the expected one, if given).
 *
 * What follows a failure is `decideRetry`'s answer (the retry policy): timeouts
 * back off on the same gateway; network errors move to the next gateway at the
 * same offset; an interruption mid-body resumes (at or past the threshold) or
 * restarts from 0 and uses one of `maxResumeAttempts`; a 200 or 416 answer to a
 * Range request restarts from 0; a hash mismatch deletes the data and switches
 * gateway (`maxCorruptionSwitches`); 429/503 with Retry-After keeps that gateway
 * aside for the time asked.
 */
export async function runPathDownload (ctx: StrategyContext): Promise<StrategyResult> {
  const { record } = ctx
  const committed = await committedOutput(record)
  if (committed !== undefined) return committed
  const file = await PartialFile.open(record.output)
  try {
    const run = await PathRun.start(ctx, file)
    return await run.run()
  } finally {
    await file.close()
  }
}

/** One run of a path-mode download: the data held, its durability, and the gateways' rotation. */
class PathRun {
  readonly #ctx: StrategyContext
  readonly #record: DownloadRecord
  readonly #file: PartialFile
  readonly #policy: RetryPolicy
  readonly #rotation: GatewayRotation
  /** Free space is looked at as bytes arrive too: a body of unknown length is bounded by it. */
  readonly #space: DiskSpace
  #size: number | null
  #etag: string | null
  #attempts: number
  /** Bytes written to the partial file. */
  #offset: number
  /** Bytes fsynced and recorded. */
  #durable: number
  #lastSync: number
  /** Where the latest fsync started. */
  #syncMark: number
  #hash: Hash = createHash('sha256')
  /** Bytes `#hash` has consumed; -1 when it must be redone from disk. */
  #hashed = -1
  #resumes = 0
  #corruptions = 0
  /** Failures since bytes last arrived, across gateways. */
  #failStreak = 0
  #lastError: CidgetError | undefined
  /** Body bytes of the answer being read. */
  #received = 0
  /** Progress without its data (deleted, or recorded on another machine): said in the record once the run has its status. */
  #restartNote: string | undefined
  /**
   * The size the DAG declares (null: not known), looked up once: before reading an answer without a
   * length, or in the background once a body passes LENGTH_CHECK_BYTES (a claimed length is not
   * believed either, but small files need no extra request).
   */
  #declared: number | null | undefined
  #declaredLookup: Promise<number | null> | undefined
  /** Fsyncs while streaming run in the background: the socket keeps being read meanwhile. */
  #syncing: Promise<void> | undefined
  /** Bumped by a restart from 0: a sync started before it must not record anything. */
  #epoch = 0
  /** Chunks are written in batches of WRITE_BYTES: fewer, larger writes. */
  #buffered: Uint8Array[] = []
  #bufferedBytes = 0

  private constructor (ctx: StrategyContext, file: PartialFile, offset: number, restartNote: string | undefined) {
    const { record, policy } = ctx
    this.#ctx = ctx
    this.#record = record
    this.#file = file
    this.#policy = { ...policy, random: ctx.random }
    this.#size = record.size
    this.#etag = record.etag
    this.#attempts = record.attempts
    this.#offset = offset
    this.#durable = offset
    this.#syncMark = offset
    this.#lastSync = ctx.now()
    this.#restartNote = restartNote
    this.#rotation = new GatewayRotation(record.gateways, record.gateway, policy.maxRetryAttempts, ctx.gatewayHealth)
    this.#space = new DiskSpace(dirname(file.path))
  }

  /** Settles where the data held ends, then sets up the run from there. */
  static async start (ctx: StrategyContext, file: PartialFile): Promise<PathRun> {
    const { record } = ctx
    // Bytes past what the store says is durable may be torn. Without a check against the CID they
    // are cut off; with one (it repairs any bad range), a run killed after writing them leaves them
    // to the next, which continues from the bytes actually on disk once they are durable.
    const onDisk = await file.size()
    const keep = ctx.checkAgainstCid !== undefined ? Math.min(onDisk, record.size ?? onDisk) : record.currentSize
    const offset = Math.min(onDisk, keep)
    if (onDisk !== offset) await file.truncate(offset)
    if (offset > record.currentSize) await file.sync()
    const restartNote = offset === 0 && record.currentSize > 0
      ? `the partial data ${record.output}${DEFAULTS.PARTIAL_SUFFIX} holds none of the ${record.currentSize} bytes an earlier run recorded (deleted, or written on another machine)`
      : undefined
    const run = new PathRun(ctx, file, offset, restartNote)
    if (offset !== record.currentSize) await run.#recordOffset()
    return run
  }

  async run (): Promise<StrategyResult> {
    const { signal } = this.#ctx
    while (true) {
      if (signal.aborted) throw signal.reason
      const gateway = await this.#pick()
      if (!await this.#attempt(gateway)) continue
      const result = await this.#finish(gateway)
      if (result !== undefined) return result
    }
  }

  // --- the record: every write of path mode, through the journal ----------------------------------------------

  async #recordOffset (): Promise<void> {
    await this.#ctx.journal.durable(this.#offset)
  }

  async #recordAttempt (status: 'in_progress' | 'resuming'): Promise<void> {
    await this.#ctx.journal.attempt(this.#durable, this.#attempts, status)
  }

  /** Progress without its data (deleted, or recorded on another machine): said in the record once the run has its status. */
  async #recordNote (why: string): Promise<void> {
    await restartWithoutPartial(this.#ctx.journal, why, { keepBlocks: true })
  }

  async #recordDurable (target: number, at: number): Promise<void> {
    if (at !== this.#epoch || target <= this.#durable) return
    this.#durable = target
    await this.#ctx.journal.durable(this.#durable)
  }

  /** The inner nodes the check against the CID reads stay kept: they do not change with the bytes. */
  async #recordRestart (): Promise<void> {
    await this.#ctx.journal.restart({ keepBlocks: true })
  }

  async #recordLength (): Promise<void> {
    await this.#ctx.journal.describe(this.#size, this.#etag)
  }


  // --- one request ------------------------------------------------------------------------------

  /**
   * The gateway to ask next, after waiting out a Retry-After or a back-off when every live one is
   * aside: this run's own failures, or another download's (the process shares gateway health).
   */
  async #pick (): Promise<string> {
    const pick = this.#rotation.pick(this.#ctx.now())
    if (pick === undefined) throw noGatewayLeft(this.#record, this.#rotation.deadErrors, this.#lastError)
    if (pick.waitMs > 0) {
      const why = this.#lastError ?? this.#rotation.asideBecause(pick.gateway) ??
        new CidgetError('CIDGET_ERR_NETWORK', `${pick.gateway} is backing off after failures`, { gateway: pick.gateway })
      await this.#announce(pick.waitMs, why, pick.gateway, 'wait')
    }
    return pick.gateway
  }

  /** Counts the attempt and records it under its status. */
  async #begin (): Promise<void> {
    if (this.#hashed !== this.#offset) {
      this.#hash = await this.#file.hashPrefix(this.#offset, this.#ctx.signal)
      this.#hashed = this.#offset
    }
    this.#attempts++
    const status = this.#offset > 0 ? 'resuming' : 'in_progress'
    await this.#ctx.setStatus(status)
    if (this.#restartNote !== undefined) {
      await this.#recordNote(this.#restartNote)
      this.#restartNote = undefined
    }
    await this.#recordAttempt(status)
  }

  /** One request to `gateway`: true once the whole file is here, false to ask again. */
  async #attempt (gateway: string): Promise<boolean> {
    await this.#begin()
    const record = this.#record
    const headers: Record<string, string> = {}
    if (this.#offset > 0) {
      headers.range = `bytes=${this.#offset}-`
      if (isStrongEtag(this.#etag ?? undefined)) headers['if-range'] = this.#etag as string
    }
    this.#received = 0
    try {
      const res = await this.#ctx.http.request(gatewayUrl(gateway, record.cid, record.path), { gateway, headers, signal: this.#ctx.signal })
      const answer = await this.#answer(res, gateway)
      if (answer.kind === 'refused') return false
      if (answer.kind === 'complete') return true
      return await this.#readBody(res, gateway, answer.expected)
    } catch (thrown) {
      await this.#failed(thrown, gateway)
      return false
    }
  }

  /** Checks an answer's status and headers against the data held. */
  async #answer (res: HttpResponse, gateway: string): Promise<Answer> {
    const answer = readAnswer(res, { gateway, offset: this.#offset, size: this.#size, now: () => this.#ctx.now(), maxRetryAfterMs: this.#policy.maxRetryAfterMs })
    if (answer.kind === 'refused') {
      await this.#spliceRefused(answer.error, gateway)
      return answer
    }
    if (answer.kind === 'body' && answer.rangeIgnored !== undefined) await this.#spliceRefused(answer.rangeIgnored, gateway)
    this.#size = answer.size
    // no length: the body is cut off at the size the content declares, known before it is read
    if (answer.kind === 'body' && answer.expected === undefined) await this.#declaredSize().catch((err: unknown) => { res.discard(); throw err })
    return answer
  }

  // --- reading the body -------------------------------------------------------------------------

  /** Streams the body into the partial file: true once the whole file is here, false to ask for the rest. */
  async #readBody (res: HttpResponse, gateway: string, expected: number | undefined): Promise<boolean> {
    const record = this.#record
    const tag = res.headers.etag
    if (isStrongEtag(tag) && tag !== this.#etag) this.#etag = tag
    if (this.#size !== record.size || this.#etag !== record.etag) await this.#recordLength()
    if (this.#size !== null) {
      try {
        await ensureFreeSpace(this.#file.path, this.#size - this.#offset)
      } catch (err) {
        res.discard()
        throw err
      }
    }
    const bodyStart = this.#offset
    this.#ctx.onProgress(this.#offset, this.#size, gateway)
    for await (const chunk of res.body) {
      this.#checkLength(res, gateway, bodyStart + this.#received + chunk.byteLength, expected, chunk.byteLength)
      await this.#take(chunk)
      this.#ctx.onProgress(this.#offset + this.#bufferedBytes, this.#size, gateway)
    }
    await this.#flush()
    if (expected !== undefined && this.#received < expected) {
      throw new CidgetError('CIDGET_ERR_STREAM_RESET', `${gateway}: body ended after ${this.#received} of ${expected} bytes`, { gateway })
    }
    if (this.#size === null) this.#size = this.#offset // no declared length: the end of the body is the end of the file
    if (this.#received > 0) {
      this.#rotation.succeeded(gateway)
      this.#failStreak = 0
    }
    if (this.#offset < this.#size) return false // a shorter 206 than asked: ask for the rest
    if (this.#offset > this.#size) {
      throw new CidgetError('CIDGET_ERR_LENGTH_MISMATCH', `${gateway}: ${this.#offset} bytes for a ${this.#size}-byte file`, { gateway })
    }
    return true
  }

  /** Cuts an answer off where it passes the length it declared, or the size the content declares. */
  #checkLength (res: HttpResponse, gateway: string, end: number, expected: number | undefined, bytes: number): void {
    if (expected !== undefined && this.#received + bytes > expected) {
      res.discard()
      throw new CidgetError('CIDGET_ERR_LENGTH_MISMATCH', `${gateway}: sent more than the ${expected} bytes it declared`, { gateway })
    }
    if (this.#declared === undefined && end > DEFAULTS.LENGTH_CHECK_BYTES) void this.#declaredSize().catch(() => {})
    if (typeof this.#declared === 'number' && end > this.#declared) {
      res.discard()
      throw new CidgetError('CIDGET_ERR_LENGTH_MISMATCH', `${gateway}: sent more than the ${this.#declared} bytes ${this.#record.cid}${this.#record.path} declares`, { gateway })
    }
  }

  /** Hashes a chunk and buffers it; writes a full batch, and starts an fsync when one is due. */
  async #take (chunk: Uint8Array): Promise<void> {
    const { policy } = this.#ctx
    this.#hash.update(chunk)
    this.#received += chunk.byteLength
    this.#hashed = this.#offset + this.#bufferedBytes + chunk.byteLength
    this.#buffered.push(chunk)
    this.#bufferedBytes += chunk.byteLength
    if (this.#bufferedBytes >= WRITE_BYTES) await this.#flush()
    // the window a kill can lose counts what arrived, written or still in the batch
    if (this.#offset + this.#bufferedBytes - this.#syncMark >= policy.syncIntervalBytes || this.#ctx.now() - this.#lastSync >= policy.syncIntervalMs) {
      await this.#flush()
      this.#syncSoon()
    }
  }

  async #flush (): Promise<void> {
    if (this.#bufferedBytes === 0) return
    const data = this.#buffered.length === 1 ? this.#buffered[0] as Uint8Array : Buffer.concat(this.#buffered, this.#bufferedBytes)
    this.#buffered = []
    this.#bufferedBytes = 0
    await this.#space.ensure(data.byteLength)
    await this.#file.write(data, this.#offset)
    this.#space.wrote(data.byteLength)
    this.#offset += data.byteLength
  }

  async #declaredSize (): Promise<number | null> {
    this.#declaredLookup ??= this.#lookUpDeclared()
    return await this.#declaredLookup
  }

  async #lookUpDeclared (): Promise<number | null> {
    try {
      this.#declared = await this.#ctx.declaredSize?.() ?? null
    } catch (err) {
      if (this.#ctx.signal.aborted) throw err
      this.#declared = null // no trustless answer for the root: the free space bounds the body, and the CID check the result
    }
    return this.#declared
  }

  // --- syncing ----------------------------------------------------------------------------------

  #syncSoon (): void {
    if (this.#syncing !== undefined) return
    const target = this.#offset
    const at = this.#epoch
    this.#syncMark = target
    this.#lastSync = this.#ctx.now()
    const syncing = (async () => {
      try {
        await this.#file.sync()
        await this.#recordDurable(target, at)
      } finally {
        this.#syncing = undefined
      }
    })()
    this.#syncing = syncing
    syncing.catch(() => {}) // a failing fsync fails the next syncNow too
  }

  async #syncNow (): Promise<void> {
    if (this.#syncing !== undefined) await this.#syncing.catch(() => {})
    await this.#file.sync()
    this.#syncMark = this.#offset
    this.#lastSync = this.#ctx.now()
    await this.#recordDurable(this.#offset, this.#epoch)
  }

  /**
   * Recorded first, then the bytes dropped: a run that lost its lease stops at the record, before it
   * cuts a file the new lease holder writes (a kill between the two leaves bytes past the recorded
   * 0, which the next run cuts off, or checks against the CID).
   */
  async #restartFromZero (): Promise<void> {
    this.#epoch++
    if (this.#syncing !== undefined) await this.#syncing.catch(() => {})
    this.#buffered = []
    this.#bufferedBytes = 0
    await this.#recordRestart()
    await this.#file.truncate(0)
    this.#offset = 0
    this.#durable = 0
    this.#syncMark = 0
    this.#hash = createHash('sha256')
    this.#hashed = 0
  }

  // --- failures: the retry policy decides, the run carries it out --------------------------------

  /** A request or its body failed: keep what arrived intact, then do what the policy says. */
  async #failed (thrown: unknown, gateway: string): Promise<void> {
    // what arrived intact is kept; if this write fails too, the hash is redone from disk next time
    try { await this.#flush() } catch { this.#buffered = []; this.#bufferedBytes = 0 }
    if (this.#received > 0 || this.#offset !== this.#durable) {
      // keep what arrived: make it durable and record it before deciding anything
      try {
        await this.#syncNow()
      } catch (err) {
        // the original error matters more, unless this run may write no more (its lease is lost)
        if (toCidgetError(err).code === 'CIDGET_ERR_LEASE_HELD') throw err
      }
    }
    if (this.#ctx.signal.aborted) throw this.#ctx.signal.reason
    const error = toCidgetError(thrown)
    if (endsTheRun(error)) throw error
    // it delivered: its failure streak starts over; the resume budget bounds what follows
    if (this.#received > 0) this.#rotation.succeeded(gateway)
    await this.#retry({ error, phase: 'transfer', received: this.#received }, gateway)
  }

  /** Counts the failure against its gateway, asks the policy, and carries its decision out. */
  async #retry (failure: RetryFailure, gateway: string): Promise<void> {
    const { error } = failure
    const rotation = this.#rotation
    const alive = rotation.alive
    let timeouts = 0
    let live = true
    const blamed = blame(failure)
    if (blamed === 'timeout') {
      timeouts = rotation.timeout(gateway, error)
      // the rotation drops a gateway after its tries: one fewer live gateway means this one
      live = rotation.alive === alive
    } else if (blamed === 'error') {
      live = rotation.fail(gateway, error)
    }
    const decision = decideRetry(failure, this.#state({ timeouts, live, alive: rotation.alive }), this.#policy)
    this.#resumes = decision.resumes
    this.#corruptions = decision.corruptions
    this.#failStreak = decision.failStreak
    if (decision.restart) await this.#restartFromZero()
    if (decision.action === 'fail') {
      if (decision.remove) {
        // recorded first: a run that lost its lease deletes nothing
        if (!decision.restart) await this.#recordRestart()
        await this.#file.remove()
      }
      throw decision.error ?? error
    }
    this.#lastError = error
    if (decision.gateway === 'drop') rotation.drop(gateway, error)
    if (decision.blockMs !== undefined) rotation.block(gateway, this.#ctx.now() + decision.blockMs, error)
    if (decision.next === 'next') rotation.advance()
    await this.#announce(decision.delayMs, error, gateway, decision.action)
  }

  /** A 200 or 416 to a Range request: announced at the offset given up, then the data starts over. */
  async #spliceRefused (error: CidgetError, gateway: string): Promise<void> {
    const decision = decideRetry({ error, phase: 'transfer', received: 0 }, this.#state({ timeouts: 0, live: true, alive: this.#rotation.alive }), this.#policy)
    if (decision.action === 'fail') throw decision.error ?? error
    await this.#announce(decision.delayMs, error, gateway, decision.action)
    if (decision.restart) await this.#restartFromZero()
  }

  #state (gateway: FileRetryState['gateway']): FileRetryState {
    return { scope: 'file', offset: this.#offset, size: this.#size, resumes: this.#resumes, corruptions: this.#corruptions, failStreak: this.#failStreak, gateway }
  }

  async #announce (ms: number, err: CidgetError, gateway: string, action: Exclude<RetryAction, 'fail'>): Promise<void> {
    this.#ctx.onRetry({ code: err.code, message: err.message, systemCode: systemCode(err) ?? null, gateway, action, offset: this.#offset, delayMs: Math.max(0, Math.round(ms)) })
    if (ms > 0) await this.#ctx.sleep(ms, this.#ctx.signal)
  }

  // --- finishing --------------------------------------------------------------------------------

  /** The whole body is here: durable first, then verify, then rename. Undefined when it must be fetched again. */
  async #finish (gateway: string): Promise<StrategyResult | undefined> {
    const record = this.#record
    const { signal } = this.#ctx
    await this.#syncNow()
    let digest = this.#hash.digest('hex')
    this.#hashed = -1
    let checked = false
    if (this.#ctx.checkAgainstCid !== undefined) {
      let report
      try {
        report = await this.#ctx.checkAgainstCid(this.#file, this.#offset)
      } catch (thrown) {
        if (signal.aborted) throw signal.reason
        const err = toCidgetError(thrown)
        // a size the DAG refuses is bad data from this gateway; any other failure ends the run
        if (err.code !== 'CIDGET_ERR_LENGTH_MISMATCH') throw err
        await this.#retry({ error: new CidgetError(err.code, `${gateway}: ${err.message}`, { gateway }), phase: 'verify', received: 0 }, gateway)
        return undefined
      }
      checked = true
      if (report.bytes > 0) {
        this.#ctx.onRepair?.(report)
        digest = (await this.#file.hashPrefix(this.#offset, signal)).digest('hex')
      }
    }
    if (record.expectedSha256 !== null && digest !== record.expectedSha256.toLowerCase()) {
      const error = checked
        ? new CidgetError('CIDGET_ERR_HASH_MISMATCH',
          `The file matches ${record.cid}${record.path} block by block, but its SHA-256 is ${digest}, not the expected ${record.expectedSha256}`)
        : new CidgetError('CIDGET_ERR_HASH_MISMATCH', `SHA-256 mismatch from ${gateway}: expected ${record.expectedSha256}, got ${digest}`, { gateway })
      await this.#retry({ error, phase: 'verify', received: 0, cidChecked: checked }, gateway)
      return undefined
    }
    await recordThenRename(this.#ctx.journal, this.#file, digest, this.#offset)
    return { hash: digest, size: this.#offset, gateway }
  }
}
