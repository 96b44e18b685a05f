/**
 * `atelier doctor`: what an operator checks before asking for help — the configuration (secrets
 * masked), the data dir, the database, the surfaces that will start and whether their tokens are
 * accepted (live: the same checks `serve` runs), the model files and what each component holds,
 * and whether the execution provider loads. Exit code 1 when something is wrong.
 */
import { accessSync, constants, existsSync, mkdirSync, statfsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { engineOptions } from '../app/index.js';
import { checkDiscord, checkSlack, explainStartFailure } from '../app/surface-checks.js';
import { clusterStatus, redactRedisUrl } from '../cluster/index.js';
import { type AtelierConfig, enabledPlatforms, maskedSecrets } from '../config/index.js';
import { asAtelierError } from '../errors.js';
import { formatBytes } from '../pipeline/hub/index.js';
import { validateModelSet } from '../pipeline/models-dir/index.js';
import type { ComputeCapability } from '../pipeline/ort/cuda-runtime.js';
import { libraryFeatures } from '../pipeline/ort/custom-ops.js';
import { ORT_VERSION } from '../pipeline/ort/index.js';
import { probeProvider } from '../pipeline/process/provider-probe.js';
import { chooseAttention, FA3_HEAD_DIM, flashAttentionAsked } from '../pipeline/sd35/attention-choice.js';
import { memoryPlanOf } from '../pipeline/sd35/components.js';
import { describeModels } from '../pipeline/sd35/describe.js';
import { fp8ChoiceOf, queryCapability } from '../pipeline/sd35/fp8-choice.js';
import {
  describePlan,
  type GpuMemoryReading,
  gb,
  lorasShort,
  queryGpuMemory,
} from '../pipeline/sd35/gpu-memory.js';
import { chooseRuntime } from '../pipeline/sd35/runtime-choice.js';
import { openStore } from '../store/index.js';

type Write = (line: string) => void;

export async function doctor(
  config: AtelierConfig,
  write: Write = (l) => process.stdout.write(`${l}\n`),
  /** The GPU's memory (tests); @default nvidia-smi's reading, undefined without it */
  gpuMemory: (deviceId: number) => GpuMemoryReading | undefined = queryGpuMemory,
  /** The GPU's compute capability (tests); @default the CUDA runtime's answer */
  gpuCapability: (deviceId: number) => ComputeCapability | undefined = queryCapability,
): Promise<number> {
  let problems = 0;
  const row = (label: string, value: string) => write(`${label.padEnd(14)}${value}`);
  const problem = (label: string, error: unknown) => {
    problems++;
    row(label, `PROBLEM: ${asAtelierError(error).message}`);
  };

  write('Atelier doctor');
  row(
    'config',
    [config.files.defaults, config.files.override, config.files.dotenv].filter(Boolean).join(' + '),
  );
  for (const [variable, shown] of Object.entries(maskedSecrets(config.secrets)))
    row('', `${variable} = ${shown}`);

  try {
    mkdirSync(config.dataDir, { recursive: true });
    accessSync(config.dataDir, constants.W_OK);
    const fs = statfsSync(config.dataDir);
    row('data dir', `${config.dataDir} (writable, ${formatBytes(fs.bavail * fs.bsize)} free)`);
  } catch (error) {
    problem('data dir', error);
  }
  try {
    const store = openStore({ dataDir: config.dataDir });
    const health = store.health();
    store.close();
    row(
      'database',
      `atelier.db schema ${health.schemaVersion}, ${health.journalMode}, check: ${health.integrity}`,
    );
    if (health.integrity !== 'ok') problems++;
  } catch (error) {
    problem('database', error);
  }

  // The distributed mode: Redis, the live workers, the queue (secrets redacted).
  if (config.cluster.role === 'gateway' || config.secrets.redisUrl) {
    const url = config.secrets.redisUrl;
    if (!url) problem('cluster', new Error('cluster.role is gateway but REDIS_URL is not set'));
    else {
      try {
        const status = await clusterStatus(url, config.cluster.prefix);
        row('cluster', `${config.cluster.role}, Redis ${status.redisVersion} at ${redactRedisUrl(url)}`);
        row('', `queue: ${status.counts.wait ?? 0} waiting, ${status.counts.active ?? 0} running`);
        row('', `${status.workers.length} worker${status.workers.length === 1 ? '' : 's'} alive`);
        for (const w of status.workers)
          row('', `${w.host} device ${w.device}: ${w.model}, ${w.busy ? `busy (${w.jobId})` : 'idle'}`);
      } catch (error) {
        problem('cluster', new Error(`Redis at ${redactRedisUrl(url)}: ${asAtelierError(error).message}`));
      }
    }
  }

  const surfaces = enabledPlatforms(config);
  row(
    'surfaces',
    [
      surfaces.discord ? `discord (${config.discord.apiUrl ?? 'https://discord.com/api'})` : undefined,
      surfaces.slack
        ? `slack (${surfaces.slackMode === 'socket' ? 'Socket Mode' : `HTTP :${config.slack.port}`})`
        : undefined,
      surfaces.playground
        ? `playground (http://${config.playground.host}:${config.playground.port})`
        : undefined,
    ]
      .filter(Boolean)
      .join(', ') || 'none',
  );

  // The same live checks `serve` runs before it starts a surface, so both name the same cause.
  if (surfaces.discord) {
    if (!config.secrets.discordToken)
      problem('  discord', new Error('discord.enabled is true but DISCORD_TOKEN is not set'));
    else {
      try {
        const me = await checkDiscord({ token: config.secrets.discordToken, apiUrl: config.discord.apiUrl });
        row('  discord', `DISCORD_TOKEN accepted: signs in as ${me.tag} (GET /users/@me)`);
      } catch (error) {
        problem('  discord', explainStartFailure('discord', error, { apiUrl: config.discord.apiUrl }));
      }
    }
  }
  if (surfaces.slack) {
    if (!config.secrets.slackBotToken)
      problem('  slack', new Error('slack.enabled is true but SLACK_BOT_TOKEN is not set'));
    else {
      const appToken = surfaces.slackMode === 'socket' ? config.secrets.slackAppToken : undefined;
      try {
        const me = await checkSlack({
          botToken: config.secrets.slackBotToken,
          appToken,
          apiUrl: config.slack.apiUrl,
        });
        row(
          '  slack',
          `SLACK_BOT_TOKEN accepted: @${me.user} in ${me.team || 'team'} ${me.teamId} (auth.test)${appToken ? '; SLACK_APP_TOKEN accepted (apps.connections.open)' : ''}`,
        );
      } catch (error) {
        problem('  slack', explainStartFailure('slack', error, { apiUrl: config.slack.apiUrl }));
      }
    }
  }

  try {
    const engine = await engineOptions(config);
    const { set, components, defaults } = describeModels(engine);
    // The shape checks `serve` makes before it builds a graph, so both refuse the same file.
    validateModelSet(set);
    row(
      'model',
      `${set.name} (${set.family}, ${set.layout} layout) in ${set.root}${config.models.dir ? '' : ' — the bundled demo model'}`,
    );
    row(
      'defaults',
      `${defaults.steps} steps, guidance ${defaults.guidance}, ${defaults.sampler}, ${defaults.resolution}px`,
    );
    for (const c of components)
      row(`  ${c.name}`, `${c.dtype.padEnd(8)} ${formatBytes(c.bytes).padStart(10)}  ${c.file}`);
    row('tokenizers', `clip: ${set.tokenizers.clip}${set.tokenizers.t5 ? `, t5: ${set.tokenizers.t5}` : ''}`);
    for (const note of set.notes) row('  note', note);
    // GPU memory preflight: the same plan the pipeline loads by (sd35/gpu-memory.ts).
    if (engine.provider === 'cuda') {
      const reading = gpuMemory(engine.deviceId ?? 0);
      row(
        'gpu',
        reading
          ? `${reading.name}: ${gb(reading.totalBytes)} total, ${gb(reading.freeBytes)} free (nvidia-smi)`
          : 'free memory unknown (no nvidia-smi)',
      );
      const { plan } = memoryPlanOf(engine, set, components, reading?.freeBytes);
      row('gpu memory', describePlan(plan));
      row('  placement', `${plan.placement}: ${plan.reason}`);
      if (plan.arenaLimits)
        row(
          '  arenas',
          Object.entries(plan.arenaLimits)
            .map(([name, bytes]) => `${name} ${gb(bytes)}`)
            .join(', '),
        );
      if (!plan.fits && plan.budget.source === 'limit')
        problem(
          'gpu memory',
          new Error(
            `the model does not fit models.gpuMemoryLimit: the pipeline will refuse to start (${describePlan(plan)})`,
          ),
        );
      else if (!plan.fits)
        row(
          '  warning',
          'the expected peak exceeds the free GPU memory: expect out-of-memory failures (models.gpuMemoryLimit makes the pipeline place, tile and refuse jobs to fit)',
        );
      else if (lorasShort(plan) && plan.loras)
        row(
          '  warning',
          plan.loras.fit > 0
            ? `${plan.loras.fit} of the ${plan.loras.combinations} cached LoRA combinations fit beside the model: set loras.cachedCombinations: ${plan.loras.fit}, or jobs with a new combination may run out of memory`
            : 'no cached LoRA combination fits beside the model: jobs with LoRAs may run out of memory',
        );
    } else {
      row('gpu memory', 'not used (models.executionProvider is cpu)');
    }
  } catch (error) {
    problem('model', error);
  }

  const ortVersion = createRequire(import.meta.url)('onnxruntime-node/package.json').version as string;
  try {
    const { library } = await probeProvider({
      provider: config.models.executionProvider,
      deviceId: config.models.deviceId,
      onnxRuntimeDir: config.models.onnxRuntimeDir ?? undefined,
    });
    row(
      'provider',
      `${config.models.executionProvider} (onnxruntime-node ${ortVersion}) loads${config.models.onnxRuntimeDir ? `, ONNX Runtime from ${library}` : ''}`,
    );
  } catch (error) {
    problem('provider', error);
  }
  let runtimePath: 'capi' | 'stock' = 'stock';
  let opsLibrary: string | undefined;
  try {
    const choice = chooseRuntime({ runtime: config.models.runtime }, config.models.executionProvider);
    runtimePath = choice.path;
    opsLibrary = choice.customOpsLibrary;
    row(
      'runtime',
      choice.path === 'capi'
        ? `C API (ONNX Runtime ${ORT_VERSION})${config.models.executionProvider === 'cuda' && choice.customOpsLibrary ? ' + CUDA graphs' : ''}${choice.customOpsLibrary ? ` + custom ops ${choice.customOpsLibrary}` : ''}${choice.reason ? ` — ${choice.reason}` : ''}`
        : `stock (onnxruntime-node session.run) — ${choice.reason}`,
    );
  } catch (error) {
    problem('runtime', error);
  }
  row('precision', precisionLine(config, runtimePath, gpuCapability));
  row('attention', attentionLine(config, runtimePath, opsLibrary, gpuCapability));
  row(
    'graph cache',
    config.models.graphCacheDir ??
      `${config.dataDir}/graphs${existsSync(`${config.dataDir}/graphs`) ? '' : ' (empty)'}`,
  );
  write(problems ? `${problems} problem(s) found.` : 'Everything looks right.');
  return problems ? 1 : 0;
}

/**
 * `fp16`, `auto (fp32)`, or at fp8 the route the pipeline will take and why, as the start log says
 * it: "fp8: W8A8 on Hopper tensor cores (atelier:Fp8Linear)", "auto (fp8): fp8: weight-only (…)".
 */
function precisionLine(
  config: AtelierConfig,
  runtime: 'capi' | 'stock',
  gpuCapability: (deviceId: number) => ComputeCapability | undefined,
): string {
  const m = config.models;
  const provider = m.executionProvider;
  const precision = m.precision === 'auto' ? (provider === 'cuda' ? 'fp8' : 'fp32') : m.precision;
  const asked = m.precision === 'auto' ? `auto (${precision})` : precision;
  const fp8 = fp8ChoiceOf({ precision, provider, deviceId: m.deviceId }, runtime, gpuCapability);
  if (!fp8) return asked;
  return m.precision === 'auto' ? `${asked}: ${fp8.summary}` : fp8.summary;
}

/**
 * The MMDiT's attention kernel in the C-API step, as the pipeline will choose it
 * (sd35/attention-choice.ts): "FlashAttention-3 on Hopper (atelier:FlashAttention)", or
 * "MultiHeadAttention (why not)". Every SD3.5 MMDiT has 64-wide heads (mmditx.py), so the head size
 * is not what the line can miss.
 */
function attentionLine(
  config: AtelierConfig,
  runtime: 'capi' | 'stock',
  library: string | undefined,
  gpuCapability: (deviceId: number) => ComputeCapability | undefined,
): string {
  const provider = config.models.executionProvider;
  const needsGpu = provider === 'cuda' && runtime === 'capi' && library !== undefined;
  return chooseAttention({
    provider,
    runtime,
    library: libraryFeatures(library),
    capability: needsGpu ? gpuCapability(config.models.deviceId) : undefined,
    headDim: FA3_HEAD_DIM,
    asked: flashAttentionAsked(undefined),
  }).summary;
}
