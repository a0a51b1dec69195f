import { createHash, type Hash } from 'node:crypto'
import { DEFAULTS } from '../core/defaults.js'
import { CidgetError, toCidgetError } from '../core/errors.js'
import { parseRetryAfter, retryDelay } from '../core/retry.js'
import { gatewayUrl } from '../target/parse.js'
import { GatewayRotation } from '../gateways/rotation.js'
import { isStrongEtag, parseContentLength, parseContentRange, parseUnsatisfiedRange } from '../gateways/headers.js'
import { dirname } from 'node:path'
import { PartialFile, ensureFreeSpace } from '../sink/partial.js'
import { DiskSpace } from '../sink/space.js'
import type { HttpResponse } from '../gateways/http.js'
import type { StrategyContext, StrategyResult } from './types.js'
import { committedOutput, recordThenRename, restartWithoutPartial } from './steps.js'

/** Path mode writes received bytes in batches of this size. */
const WRITE_BYTES = 1024 * 1024

/** The error for an HTTP answer that is not 200/206/416. */
function statusError (res: HttpResponse, gateway: string, now: number, maxRetryAfterMs: number): CidgetError {
  const status = res.status
  if (status === 404 || status === 410) {
    return new CidgetError('CIDGET_ERR_NOT_FOUND', `${gateway}: HTTP ${status}, content not found`, { gateway, status })
  }
  const retryAfterMs = parseRetryAfter(res.headers['retry-after'], now, maxRetryAfterMs)
  const wait = retryAfterMs === undefined ? '' : ` (Retry-After ${Math.round(retryAfterMs)} ms)`
  return new CidgetError('CIDGET_ERR_HTTP_STATUS', `${gateway}: HTTP ${status}${wait}`, {
    gateway, status, ...(retryAfterMs === undefined ? {} : { retryAfterMs })
  })
}

/** Statuses worth asking the same gateway again (after a wait). */
function transientStatus (status: number | undefined): boolean {
  return status === 408 || status === 425 || status === 429 || (status !== undefined && status >= 500)
}

/**
 * Path mode: `GET /ipfs/CID[/path]` with `Range: bytes=N-` and `If-Range`,
 * streamed into the partial file while hashing SHA-256; renamed onto the
 * output only after the hash is known (and matches the expected one, if given).
 *
 * Recovery, per the retry policy: timeouts back off on the same gateway;
 * network errors move to the next gateway at the same offset; an interruption
 * mid-body resumes (at or past the threshold) or restarts from 0 and uses one of
 * `maxResumeAttempts`; a 200 or 416 answer to a Range request restarts from 0;
 * a hash mismatch deletes the data and switches gateway (`maxCorruptionSwitches`);
 * 429/503 with Retry-After keeps that gateway aside for the time asked.
 */
export async function runPathDownload (ctx: StrategyContext): Promise<StrategyResult> {
  const { record, journal, http, policy, signal } = ctx
  const committed = await committedOutput(record)
  if (committed !== undefined) return committed
  const file = await PartialFile.open(record.output)
  const backoff = {
    initialMs: policy.initialBackoffMs,
    multiplier: policy.backoffMultiplier,
    maxMs: policy.maxBackoffMs,
    jitter: policy.backoffJitter,
    random: ctx.random
  }
  try {
    let size = record.size
    let etag = record.etag
    let attempts = record.attempts
    // Bytes past what the store says is durable may be torn. Without a check against the CID they
    // are cut off; with one (it repairs any bad range), a run killed after writing them leaves them
    // to the next, which continues from the bytes actually on disk once they are durable.
    const onDisk = await file.size()
    const keep = ctx.checkAgainstCid !== undefined ? Math.min(onDisk, record.size ?? onDisk) : record.currentSize
    let offset = Math.min(onDisk, keep)
    if (onDisk !== offset) await file.truncate(offset)
    if (offset > record.currentSize) await file.sync()
    // progress without its data (deleted, or recorded on another machine): said in the record once the run has its status
    let restartNote = offset === 0 && record.currentSize > 0
      ? `the partial data ${record.output}${DEFAULTS.PARTIAL_SUFFIX} holds none of the ${record.currentSize} bytes an earlier run recorded (deleted, or written on another machine)`
      : undefined
    if (offset !== record.currentSize) await journal.durable(offset)
    let durable = offset
    let lastSync = ctx.now()
    let hash: Hash | undefined
    let hashed = -1 // bytes `hash` has consumed
    let resumes = 0
    let corruptions = 0
    let failStreak = 0 // failures since bytes last arrived, across gateways
    let lastError: CidgetError | undefined
    const rotation = new GatewayRotation(record.gateways, record.gateway, policy.maxRetryAttempts)
    // free space is looked at as bytes arrive too: a body of unknown length is bounded by it
    const space = new DiskSpace(dirname(file.path))
    /**
     * The size the DAG declares (null: not known), looked up once: before reading an answer without a
     * length, or in the background once a body passes LENGTH_CHECK_BYTES (a claimed length is not
     * believed either, but small files need no extra request).
     */
    let declared: number | null | undefined
    let declaredLookup: Promise<number | null> | undefined
    const declaredSize = async (): Promise<number | null> => {
      declaredLookup ??= (async () => {
        try {
          declared = await ctx.declaredSize?.() ?? null
        } catch (err) {
          if (signal.aborted) throw err
          declared = null // no trustless answer for the root: the free space bounds the body, and the CID check the result
        }
        return declared
      })()
      return await declaredLookup
    }

    const record_ = async (status: 'in_progress' | 'resuming'): Promise<void> => {
      await journal.attempt(durable, attempts, status)
    }
    // fsyncs while streaming run in the background: the socket keeps being read meanwhile
    let syncing: Promise<void> | undefined
    let epoch = 0 // bumped by a restart from 0: a sync started before it must not record anything
    const recordDurable = async (target: number, at: number): Promise<void> => {
      if (at !== epoch || target <= durable) return
      durable = target
      await journal.durable(durable)
    }
    let syncMark = offset // where the latest fsync started
    const syncSoon = (): void => {
      if (syncing !== undefined) return
      const target = offset
      const at = epoch
      syncMark = target
      lastSync = ctx.now()
      syncing = (async () => {
        try {
          await file.sync()
          await recordDurable(target, at)
        } finally {
          syncing = undefined
        }
      })()
      syncing.catch(() => {}) // a failing fsync fails the next syncNow too
    }
    const syncNow = async (): Promise<void> => {
      if (syncing !== undefined) await syncing.catch(() => {})
      await file.sync()
      syncMark = offset
      lastSync = ctx.now()
      await recordDurable(offset, epoch)
    }
    // chunks are written in batches of WRITE_BYTES: fewer, larger writes
    let buffered: Uint8Array[] = []
    let bufferedBytes = 0
    const flush = async (): Promise<void> => {
      if (bufferedBytes === 0) return
      const data = buffered.length === 1 ? buffered[0] as Uint8Array : Buffer.concat(buffered, bufferedBytes)
      buffered = []
      bufferedBytes = 0
      await space.ensure(data.byteLength)
      await file.write(data, offset)
      space.wrote(data.byteLength)
      offset += data.byteLength
    }
    const restartFromZero = async (): Promise<void> => {
      epoch++
      if (syncing !== undefined) await syncing.catch(() => {})
      buffered = []
      bufferedBytes = 0
      await file.truncate(0)
      offset = 0
      durable = 0
      syncMark = 0
      hash = createHash('sha256')
      hashed = 0
      await journal.restart({ keepBlocks: true })
    }
    const wait = async (ms: number, err: CidgetError, gateway: string, action: 'wait' | 'switch' | 'resume' | 'restart'): Promise<void> => {
      ctx.onRetry({ code: err.code, message: err.message, gateway, action, offset, delayMs: Math.max(0, Math.round(ms)) })
      if (ms > 0) await ctx.sleep(ms, signal)
    }

    while (true) {
      if (signal.aborted) throw signal.reason
      const pick = rotation.pick(ctx.now())
      if (pick === undefined) {
        const dead = rotation.deadErrors
        if (dead.length > 0 && dead.every(e => e.code === 'CIDGET_ERR_NOT_FOUND')) {
          throw new CidgetError('CIDGET_ERR_NOT_FOUND', `No gateway has ${record.cid}${record.path} (${dead.length} tried)`)
        }
        const last = lastError ?? dead[dead.length - 1]
        throw new CidgetError(last?.code ?? 'CIDGET_ERR_NETWORK',
          `All ${record.gateways.length} gateway(s) failed; last error: ${last?.message ?? 'unknown'}`, { cause: last })
      }
      const gateway = pick.gateway
      if (pick.waitMs > 0 && lastError !== undefined) await wait(pick.waitMs, lastError, gateway, 'wait')

      if (hash === undefined || hashed !== offset) {
        hash = await file.hashPrefix(offset, signal)
        hashed = offset
      }
      attempts++
      const status = offset > 0 ? 'resuming' : 'in_progress'
      await ctx.setStatus(status)
      if (restartNote !== undefined) {
        await restartWithoutPartial(journal, restartNote, { keepBlocks: true })
        restartNote = undefined
      }
      await record_(status)

      const headers: Record<string, string> = {}
      if (offset > 0) {
        headers.range = `bytes=${offset}-`
        if (isStrongEtag(etag ?? undefined)) headers['if-range'] = etag as string
      }
      let received = 0
      let finished = false
      try {
        const res = await http.request(gatewayUrl(gateway, record.cid, record.path), { gateway, headers, signal })
        let expected: number | undefined // body bytes this answer must carry
        if (res.status === 200) {
          const length = parseContentLength(res.headers['content-length'])
          if (offset > 0) {
            // The gateway ignored the range (or the If-Range validator failed): never append.
            await wait(0, new CidgetError('CIDGET_ERR_RANGE_IGNORED', `${gateway} answered a Range request with 200`, { gateway }), gateway, 'restart')
            await restartFromZero()
          }
          expected = length
          if (length !== undefined) size = length
          else {
            // no length: the body is cut off at the size the content declares, known before it is read
            await declaredSize().catch((err: unknown) => { res.discard(); throw err })
          }
        } else if (res.status === 206) {
          const cr = parseContentRange(res.headers['content-range'])
          const length = parseContentLength(res.headers['content-length'])
          if (cr === undefined || cr.start !== offset || (cr.total !== undefined && size !== null && cr.total !== size) ||
              (length !== undefined && length !== cr.end - cr.start + 1)) {
            res.discard()
            throw new CidgetError('CIDGET_ERR_RANGE_MISMATCH',
              `${gateway}: asked for bytes ${offset}- and got Content-Range "${res.headers['content-range'] ?? ''}"` +
              (size !== null ? ` (size ${size})` : ''), { gateway })
          }
          expected = cr.end - cr.start + 1
          if (cr.total !== undefined) size = cr.total
        } else if (res.status === 416 && offset > 0) {
          res.discard()
          const total = parseUnsatisfiedRange(res.headers['content-range'])
          if ((size !== null && offset === size) || total === offset) {
            size = offset
            finished = true // everything is already here
          } else {
            await wait(0, new CidgetError('CIDGET_ERR_RANGE_NOT_SATISFIABLE', `${gateway} answered 416 at offset ${offset}`, { gateway }), gateway, 'restart')
            await restartFromZero()
            continue
          }
        } else {
          res.discard()
          throw statusError(res, gateway, ctx.now(), policy.maxRetryAfterMs)
        }

        if (!finished) {
          const tag = res.headers.etag
          if (isStrongEtag(tag) && tag !== etag) etag = tag
          if (size !== record.size || etag !== record.etag) await journal.describe(size, etag)
          if (size !== null) {
            try {
              await ensureFreeSpace(file.path, size - offset)
            } catch (err) {
              res.discard()
              throw err
            }
          }
          const bodyStart = offset
          ctx.onProgress(offset, size, gateway)
          for await (const chunk of res.body) {
            if (expected !== undefined && received + chunk.byteLength > expected) {
              res.discard()
              throw new CidgetError('CIDGET_ERR_LENGTH_MISMATCH', `${gateway}: sent more than the ${expected} bytes it declared`, { gateway })
            }
            const end = bodyStart + received + chunk.byteLength
            if (declared === undefined && end > DEFAULTS.LENGTH_CHECK_BYTES) void declaredSize().catch(() => {})
            if (typeof declared === 'number' && end > declared) {
              res.discard()
              throw new CidgetError('CIDGET_ERR_LENGTH_MISMATCH', `${gateway}: sent more than the ${declared} bytes ${record.cid}${record.path} declares`, { gateway })
            }
            hash.update(chunk)
            received += chunk.byteLength
            hashed = offset + bufferedBytes + chunk.byteLength
            buffered.push(chunk)
            bufferedBytes += chunk.byteLength
            if (bufferedBytes >= WRITE_BYTES) await flush()
            // the window a kill can lose counts what arrived, written or still in the batch
            if (offset + bufferedBytes - syncMark >= policy.syncIntervalBytes || ctx.now() - lastSync >= policy.syncIntervalMs) {
              await flush()
              syncSoon()
            }
            ctx.onProgress(offset + bufferedBytes, size, gateway)
          }
          await flush()
          if (expected !== undefined && received < expected) {
            throw new CidgetError('CIDGET_ERR_STREAM_RESET', `${gateway}: body ended after ${received} of ${expected} bytes`, { gateway })
          }
          if (size === null) size = offset // no declared length: the end of the body is the end of the file
          if (received > 0) {
            rotation.succeeded(gateway)
            failStreak = 0
          }
          if (offset < size) continue // a shorter 206 than asked: ask for the rest
          if (offset > size) {
            throw new CidgetError('CIDGET_ERR_LENGTH_MISMATCH', `${gateway}: ${offset} bytes for a ${size}-byte file`, { gateway })
          }
        }
      } catch (thrown) {
        // what arrived intact is kept; if this write fails too, the hash is redone from disk next time
        try { await flush() } catch { buffered = []; bufferedBytes = 0 }
        if (received > 0 || offset !== durable) {
          // keep what arrived: make it durable and record it before deciding anything
          try { await syncNow() } catch { /* the original error matters more */ }
        }
        if (signal.aborted) throw signal.reason
        const err = toCidgetError(thrown)
        if (err.kind === 'disk' || err.kind === 'fs' || err.kind === 'input' || err.kind === 'state' || err.kind === 'aborted') throw err
        lastError = err
        if (received > 0) {
          // it delivered: its failure streak starts over; the resume budget bounds what follows
          rotation.succeeded(gateway)
          failStreak = 0
        }
        failStreak++

        if (received > 0 || err.kind === 'stream') {
          // interrupted mid-body: one resume attempt
          resumes++
          if (resumes > policy.maxResumeAttempts) {
            throw new CidgetError('CIDGET_ERR_ATTEMPTS_EXHAUSTED',
              `Gave up after ${policy.maxResumeAttempts} resume attempts; last error: ${err.message}`, { cause: err })
          }
        }
        if (err.code === 'CIDGET_ERR_LENGTH_MISMATCH') {
          // the bytes of this answer cannot be trusted at all
          await restartFromZero()
          rotation.fail(gateway, err)
          rotation.advance()
          await wait(0, err, gateway, 'restart')
          continue
        }
        const restart = size !== null && size > 0 && offset > 0 && received > 0 && offset / size < policy.resumeThreshold
        if (restart) await restartFromZero()
        const action = restart ? 'restart' : 'resume'

        if (err.code === 'CIDGET_ERR_TIMEOUT') {
          const n = rotation.timeout(gateway, err)
          if (n < policy.maxRetryAttempts) {
            await wait(retryDelay(n, backoff), err, gateway, action)
          } else {
            rotation.advance()
            await wait(0, err, gateway, 'switch')
          }
          continue
        }
        if (err.code === 'CIDGET_ERR_NOT_FOUND' || (err.status !== undefined && !transientStatus(err.status))) {
          rotation.drop(gateway, err)
          rotation.advance()
          await wait(0, err, gateway, 'switch')
          continue
        }
        if (err.retryAfterMs !== undefined) rotation.block(gateway, ctx.now() + err.retryAfterMs)
        rotation.fail(gateway, err)
        rotation.advance()
        // once every live gateway failed in a row, back off before the next round
        const round = Math.floor(failStreak / Math.max(1, rotation.alive))
        const delay = round >= 1 && err.retryAfterMs === undefined ? retryDelay(round, backoff) : 0
        await wait(delay, err, gateway, received > 0 ? action : 'switch')
        continue
      }

      // the whole body is here: durable first, then verify, then rename
      await syncNow()
      let digest = hash.digest('hex')
      hash = undefined
      hashed = -1
      /** Bad data from this gateway: start over from 0 on the next one, within the switch budget. */
      const corrupt = async (err: CidgetError): Promise<void> => {
        corruptions++
        lastError = err
        await restartFromZero()
        if (corruptions > policy.maxCorruptionSwitches) {
          await file.remove()
          throw new CidgetError(err.code, `${err.message}; gave up after ${policy.maxCorruptionSwitches} gateway switches`, { gateway })
        }
        rotation.fail(gateway, err)
        rotation.advance()
        await wait(0, err, gateway, 'restart')
      }
      let checked = false
      if (ctx.checkAgainstCid !== undefined) {
        let report
        try {
          report = await ctx.checkAgainstCid(file, offset)
        } catch (thrown) {
          if (signal.aborted) throw signal.reason
          const err = toCidgetError(thrown)
          if (err.code !== 'CIDGET_ERR_LENGTH_MISMATCH') throw err
          await corrupt(new CidgetError(err.code, `${gateway}: ${err.message}`, { gateway }))
          continue
        }
        checked = true
        if (report.bytes > 0) {
          ctx.onRepair?.(report)
          digest = (await file.hashPrefix(offset, signal)).digest('hex')
        }
      }
      if (record.expectedSha256 !== null && digest !== record.expectedSha256.toLowerCase()) {
        if (checked) {
          // the bytes are the CID's: the expected hash is not this content's
          await file.remove()
          throw new CidgetError('CIDGET_ERR_HASH_MISMATCH',
            `The file matches ${record.cid}${record.path} block by block, but its SHA-256 is ${digest}, not the expected ${record.expectedSha256}`)
        }
        await corrupt(new CidgetError('CIDGET_ERR_HASH_MISMATCH',
          `SHA-256 mismatch from ${gateway}: expected ${record.expectedSha256}, got ${digest}`, { gateway }))
        continue
      }
      // the hash first: a kill after the rename leaves a record that says what the output must hold
      await recordThenRename(journal, file, digest, offset)
      return { hash: digest, size: offset, gateway }
    }
  } finally {
    await file.close()
  }
}
