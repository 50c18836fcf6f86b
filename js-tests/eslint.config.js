// JavaScript lint (`make lint-js`, part of `make lint`): ESLint's
// recommended rules — the ones that find bugs (undefined names, unused
// variables, unreachable code, duplicate keys, bad regexes), none about
// layout — for the plugin's browser modules (wp-plugin-shim/assets/,
// browser globals) and these tests (js-tests/, Node globals; page
// callbacks run in the browser). Run from the repository root with
// `--config js-tests/eslint.config.js`, so both folders are under its
// base path; the plugin folder itself holds no dev files.
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['**/node_modules/**', 'target/**', 'run/**'] },
  js.configs.recommended,
  {
    files: ['wp-plugin-shim/assets/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.browser } },
  },
  {
    files: ['js-tests/**/*.js'],
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
