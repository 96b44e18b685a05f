/**
 * The `atelier` command for the GPU bundle (bench/multi-gpu/bundle.mjs): what bin/atelier.js does,
 * without tsx, since the bundle is JavaScript already. The multi-GPU driver runs it for every
 * role (serve, serve --role gateway, worker). Benchmark use only; operators run bin/atelier.js.
 */
import { runCli } from '../../src/cli/main.js';

const code = await runCli(process.argv.slice(2), {
  surfaces: async (context) => (await import('../../adapters/serve.js')).serve(context),
});
process.exitCode = code;
