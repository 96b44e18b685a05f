#!/usr/bin/env node
// Entry point of the `atelier` command (and `npm start`). The sources are TypeScript run through
// tsx, so there is no build step between `npm install` and `npm start`.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
// `serve` is the composition root for the chat adapters; it is wired here so that src/ never
// imports adapters/ (dependencies point adapters → commands → src).
const code = await runCli(process.argv.slice(2), {
  serve: async (context) => (await import('../adapters/serve.ts')).serve(context),
});
process.exitCode = code;
