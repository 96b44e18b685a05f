#!/usr/bin/env node
// Entry point of the `atelier` command (and `npm start`). The sources are TypeScript run through
// tsx, so there is no build step between `npm install` and `npm start`.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
// The roles are composed in src/app/; their chat side (adapters/serve.ts) is handed in here, the
// one place that sees both, so that src/ never imports adapters/ (adapters → commands → src).
const code = await runCli(process.argv.slice(2), {
  surfaces: async (context) => (await import('../adapters/serve.ts')).serve(context),
});
process.exitCode = code;
