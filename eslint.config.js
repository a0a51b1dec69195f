import js from '@eslint/js'
import tseslint from 'typescript-eslint'

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
