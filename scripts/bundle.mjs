/**
 * Bundles the CLI (the `cidget` command) from the compiled modules in dist/
 * into dist/bin/: one file for what every command needs, plus a chunk for
 * each part loaded on demand (the service, the demo's test gateway, the
 * UnixFS exporter). Node then reads a handful of files at start instead of
 * some 350 modules, which halves the start-up of every command (about 0.22 s
 * to 0.11 s for `cidget --version` here). The library (dist/index.js) is not
 * bundled. Native and optional modules stay outside: better-sqlite3 (a native
 * addon, in its two versions) and pg (loaded only for a PostgreSQL state).
 *
 * dist/bin/ sits two levels below the package root, as dist/cli/ does, so the
 * modules that read ../../package.json find it from either place.
 *
 * It also bundles the web dashboard's browser client (src/server/dashboard/
 * client/, checked by its own tsconfig) and puts the dashboard's three files
 * in public/ beside the module that reads them: dist/server/dashboard/public/
 * for the library, dist/bin/public/ for the CLI bundle.
 */
import { build } from 'esbuild'
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises'
import { URL, fileURLToPath } from 'node:url'
import { bundleClient } from '../dist/server/dashboard/client-build.js'

const root = fileURLToPath(new URL('..', import.meta.url))

/** `import … from 'undici'` in the bundle gets scripts/undici-cli.mjs: the parts the CLI uses, not all of undici. */
const undiciForTheCli = {
  name: 'undici-for-the-cli',
  setup (b) {
    b.onResolve({ filter: /^undici$/ }, () => ({ path: `${root}scripts/undici-cli.mjs` }))
  }
}
/**
 * Two modules every command would load at start and none needs there, taken
 * on first use instead (about 4 ms of each start-up): undici's HTTP/2 half,
 * which loads node:http2 and node:tls (cidget's client offers only HTTP/1.1,
 * so it is never used), and commander's node:child_process (for executable
 * subcommands, which cidget does not have).
 */
const lazyAtStart = {
  name: 'lazy-at-start',
  setup (b) {
    const h2 = `${root}node_modules/undici/lib/dispatcher/client-h2.js`
    b.onResolve({ filter: /^\.\/client-h2\.js$/ }, (args) =>
      args.importer.endsWith('/undici/lib/dispatcher/client.js') ? { path: 'client-h2', namespace: 'lazy-at-start' } : undefined)
    b.onResolve({ filter: /^node:child_process$/ }, (args) =>
      args.importer.includes('/node_modules/commander/') ? { path: 'child_process', namespace: 'lazy-at-start' } : undefined)
    b.onLoad({ filter: /.*/, namespace: 'lazy-at-start' }, (args) => ({
      resolveDir: root,
      loader: 'js',
      contents: args.path === 'client-h2'
        ? `module.exports = function connectH2 (...args) { return require(${JSON.stringify(h2)})(...args) }`
        : "module.exports = new Proxy({}, { get (_, name) { return require('node:child_process')[name] } })"
    }))
  }
}
const outdir = `${root}dist/bin`
await rm(outdir, { recursive: true, force: true })
await build({
  absWorkingDir: root,
  entryPoints: { cidget: 'dist/cli/main.js' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.18',
  outdir,
  outExtension: { '.js': '.mjs' },
  chunkNames: '[name]-[hash]', // beside the entry: a chunk that reads ../../package.json finds it too
  external: ['better-sqlite3', 'better-sqlite3-node22', 'pg', 'pg-native'],
  // CommonJS dependencies bundled into ES modules still call require() for Node's own modules
  banner: { js: "import { createRequire as __cidgetCreateRequire } from 'node:module'; const require = __cidgetCreateRequire(import.meta.url);" },
  plugins: [undiciForTheCli, lazyAtStart],
  logLevel: 'warning'
})

const client = bundleClient(root)
for (const dir of [`${root}dist/server/dashboard/public`, `${outdir}/public`]) {
  await mkdir(dir, { recursive: true })
  await copyFile(`${root}src/server/dashboard/public/index.html`, `${dir}/index.html`)
  await copyFile(`${root}src/server/dashboard/public/dashboard.css`, `${dir}/dashboard.css`)
  await writeFile(`${dir}/dashboard.js`, client)
}
