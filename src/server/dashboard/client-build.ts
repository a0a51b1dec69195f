/**
 * How esbuild bundles the dashboard's browser client (client/main.ts and its
 * imports) into the one script the page loads. The build calls this from
 * scripts/bundle.mjs; a service run from its TypeScript sources (the tests,
 * tsx) calls it when it loads the assets, so it always serves the client as
 * the sources are. esbuild is a dev dependency: an installed package never
 * gets here, it reads the bundle the build wrote.
 *
 * @module
 */

import { createRequire } from 'node:module'
import type * as Esbuild from 'esbuild'

/** The client's entry, from the package root. */
export const CLIENT_ENTRY = 'src/server/dashboard/client/main.ts'

/** The bundled client as text, from the sources under `root` (the package root). */
export function bundleClient (root: string): string {
  // loaded by name at run time: the CLI bundle must not take esbuild in with it
  const load = createRequire(import.meta.url)
  const esbuild = load('esbuild') as typeof Esbuild
  const result = esbuild.buildSync({
    absWorkingDir: root,
    entryPoints: [CLIENT_ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    charset: 'utf8',
    legalComments: 'none',
    write: false,
    logLevel: 'silent'
  })
  const out = result.outputFiles[0]
  if (out === undefined) throw new Error(`esbuild wrote nothing for ${CLIENT_ENTRY}`)
  return out.text
}
