// JavaScript lint (`make lint-js`, part of `make lint`): ESLint's
// recommended rules — the ones that find bugs (undefined names, unused
// variables, unreachable code, duplicate keys, bad regexes), none about
// layout — for the browser modules in assets/ (browser globals) and the
// test code in tests/ (Node globals; page callbacks run in the browser).
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['node_modules/**'] },
  js.configs.recommended,
  {
    files: ['assets/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.browser } },
  },
  {
    files: ['tests/**/*.js', 'eslint.config.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.node, ...globals.browser } },
  },
  {
    rules: {
      // `catch {}` blocks that only say why in a comment are intended.
      'no-empty': ['error', { allowEmptyCatch: true }],
      'no-unused-vars': ['error', { args: 'after-used', argsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
];
