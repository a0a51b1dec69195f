import js from '@eslint/js'
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript'
import { importX } from 'eslint-plugin-import-x'
import tseslint from 'typescript-eslint'

// The shape of src/: files and functions small enough to read, no import loops.
const SHAPE = 'error'

// Files allowed past the size limits: data tables only, each with its reason.
const SIZE_EXEMPT = []

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error'
    }
  },
  {
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      // Follows imports into .ts files, parsed as TypeScript; the resolver maps NodeNext's `.js` specifiers to them.
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: 'tsconfig.json' })]
    },
    rules: {
      // Raw counts: blank lines and comments are lines a reader scrolls past too.
      'max-lines': [SHAPE, { max: 500, skipBlankLines: false, skipComments: false }],
      'max-lines-per-function': [SHAPE, { max: 120, skipBlankLines: false, skipComments: false }],
      // `import type` is erased at build time, so only value imports can form a loop.
      'import-x/no-cycle': [SHAPE, { ignoreExternal: true }]
    }
  },
  ...(SIZE_EXEMPT.length === 0
    ? []
    : [{ files: SIZE_EXEMPT, rules: { 'max-lines': 'off', 'max-lines-per-function': 'off' } }]),
  {
    // the dashboard shows names from a DAG and targets users typed: its DOM is built with textContent only
    files: ['src/server/dashboard/client/**/*.ts'],
    rules: {
      'no-restricted-properties': ['error',
        { property: 'innerHTML', message: 'Build elements and set textContent.' },
        { property: 'outerHTML', message: 'Build elements and set textContent.' },
        { property: 'insertAdjacentHTML', message: 'Build elements and set textContent.' },
        { object: 'document', property: 'write', message: 'Build elements and set textContent.' }
      ]
    }
  }
)
