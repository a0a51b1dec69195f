import type { StrategyContext } from '../types.js'
import type { DagLimits } from './dag.js'
import type { BlockSource } from './reader.js'

export interface VerifiedContext extends StrategyContext {
  blocks: BlockSource
  limits: DagLimits
  /** Leave symlinks out instead of refusing unsafe ones. */
  skipSymlinks: boolean
  /** Blocks fetched in parallel (leaves) and dag-pb blocks read ahead. */
  concurrency: number
  /**
   * Consecutive raw leaves asked for in one CAR request (IPIP-402 entity
   * bytes) where the block source can; 0 or 1: block by block, and no CAR
   * request at all (no streams of whole subtrees either). @default 16
   */
  runBlocks?: number
  /** Runs started ahead of the leaf being written. @default 4 */
  runsAhead?: number
  /** Gateways the runs are spread over: the file's last leaves are split into as many runs. @default 1 */
  runSpread?: number
  /** The gateway that served the latest block, for progress. */
  lastGateway: () => string | null
}
