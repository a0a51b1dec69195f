/**
 * The short form of the chaos soak (test/chaos/soak.ts): 45 s of faults,
 * kills and full disks on a fixed seed, then every download must be
 * `success` with the right bytes. `npm run chaos -- --seconds N --seed S` runs
 * the long form; CIDGET_CHAOS_SEED and CIDGET_CHAOS_SECONDS change this one.
 */
import { it, expect } from 'vitest'
import { runSoak } from './soak.js'
import { envInt } from '../helpers.js'

const SEED = envInt('CIDGET_CHAOS_SEED', 20261126)
const SECONDS = envInt('CIDGET_CHAOS_SECONDS', 45)

it(`chaos soak: ${SECONDS} s on seed ${SEED} ends with every download verified`, async () => {
  console.log(`chaos soak: seed ${SEED}, ${SECONDS} s (replay: CIDGET_CHAOS_SEED=${SEED} npx vitest run test/chaos)`)
  const result = await runSoak({ seconds: SECONDS, seed: SEED, requireAllSuccess: true, finalRounds: 3 })
  console.log(result.summary)
  expect(result.violations, `chaos soak failed on seed ${SEED}:\n${result.summary}`).toEqual([])
  expect(Object.keys(result.statuses)).toEqual(['success'])
  // the soak did what it says: downloads were killed and faults were injected
  expect(result.kills).toBeGreaterThan(0)
  expect(Object.keys(result.faults).length).toBeGreaterThan(3)
}, (SECONDS + 150) * 1000)
