/**
 * The strategies by mode: how a download of each mode is run. Adding a mode
 * is adding an entry here (and to MODES).
 *
 * @module
 */

import { CidgetError } from '../core/errors.js'
import type { Mode } from '../core/types.js'
import type { GatewayPool } from '../gateways/pool.js'
import { runPathDownload } from '../strategies/path.js'
import { runVerifiedDownload, type DagLimits, type VerifiedContext } from '../strategies/verified/index.js'
import { runCarDownload } from '../strategies/verified/car.js'
import { checkFileAgainstDag, declaredFileSize, type RepairReport } from '../strategies/verified/check.js'
import type { StrategyContext, StrategyResult } from '../strategies/types.js'

/** What a strategy takes from the engine besides its run's context. */
export interface EngineServices {
  /** Runs `fn` with a gateway pool of this download's own, counted in the Downloader's gateway totals meanwhile. */
  withPool: <T>(onBlock: (gateway: string) => void, fn: (pool: GatewayPool) => Promise<T>) => Promise<T>
  limits: DagLimits
  blockConcurrency: number
  runBlocks: number | undefined
  skipSymlinks: boolean
  /** Path mode: check the finished file against the CID. */
  checkPath: boolean
  onRepair: (report: RepairReport) => void
}

/** Runs one download of its mode to the end (or throws what stopped it). */
export type Strategy = (ctx: StrategyContext, engine: EngineServices) => Promise<StrategyResult>

/** Path mode; the finished file is checked against the CID through a pool of the same gateways. */
const path: Strategy = async (ctx, engine) => {
  if (!engine.checkPath) return await runPathDownload(ctx)
  return await engine.withPool(() => {}, async (pool) => {
    const dag = {
      cid: ctx.record.cid,
      path: ctx.record.path,
      journal: ctx.journal,
      blocks: pool,
      limits: engine.limits,
      signal: ctx.signal,
      concurrency: engine.blockConcurrency
    }
    return await runPathDownload({
      ...ctx,
      checkAgainstCid: async (file, size) => await checkFileAgainstDag(file, size, dag),
      declaredSize: async () => await declaredFileSize(dag),
      onRepair: engine.onRepair
    })
  })
}

/** Verified mode (files, or the CAR of `run`), with a gateway pool of its own. */
function verifiedBy (run: (ctx: VerifiedContext) => Promise<StrategyResult>): Strategy {
  return async (ctx, engine) => {
    // the status lifecycle (pending → in_progress | resuming) holds for verified runs too; path mode sets it per request
    await ctx.setStatus(ctx.record.currentSize > 0 ? 'resuming' : 'in_progress')
    let lastGateway: string | null = null
    return await engine.withPool((gateway) => { lastGateway = gateway }, async (pool) => await run({
      ...ctx,
      blocks: pool,
      limits: engine.limits,
      skipSymlinks: engine.skipSymlinks,
      concurrency: engine.blockConcurrency,
      ...(engine.runBlocks === undefined ? {} : { runBlocks: engine.runBlocks }),
      // two runs per gateway keep every gateway busy while each run's last bytes arrive
      runsAhead: Math.max(4, 2 * ctx.record.gateways.length),
      runSpread: ctx.record.gateways.length,
      lastGateway: () => lastGateway
    }))
  }
}

const STRATEGIES: ReadonlyMap<Mode, Strategy> = new Map<Mode, Strategy>([
  ['path', path],
  ['verified', verifiedBy(runVerifiedDownload)],
  ['car', verifiedBy(runCarDownload)]
])

/** The strategy of `mode`. */
export function strategyFor (mode: Mode): Strategy {
  const strategy = STRATEGIES.get(mode)
  if (strategy === undefined) throw new CidgetError('CIDGET_ERR_BAD_OPTION', `Unknown mode "${String(mode)}" (verified, path or car)`)
  return strategy
}
