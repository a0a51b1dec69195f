import { defineConfig } from 'vitest/config'

/** The leak test measures RSS; it runs on its own with V8's young generation held at one size (see the test). */
const LEAKS = 'test/engine/leaks.test.ts'

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    setupFiles: ['test/setup.ts'],
    projects: [
      { extends: true, test: { name: 'cidget', include: ['test/**/*.test.ts'], exclude: [LEAKS] } },
      { extends: true, test: { name: 'leaks', include: [LEAKS], execArgv: ['--max-semi-space-size=16'] } }
    ]
  }
})
