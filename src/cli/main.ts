/**
 * The `atelier` command: serve (what `npm start` runs), imagine, doctor, models pull. Errors an
 * operator can fix (config, model files, bad options) end the command with one clear message and a
 * non-zero exit code, never a stack trace.
 */
import { join, relative } from 'node:path';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { type RoleHooks, runGateway, runServe, runWorker } from '../app/index.js';
import { type AtelierConfig, loadConfig as readConfig } from '../config/index.js';
import { AtelierError, ValidationError } from '../errors.js';
import { DATABASE_FILE, isSqliteError, storeError } from '../store/index.js';
import { MAX_COUNT, MAX_SEED, SAMPLER_NAMES } from '../vocabulary.js';
import { doctor } from './doctor.js';
import { imagine } from './imagine.js';
import { pull } from './models.js';
import { packageVersion, suggestOnUnknown } from './usage.js';

/** What bin/atelier.js hands in: the chat side, which src/ cannot import (see src/app/roles.ts). */
export type CliHooks = RoleHooks;

export async function runCli(argv: string[], hooks: CliHooks): Promise<number> {
  const program = new Command('atelier')
    .description('Self-hosted Stable Diffusion 3.5 image bot for Discord, Slack and a local playground')
    .version(`atelier ${packageVersion()}`, '-V, --version', 'print the version')
    .exitOverride()
    .showHelpAfterError()
    .addHelpText('after', '\nStart the bot with `atelier serve` (what `npm start` runs).');
  let code = 0;
  // Remembered so that a file-system error in the data dir is explained as one (see operatorLine).
  let dataDir: string | undefined;
  const loadConfig = (): AtelierConfig => {
    const config = readConfig();
    dataDir = config.dataDir;
    return config;
  };

  // No default command: a bare `atelier` prints the help rather than starting a server.
  program
    .command('serve')
    .description('run the bot: every configured chat surface, or the local playground when none is')
    .option(
      '--role <role>',
      'serve (everything in this process) or gateway (jobs run on `atelier worker`s through REDIS_URL); default cluster.role',
      parseRole,
    )
    .action(async (options: { role?: 'serve' | 'gateway' }) => {
      const config = loadConfig();
      const role = options.role ?? config.cluster.role;
      if (role === 'gateway') await runGateway(config, hooks);
      else await runServe(config, hooks);
    });

  program
    .command('worker')
    .description('run one pipeline (one GPU) for a gateway: takes jobs from Redis (REDIS_URL)')
    .option('--device <n>', 'GPU index (default models.deviceId)', parseDevice)
    .action(async (options: { device?: number }) => {
      await runWorker(loadConfig(), { device: options.device });
    });

  program
    .command('imagine')
    .description('make an image from the command line, through the same queue and pipeline as the bot')
    .argument('<prompt>', 'what to draw')
    .option('-n, --negative <text>', 'what to avoid')
    .option('-s, --seed <n>', `seed (0–${MAX_SEED}); random when left out`)
    .option('--steps <n>', 'denoising steps')
    .option('-g, --guidance <x>', 'classifier-free guidance scale')
    .option('-a, --aspect <ratio>', 'aspect ratio: 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, 21:9')
    .option('-c, --count <n>', `images, 1–${MAX_COUNT} (more than one also writes a grid)`)
    .option('--sampler <name>', SAMPLER_NAMES.join(' or '))
    .option('-o, --output <file.png>', 'where to write the PNG')
    .action(async (prompt: string, options) => {
      const files = await imagine(loadConfig(), prompt, options);
      for (const file of files) process.stdout.write(`${file}\n`);
    });

  program
    .command('doctor')
    .description('check the configuration, data dir, database, model files and execution provider')
    .action(async () => {
      code = await doctor(loadConfig());
    });

  const models = program.command('models').description('manage model files');
  models
    .command('pull')
    .description('download a model set from the Hugging Face hub (HF_TOKEN for gated models)')
    .argument('<name>', 'sd3.5-large, sd3.5-large-turbo or sd3.5-medium')
    .option('--t5 <kind>', 'T5-XXL encoder to fetch: fp8, fp16 or none', parseT5)
    .option('--tokenizers-only', 'only the tokenizer files, for a ComfyUI folder that has the weights')
    .option('--dir <folder>', 'models folder to download into (default: models.dir, else <dataDir>/models)')
    .action(async (name: string, options) => {
      const dir = await pull(loadConfig(), name, options);
      process.stdout.write(`Point Atelier at it: ATELIER_MODELS__DIR=${dir} npm start\n`);
    });

  for (const command of [program, models])
    suggestOnUnknown(command, (line) => process.stderr.write(`${line}\n`));
  if (argv.length === 0) {
    program.outputHelp();
    return 0;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (error instanceof AtelierError) {
      process.stderr.write(
        `atelier: ${error instanceof ValidationError ? error.userMessage : error.message}\n`,
      );
      return error instanceof ValidationError ? 2 : 1;
    }
    const line = operatorLine(error, dataDir);
    if (line) {
      process.stderr.write(`atelier: ${line}\n`);
      return 1;
    }
    throw error;
  }
}

/**
 * One line for a SQLite or file-system error that escaped as it was (e.g. creating the data dir):
 * in the data dir it names the file and what to do; elsewhere Node's own one-line message.
 */
function operatorLine(error: unknown, dataDir: string | undefined): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const { code, path } = error as NodeJS.ErrnoException;
  if (typeof code !== 'string') return undefined;
  const inDataDir =
    dataDir !== undefined &&
    (isSqliteError(error) ||
      (typeof path === 'string' && !relative(dataDir, path).startsWith('..')) ||
      (typeof path === 'string' && !relative(path, dataDir).startsWith('..')));
  if (inDataDir) {
    const explained = storeError(error, join(dataDir, DATABASE_FILE));
    if (explained instanceof AtelierError) return explained.message;
  }
  return typeof path === 'string' ? error.message.split('\n')[0] : undefined;
}

function parseRole(value: string): 'serve' | 'gateway' {
  if (value === 'serve' || value === 'gateway') return value;
  throw new InvalidArgumentError('expected serve or gateway.');
}

function parseDevice(value: string): number {
  const device = Number(value);
  if (Number.isInteger(device) && device >= 0 && device <= 63) return device;
  throw new InvalidArgumentError('expected a GPU index from 0 to 63.');
}

function parseT5(value: string): 'fp8' | 'fp16' | 'none' {
  if (value === 'fp8' || value === 'fp16' || value === 'none') return value;
  throw new InvalidArgumentError('expected fp8, fp16 or none.');
}
