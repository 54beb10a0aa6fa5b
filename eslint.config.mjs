// ESLint for lib/, test/ and scripts/: typescript-eslint's strict, type-aware rules (floating
// promises, unsafe any, misused promises, unnecessary conditions …). Rules tuned below carry the
// reason; nothing is switched off wholesale.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'build-*/**', 'node_modules/**', 'bin/**', 'scripts/gen-esm.js', 'scripts/install.js', 'test/cuda/emu/**', 'eslint.config.mjs', '.dependency-cruiser.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Numbers and booleans in messages are what the messages are for (shapes, counts, flags);
      // RegExps print as their source; any, objects, arrays, null and undefined in a template stay
      // errors (they print as [object …], "null", "undefined": a message must say what it means).
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true, allowAny: false, allowNullish: false, allowRegExp: true, allowNever: false }],
      // `() => x.cancel()` as a callback is the idiom; a void expression in a `return` statement
      // or a non-arrow function body stays an error.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
    },
  },
  {
    // Every "invalid option" error goes through the builders in lib/errors.ts (invalidOption,
    // optionError), so the wording and the `option` field never drift.
    files: ['lib/**/*.ts'],
    ignores: ['lib/errors.ts'],
    rules: {
      'no-restricted-syntax': ['error', {
        selector: "NewExpression[callee.name='LowbitError'][arguments.0.value='LOWBIT_INVALID_OPTION']",
        message: 'build LOWBIT_INVALID_OPTION errors with invalidOption() or optionError() (lib/errors.ts)',
      }],
    },
  },
);
