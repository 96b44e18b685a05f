/**
 * Loads an SD3.5 model set once: finds the files, quantizes to fp8 where asked, builds (or takes
 * from the cache) one graph per component and opens its ONNX Runtime session. Every problem is a
 * ModelError naming the file or setting, raised here at load, never in the middle of a job.
 */
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { ModelError } from '../../errors.js';
import { cachedCombinationsOf, type Denoiser } from '../lora/index.js';
import { buildClip, type ClipKind, clipConfig } from '../models/clip.js';
import { buildMmdit, type MmditConfig, mmditConfig } from '../models/mmdit.js';
import { buildSamplerStep, type SamplerStepShape } from '../models/sampler-step.js';
import { buildT5, t5Config } from '../models/t5.js';
import { buildVaeDecoder, buildVaeEncoder, type VaeConfig, vaeConfig } from '../models/vae.js';
import { discoverModelSet } from '../models-dir/discover.js';
import type { ComponentLocation, ComponentName, ModelSet } from '../models-dir/types.js';
import { ComponentWeights, componentContentHash } from '../models-dir/weight-source.js';
import { GraphBuilder } from '../onnx/graph.js';
import { cachedGraph } from '../onnx/graph-cache.js';
import { DEFAULT_NET_OPTIONS, Net, type NetOptions } from '../onnx/nn.js';
import {
  FileWeightSource,
  OverlayWeightSource,
  Params,
  type ResolvedTensor,
  type WeightSource,
} from '../onnx/params.js';
import { openSession } from '../onnx/session.js';
import type { ComputeType } from '../onnx/tensors.js';
import { cudaRuntime } from '../ort/cuda-runtime.js';
import { libraryFeatures } from '../ort/custom-ops.js';
import { CapiSession, type CapiSessionOptions } from '../ort/index.js';
import { samplingDefaultsOf } from '../sampling/defaults.js';
import { SD3Tokenizer } from '../text/tokenizer.js';
import type { ComponentInfo, Fp8Info, PipelineInfo, RuntimePath } from '../types.js';
import { quantizeToScaledFp8 } from '../weights/quantize.js';
import { SafetensorsFile } from '../weights/safetensors.js';
import { chooseAttention, flashAttentionAsked } from './attention-choice.js';
import { CapiDenoiser, type StepQueue } from './capi-denoiser.js';
import {
  type ComponentSession,
  capiComponentSession,
  type SessionComponent,
  type SessionRoute,
  sessionRoutes,
} from './component-session.js';
import type { TextEncoders } from './conditioning.js';
import { fp8ChoiceOf, queryCapability } from './fp8-choice.js';
import {
  CAPPED_CALIBRATION,
  describePlan,
  type GpuMemoryPlan,
  gb,
  isOutOfMemory,
  largestSideThatFits,
  type MemoryInput,
  planGpuMemory,
  queryGpuMemory,
} from './gpu-memory.js';
import type { EngineOptions, Precision } from './options.js';
import { chooseRuntime } from './runtime-choice.js';

export interface LoadedComponents {
  set: ModelSet;
  info: PipelineInfo;
  tokenizer: SD3Tokenizer;
  text: TextEncoders;
  /** The MMDiT on the stock path; absent when the C-API path denoises. */
  mmdit?: ComponentSession;
  /** The denoising loop on the C-API path. */
  capi?: CapiDenoiser;
  mmditConfig: MmditConfig;
  /**
   * What the text encoders' outputs depend on (model, weights, precision, compute type, provider):
   * the prompt-embedding cache's key prefix.
   */
  textKey: string;
  vaeDecoder: ComponentSession;
  vaeConfig: VaeConfig;
  /** The VAE decode's element size in bytes (4: float32, 2: float16), for the tiling estimate. */
  vaeBytesPerElement: number;
  /**
   * The session that decodes [1, C, h, w] latent tiles: the dynamic `vaeDecoder` itself (default),
   * or with `vaeTileSession: 'static'` one built for exactly that shape (the last shape's session
   * is kept; a new shape replaces it).
   */
  vaeTileDecoder(tile: [number, number]): Promise<ComponentSession>;
  /** Built on first use: only image-to-image (variations, upscales) needs the encoder. */
  vaeEncoder(): Promise<ComponentSession>;
  /** GPU memory: placement, the limit's split, the VAE's budget, what a job may ask for. */
  memory: { plan: GpuMemoryPlan; input: MemoryInput };
  /** The MMDiT's weights as its denoiser reads them, and the key its graphs are cached by. */
  mmditWeights: { source: WeightSource; key: string };
  /** A denoiser like the model's own on other weights (a LoRA combination's merged copy: lora/variants.ts). */
  openDenoiser(source: WeightSource, key: string): Promise<Denoiser>;
  release(): Promise<void>;
}

/** Components worth storing in fp8: the MMDiT and T5-XXL hold 95 % of SD3.5's weights. */
const FP8_COMPONENTS: ReadonlySet<ComponentName> = new Set(['mmdit', 't5']);

/** Rows of the step graph's coefficient table when the options name no maximum. */
const DEFAULT_MAX_STEPS = 100;

/**
 * Sessions that several models share (several models resident, config `models.list`): a text
 * encoder or VAE whose files, build and route are the same opens once; each model holds a handle,
 * and the session is released with the last handle.
 */
export class SharedSessions {
  readonly #entries = new Map<string, { session: Promise<ComponentSession>; users: number }>();

  /** Sessions open now (tests, logs). */
  get size(): number {
    return this.#entries.size;
  }

  /** A handle on the session for `key`, opened by `open` if nobody holds one. */
  async acquire(key: string, open: () => Promise<ComponentSession>): Promise<ComponentSession> {
    let entry = this.#entries.get(key);
    if (!entry) {
      const session = open();
      entry = { session, users: 0 };
      this.#entries.set(key, entry);
      session.catch(() => this.#entries.delete(key));
    }
    entry.users++;
    const held = entry;
    let session: ComponentSession;
    try {
      session = await held.session;
    } catch (error) {
      held.users--;
      throw error;
    }
    let released = false;
    return {
      run: ((feeds: Parameters<ComponentSession['run']>[0], fetches?: string[]) =>
        fetches ? session.run(feeds, fetches) : session.run(feeds)) as ComponentSession['run'],
      // The shared session's arena (the same counters whichever handle asks).
      ...(session.arenaStats ? { arenaStats: () => session.arenaStats?.() } : {}),
      release: async () => {
        if (released) return;
        released = true;
        held.users--;
        if (held.users > 0) return;
        if (this.#entries.get(key) === held) this.#entries.delete(key);
        await session.release();
      },
    };
  }
}

/** The real path of `file` (links resolved), or `file` itself where it cannot be resolved. */
export function realPath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

/**
 * The identity under which resident models share a component's sessions and count its memory once
 * (multi-engine.ts footprintOf): the VAE by its content (each SD3.5 checkpoint carries its own copy
 * of the same VAE), the text encoders by their file (they are separate files in a ComfyUI folder;
 * hashing T5-XXL's 5–10 GB at every start would cost seconds).
 */
export function sharedComponentKey(name: string, location: ComponentLocation): string {
  const byFile = `${realPath(location.file)}:${location.prefix}`;
  if (name !== 'vae') return byFile;
  try {
    return `content:${componentContentHash(location)}`;
  } catch {
    return byFile; // unreadable here: the load will say why; until then it is its file
  }
}

/** Real paths of a component's files: its identity with the headers (two folders, two models). */
function realPaths(files: readonly string[]): string {
  return files.map(realPath).join('\u0000');
}

/** What the engine hands over beside its (serialisable) options. */
export interface LoadRuntime {
  /** Text encoder and VAE sessions shared with the other resident models. */
  sessions?: SharedSessions;
}

export async function loadComponents(
  options: EngineOptions,
  runtime: LoadRuntime = {},
): Promise<LoadedComponents> {
  const { provider, precision, asked, compute } = resolvedTypes(options);
  const set = discoverModelSet({
    modelsDir: options.modelsDir,
    checkpoint: options.checkpoint,
    textEncoders: options.textEncoders,
    dataDir: options.dataDir,
  });
  const tokenizer = SD3Tokenizer.fromDirs({
    clip: options.tokenizers?.clip ?? set.tokenizers.clip,
    t5: set.components.t5 ? (options.tokenizers?.t5 ?? set.tokenizers.t5) : undefined,
  });
  const netOptions: NetOptions = {
    ...DEFAULT_NET_OPTIONS,
    // W8A8 needs our op library: only the C-API step graph runs it (stepNetOptions below).
    fp8Linear:
      options.fp8Linear && options.fp8Linear !== 'w8a8'
        ? options.fp8Linear
        : provider === 'cuda'
          ? 'block-fp8'
          : 'dequantize',
    ...(options.fp8ActivationScale !== undefined ? { fp8ActivationScale: options.fp8ActivationScale } : {}),
  };
  // Text encoders moved to the CPU provider by models.placement cannot run the CUDA-only fp8 op.
  const cpuNetOptions: NetOptions = { ...netOptions, fp8Linear: 'dequantize' };
  const profiled: ort.InferenceSession[] = [];
  const vaeCompute: ComputeType = options.vaeCompute ?? 'float32';
  const graphDir = options.graphCacheDir ?? join(options.dataDir, 'graphs');
  const opened: ComponentWeights[] = [];
  const sessions: ComponentSession[] = [];
  const components: ComponentInfo[] = [];

  // Sessions shared with other resident models (multi-engine.ts), when there are any.
  const sharing = runtime.sessions !== undefined;
  // GPU memory (issue 11): placement, the limit's split between the sessions, the VAE's budget.
  const { input: memoryInput, plan } = memoryPlanOf(options, set, fileComponents(set));
  if (plan.budget.source === 'limit' && !plan.fits) throw doesNotFit(plan, memoryInput, set.name, asked);
  const routes = sessionRoutes({
    provider,
    placement: plan.placement,
    compute,
    vaeCompute,
    arenaLimits: plan.arenaLimits,
    sessionApi: options.sessionApi,
  });

  /** Weights of one component, quantized to fp8 once when asked and possible. */
  const weightsOf = (
    name: ComponentName,
    location: ComponentLocation,
  ): { source: WeightSource; key: string; stated: Record<string, unknown> } => {
    const weights = ComponentWeights.open(location, name);
    opened.push(weights);
    let source: WeightSource = weights;
    // The headers and where the files are: two folders with identical headers are two models
    // (a built graph points into its files, so a cache hit must be for these very files).
    let key = `${weights.fingerprint}:${createHash('sha256').update(realPaths(location.files)).digest('hex')}`;
    if (
      precision === 'fp8' &&
      FP8_COMPONENTS.has(name) &&
      location.format === 'reference' &&
      location.files.length === 1
    ) {
      const file = SafetensorsFile.open(location.file);
      const quantized = quantizeToScaledFp8(file, location.prefix, join(options.dataDir, 'quantized'));
      file.close();
      if (quantized.tensors > 0) {
        const qfile = SafetensorsFile.open(quantized.path);
        source = new OverlayWeightSource(new FileWeightSource(qfile, location.prefix), weights);
        key += `:${qfile.headerHash}`;
      }
    }
    components.push({ name, ...storageOf(source), file: location.file });
    return { source, key, stated: statedConfig(weights) };
  };

  const open = async (
    name: string,
    component: SessionComponent,
    source: WeightSource,
    key: unknown,
    build: (net: Net) => void,
    shareKey: unknown = key,
  ): Promise<ComponentSession> => {
    const route: SessionRoute = routes[component];
    const type = route.compute;
    const net = route.provider === 'cpu' && provider === 'cuda' ? cpuNetOptions : netOptions;
    const graph = cachedGraph(graphDir, name, { key, compute: type, netOptions: net }, () => {
      const g = new GraphBuilder(name);
      build(new Net(g, new Params(g, source, type), net));
      return g.build();
    });
    const profile = options.profileDir && name === 'mmdit' ? join(options.profileDir, name) : undefined;
    // Text encoders and the VAE of several resident models open once when they are the same files.
    if (runtime.sessions && component !== 'mmdit' && !profile) {
      const sharedKey = JSON.stringify({
        name,
        key: shareKey,
        type,
        net,
        route,
        device: options.deviceId ?? 0,
      });
      const shared = await runtime.sessions.acquire(sharedKey, () =>
        openComponent(name, route, graph, undefined),
      );
      sessions.push(shared);
      return shared;
    }
    const session = await openComponent(name, route, graph, profile);
    sessions.push(session);
    return session;
  };

  const openComponent = async (
    name: string,
    route: SessionRoute,
    graph: ReturnType<typeof cachedGraph>,
    profile: string | undefined,
  ): Promise<ComponentSession> => {
    let session: ComponentSession;
    try {
      if (route.api === 'capi') {
        session = capiComponentSession(
          await openCapi(name, graph, {
            provider: route.provider,
            deviceId: options.deviceId,
            intraOpThreads: options.threads,
            // Initializers get exact device allocations outside the arena (less peak memory; the
            // arena's gpu_mem_limit then caps activations only).
            config: route.provider === 'cuda' ? { 'session.use_device_allocator_for_initializers': '1' } : {},
            cuda: route.cuda,
            profilePrefix: profile,
          }),
          route.shrinkArena ? { shrinkArena: `gpu:${options.deviceId ?? 0}` } : {},
        );
      } else {
        const stock = await openSession(name, graph, {
          provider: route.provider,
          deviceId: options.deviceId,
          intraOpThreads: options.threads,
          config: route.provider === 'cuda' ? { use_device_allocator_for_initializers: '1' } : undefined,
          profilePrefix: profile,
        });
        if (profile) profiled.push(stock);
        session = stock;
      }
    } catch (error) {
      throw outOfMemory(error, name, components, route.provider) ?? error;
    }
    return session;
  };

  let capi: CapiDenoiser | undefined;
  /** The C-API step sessions' CUDA stream when two steps are queued. */
  let queueStream: bigint | undefined;
  /** What a load holds, freed in order: the stream only once no session can queue work on it. */
  const releaseAll = async () => {
    await capi?.release();
    for (const s of sessions) await s.release();
    if (queueStream !== undefined) cudaRuntime().destroyStream(queueStream);
    for (const w of opened) w.close();
  };
  /** The text encoders' weight fingerprints (with any fp8 overlay), for LoadedComponents.textKey. */
  const textKeys: string[] = [];
  try {
    const clip = async (kind: ClipKind, location: ComponentLocation) => {
      const { source, key, stated } = weightsOf(kind === 'clip_l' ? 'clipL' : 'clipG', location);
      textKeys.push(key);
      const overrides = { ...headsFrom(stated.num_attention_heads), ...options.overrides?.[kind] };
      return open(kind, kind === 'clip_l' ? 'clipL' : 'clipG', source, { key, overrides }, (net) =>
        buildClip(net, clipConfig(net.p, kind, overrides)),
      );
    };
    const clipL = await clip('clip_l', set.components.clipL);
    const clipG = await clip('clip_g', set.components.clipG);

    let t5: ComponentSession | undefined;
    if (set.components.t5) {
      const { source, key, stated } = weightsOf('t5', set.components.t5);
      textKeys.push(key);
      const overrides = { ...headsFrom(stated.num_heads), ...options.overrides?.t5 };
      t5 = await open('t5', 't5', source, { key, overrides }, (net) =>
        buildT5(net, t5Config(net.p, overrides)),
      );
    }

    const mm = weightsOf('mmdit', set.components.mmdit);
    const mmCfg = mmditConfig(new Params(new GraphBuilder('probe'), mm.source, compute));
    const route = chooseRuntime(options, provider);
    // precision fp8: W8A8 in the C-API step where the GPU, the path and our library allow it (fp8-choice.ts).
    const fp8: Fp8Info | undefined = fp8ChoiceOf(options, route.path);
    let mmdit: ComponentSession | undefined;
    let openDenoiser: LoadedComponents['openDenoiser'] = async () => {
      throw new Error('no MMDiT denoiser');
    };
    let runtime: RuntimePath = { path: 'stock', cudaGraph: false, customOps: false, reason: route.reason };
    if (route.path === 'capi') {
      const library = route.customOpsLibrary;
      const attention = chooseAttention({
        provider,
        runtime: 'capi',
        library: libraryFeatures(library),
        capability: provider === 'cuda' ? queryCapability(options.deviceId ?? 0) : undefined,
        headDim: mmCfg.hidden / mmCfg.heads,
        asked: flashAttentionAsked(options.flashAttention),
      });
      const stepNetOptions: NetOptions = {
        ...netOptions,
        customOps: library !== undefined,
        // FlashAttention-3 where attention-choice.ts finds it (issue 10); MultiHeadAttention otherwise.
        ...(attention.kernel === 'flash-attention' ? { attention: 'flash' as const } : {}),
        ...(fp8?.route === 'w8a8' && library !== undefined ? { fp8Linear: 'w8a8' as const } : {}),
        // Research only, off by default (issue 10): FP8 attention until the GPU check adopts it.
        ...(library !== undefined && (options.fp8Attention ?? process.env.ATELIER_FP8_ATTENTION === '1')
          ? { fp8Attention: true }
          : {}),
        // cuBLASLt's fast accumulation in W8A8 GEMMs (issue 10: −5.6 ms per Large step on the
        // H200, a tenth of quantization's error per layer); off for measurements.
        ...(library !== undefined &&
        (options.fp8FastAccumulation ?? process.env.ATELIER_FP8_FAST_ACCUM !== '0')
          ? { fp8FastAccumulation: true }
          : {}),
        // The per-tensor MLP in W8A8 (issue 10: with the GEMM autotuning −91 ms per Large image on
        // the H200, the demo model's caption scores within a point of fp16); off for measurements.
        ...(library !== undefined && (options.fp8MlpHandoff ?? process.env.ATELIER_FP8_MLP_HANDOFF !== '0')
          ? { fp8MlpHandoff: true }
          : {}),
        // Issue 10 step 8's fusions (gated residual + next norm, attention split + quantize): exact
        // on the CPU, bit-identical on the H200 and −6.5 ms per Large step there; the separate
        // chains stay reachable for measurements (stepFusions: false, ATELIER_STEP_FUSIONS=0).
        ...((options.stepFusions ?? process.env.ATELIER_STEP_FUSIONS !== '0')
          ? {}
          : { residualNorm: 'separate' as const, tokenSplit: 'separate' as const }),
        // MMDiT-X's attn and attn2 norms quantized by one node (issue 10, thirteenth session: bit-
        // identical); ATELIER_PAIRED_NORMS=0 makes a node each, for measurements.
        ...(process.env.ATELIER_PAIRED_NORMS === '0' ? { pairedNorms: 'separate' as const } : {}),
        // SiLU(c) quantized once for every adaLN layer (bit-identical); ATELIER_SHARED_ROWS=0: each
        // layer quantizes it again, for measurements.
        ...(process.env.ATELIER_SHARED_ROWS === '0' ? { sharedRows: 'separate' as const } : {}),
      };
      // Capture only with our kernels: ONNX Runtime's CUDA Concat of unequal inputs (the joint
      // attention's context + image tokens) stages its metadata in pinned host buffers it allocates
      // and frees every run, which a capture cannot hold (seen failing at 1024² on the H200).
      const cudaGraph = {
        on: provider === 'cuda' && library !== undefined,
        reason:
          provider === 'cuda' && library === undefined
            ? 'no CUDA graphs without the custom-op library (npm run build:native)'
            : undefined,
      };
      // The step sessions on a CUDA stream of our own, with an event per binding recorded on it, so
      // the loop keeps two steps queued and the GPU does not wait for the host between steps
      // (capi-denoiser.ts StepQueue). Destroyed in release(), after the sessions.
      queueStream =
        provider === 'cuda' && (options.stepQueue ?? (process.env.ATELIER_STEP_QUEUE === '1' ? 1 : 2)) === 2
          ? cudaRuntime().createStream(options.deviceId ?? 0)
          : undefined;
      const stepQueue = (): StepQueue | undefined => {
        const stream = queueStream;
        if (stream === undefined) return undefined;
        const cuda = cudaRuntime();
        const events = [0, 1].map(() => cuda.createEvent(options.deviceId ?? 0));
        return {
          issued: (p) => cuda.recordEvent(events[p]!, stream),
          done: (p) => cuda.waitEvent(events[p]!),
          release: () => {
            for (const e of events) cuda.destroyEvent(e);
          },
        };
      };
      const openStep = async (
        source: WeightSource,
        key: string,
        shape: SamplerStepShape,
      ): Promise<CapiSession> => {
        const graph = cachedGraph(
          graphDir,
          'mmdit_step',
          { key, compute, netOptions: stepNetOptions, shape },
          () => {
            const g = new GraphBuilder('mmdit_step');
            buildSamplerStep(new Net(g, new Params(g, source, compute), stepNetOptions), mmCfg, shape);
            return g.build();
          },
        );
        const capiOptions: CapiSessionOptions = {
          provider,
          deviceId: options.deviceId,
          intraOpThreads: options.threads,
          config: provider === 'cuda' ? { 'session.use_device_allocator_for_initializers': '1' } : {},
          // gpu_mem_limit / kSameAsRequested under models.gpuMemoryLimit (the MMDiT's share).
          cuda: {
            ...routes.mmdit.cuda,
            ...(queueStream !== undefined
              ? { has_user_compute_stream: '1', user_compute_stream: String(queueStream) }
              : {}),
          },
          customOpsLibraries: library ? [library] : [],
          profilePrefix: options.profileDir ? join(options.profileDir, 'mmdit_step') : undefined,
        };
        try {
          if (cudaGraph.on) {
            try {
              return await CapiSession.create(graph, {
                ...capiOptions,
                cuda: { ...capiOptions.cuda, enable_cuda_graph: '1' },
              });
            } catch (error) {
              // Capture needs every node on the CUDA provider; say why and run without it.
              cudaGraph.on = false;
              cudaGraph.reason = `CUDA graph capture refused: ${String((error as Error).message).split('\n')[0]}`;
              runtime.cudaGraph = false;
              runtime.reason = cudaGraph.reason;
            }
          }
          return await CapiSession.create(graph, capiOptions);
        } catch (error) {
          throw outOfMemory(error, 'mmdit', components, provider) ?? error;
        }
      };
      const onCaptureFailure = (shape: SamplerStepShape, reason: string) => {
        runtime.reason = `CUDA graph capture failed for ${shape.width * 8}×${shape.height * 8} ×${shape.images}; that shape runs without graphs: ${reason}`;
      };
      capi = new CapiDenoiser({
        mmdit: mmCfg,
        maxSteps: options.maxSteps ?? DEFAULT_MAX_STEPS,
        maxShapes: plan.capiShapes,
        open: (shape) => openStep(mm.source, mm.key, shape),
        cudaGraph: () => cudaGraph.on,
        onCaptureFailure,
        stepQueue: stepQueue(),
      });
      // A LoRA combination's denoiser keeps one shape loaded: each shape is a copy of the weights.
      openDenoiser = async (source, key) => {
        const variant = new CapiDenoiser({
          mmdit: mmCfg,
          maxSteps: options.maxSteps ?? DEFAULT_MAX_STEPS,
          maxShapes: 1,
          open: (shape) => openStep(source, key, shape),
          cudaGraph: () => cudaGraph.on,
          onCaptureFailure,
          stepQueue: stepQueue(),
        });
        return { capi: variant, release: async () => variant.release() };
      };
      const w8a8 = stepNetOptions.fp8Linear === 'w8a8';
      runtime = {
        path: 'capi',
        cudaGraph: cudaGraph.on,
        customOps: library !== undefined,
        stepGraph: {
          fp8FastAccumulation: w8a8 && stepNetOptions.fp8FastAccumulation === true,
          fp8MlpHandoff: w8a8 && stepNetOptions.fp8MlpHandoff === true,
          fp8Attention: stepNetOptions.fp8Attention === true,
          flashAttention: stepNetOptions.attention === 'flash' && stepNetOptions.fp8Attention !== true,
          stepFusions: stepNetOptions.residualNorm !== 'separate',
          pairedNorms: w8a8 && stepNetOptions.pairedNorms !== 'separate',
          sharedRows: w8a8 && stepNetOptions.sharedRows !== 'separate',
        },
        attention,
        stepsQueued: queueStream === undefined ? 1 : 2,
      };
      const reason = route.reason ?? cudaGraph.reason;
      if (reason) runtime.reason = reason;
    } else {
      mmdit = await open('mmdit', 'mmdit', mm.source, mm.key, (net) => buildMmdit(net, mmCfg));
      openDenoiser = async (source, key) => {
        const session = await open('mmdit', 'mmdit', source, key, (net) => buildMmdit(net, mmCfg));
        return { mmdit: session, release: () => releaseOne(session) };
      };
    }

    const vae = weightsOf('vae', set.components.vae);
    // Resident models whose checkpoints carry the same VAE (Large, Large Turbo and Medium do) share
    // its sessions by content, not by file: one copy of its weights and one decode arena.
    const vaeShareKey = sharing ? `vae:${sharedComponentKey('vae', set.components.vae)}` : vae.key;
    const vaeCfg = vaeConfig(new Params(new GraphBuilder('probe'), vae.source, compute));
    // The VAE runs in float32 everywhere: its activations outgrow float16 at 1024² (diffusers
    // upcasts SD3's VAE too), and it is 1 % of the weights and one call per image.
    const vaeDecoder = await open(
      'vae_decoder',
      'vae',
      vae.source,
      vae.key,
      (net) => buildVaeDecoder(net, vaeCfg),
      vaeShareKey,
    );
    let encoder: Promise<ComponentSession> | undefined;
    const staticTiles = options.vaeTileSession === 'static';
    let tileSession: { shape: string; session: ComponentSession } | undefined;
    const vaeTileDecoder = async (tile: [number, number]): Promise<ComponentSession> => {
      if (!staticTiles) return vaeDecoder;
      const shape = tile.join('x');
      if (tileSession?.shape === shape) return tileSession.session;
      if (tileSession) {
        const previous = tileSession.session;
        tileSession = undefined;
        await releaseOne(previous);
      }
      const session = await open(
        'vae_decoder_tile',
        'vae',
        vae.source,
        { key: vae.key, latentSize: tile },
        (net) => buildVaeDecoder(net, vaeCfg, { latentSize: tile }),
      );
      tileSession = { shape, session };
      return session;
    };
    const releaseOne = async (session: ComponentSession) => {
      const i = sessions.indexOf(session);
      if (i >= 0) sessions.splice(i, 1);
      await session.release();
    };

    const info: PipelineInfo = {
      model: set.name,
      executionProvider: provider,
      components,
      defaults: samplingDefaultsOf(set),
      runtime,
      ...(fp8 ? { fp8 } : {}),
      memory: memoryInfo(plan, routes),
    };
    return {
      set,
      info,
      tokenizer,
      text: { clipL, clipG, t5, contextDim: mmCfg.contextDim },
      mmdit,
      capi,
      mmditConfig: mmCfg,
      textKey: JSON.stringify({
        model: set.name,
        precision,
        compute,
        provider,
        // Where the encoders ran (models.placement): CPU float32 and CUDA float16 differ slightly.
        textRoute: [routes.clipL.provider, routes.clipL.compute],
        clipL: components.find((x) => x.name === 'clipL')?.file,
        clipG: components.find((x) => x.name === 'clipG')?.file,
        t5: components.find((x) => x.name === 't5')?.file ?? null,
        keys: textKeys,
        overrides: options.overrides ?? {},
      }),
      vaeDecoder,
      vaeConfig: vaeCfg,
      vaeBytesPerElement: vaeCompute === 'float16' ? 2 : 4,
      vaeTileDecoder,
      vaeEncoder: () => {
        encoder ??= open(
          'vae_encoder',
          'vae',
          vae.source,
          vae.key,
          (net) => buildVaeEncoder(net, vaeCfg),
          vaeShareKey,
        );
        return encoder;
      },
      memory: { plan, input: memoryInput },
      mmditWeights: { source: mm.source, key: mm.key },
      openDenoiser,
      release: async () => {
        for (const s of profiled) s.endProfiling();
        await releaseAll();
      },
    };
  } catch (error) {
    await releaseAll();
    throw error;
  }
}

/**
 * Precision and compute types as loadComponents resolves them from the options: `asked` is the
 * precision chosen (or the provider's default), `precision` how the weights are stored (both fp8
 * choices keep e4m3 weights; they differ only in the MMDiT's linear layers: fp8-choice.ts).
 */
function resolvedTypes(options: EngineOptions): {
  provider: 'cpu' | 'cuda';
  precision: 'fp8' | 'fp16' | 'fp32';
  asked: Precision;
  compute: ComputeType;
} {
  const provider = options.provider ?? 'cpu';
  const asked: Precision = options.precision ?? (provider === 'cuda' ? 'fp8' : 'fp32');
  const precision = asked === 'fp8-weights' ? 'fp8' : asked;
  const compute: ComputeType =
    options.compute ?? (provider === 'cuda' && precision !== 'fp32' ? 'float16' : 'float32');
  return { provider, precision, asked, compute };
}

/**
 * The GPU memory plan of these options and model files (gpu-memory.ts): what loadComponents opens
 * the sessions by, and what `atelier doctor` prints. `freeBytes`: the free GPU memory when known
 * (default: nvidia-smi, asked only on CUDA without a limit).
 */
export function memoryPlanOf(
  options: EngineOptions,
  set: ModelSet,
  components: ComponentInfo[],
  freeBytes?: number,
): { input: MemoryInput; plan: GpuMemoryPlan } {
  const { provider, precision, compute } = resolvedTypes(options);
  const limit = provider === 'cuda' ? options.gpuMemoryLimit : undefined;
  // Capped arenas hold what they use: plan them with the figures measured that way.
  const calibration =
    options.memoryCalibration ?? (limit !== undefined ? CAPPED_CALIBRATION[set.family] : undefined);
  const input: MemoryInput = {
    family: set.family,
    components,
    precision,
    compute,
    vaeCompute: options.vaeCompute ?? 'float32',
    vae: probeVae(set.components.vae, compute),
    vaeTiling: options.vaeTiling ?? 'auto',
    capiShapes: options.capiShapes ?? 1,
    resolution: samplingDefaultsOf(set).resolution,
    ...(calibration ? { calibration } : {}),
    // Each cached LoRA combination is another whole denoiser session (lora/variants.ts).
    ...(options.loras ? { loraCombinations: cachedCombinationsOf(options.loras) } : {}),
  };
  const plan = planGpuMemory(input, {
    provider,
    placement: options.placement ?? 'auto',
    limitBytes: limit,
    freeBytes:
      provider === 'cuda' && limit === undefined
        ? (freeBytes ?? options.gpuFreeBytes ?? queryGpuMemory(options.deviceId ?? 0)?.freeBytes)
        : undefined,
  });
  return { input, plan };
}

/** Each component's weights as its files hold them (bytes, dominant type), reading headers only. */
export function fileComponents(set: ModelSet): ComponentInfo[] {
  const out: ComponentInfo[] = [];
  for (const [name, location] of Object.entries(set.components) as [
    ComponentName,
    ComponentLocation | undefined,
  ][]) {
    if (!location) continue;
    const weights = ComponentWeights.open(location, name);
    try {
      out.push({ name, ...storageOf(weights), file: location.file });
    } finally {
      weights.close();
    }
  }
  return out;
}

/** The VAE decoder's shape (channels per level) from its weights, for the memory estimate. */
export function probeVae(location: ComponentLocation, compute: ComputeType): VaeConfig {
  const weights = ComponentWeights.open(location, 'vae');
  try {
    return vaeConfig(new Params(new GraphBuilder('probe'), weights, compute));
  } finally {
    weights.close();
  }
}

/** A CapiSession for a component; without ONNX Runtime's C library, a ModelError naming why it is needed. */
async function openCapi(
  name: string,
  graph: Parameters<typeof CapiSession.create>[0],
  o: CapiSessionOptions,
) {
  try {
    return await CapiSession.create(graph, o);
  } catch (error) {
    if (isOutOfMemory(error)) throw error;
    const message = String((error as Error).message ?? error);
    throw new ModelError(
      name,
      `${name}: ONNX Runtime's C API could not open the graph${o.provider === 'cuda' ? ' (models.gpuMemoryLimit caps each session through it: the Node binding cannot pass gpu_mem_limit)' : ''}: ${message.split('\n')[0]}`,
      { cause: error },
    );
  }
}

/** The refusal at load when even one image at the model's resolution exceeds models.gpuMemoryLimit. */
function doesNotFit(
  plan: GpuMemoryPlan,
  input: MemoryInput,
  model: string,
  precision: Precision,
): ModelError {
  const side = largestSideThatFits(plan, input);
  const tried = plan.placement === 'cpu-encoders' ? ', even with the text encoders on the CPU' : '';
  // Only what is not already so.
  const fixes = [
    'raise the limit',
    ...(plan.placement === 'cpu-encoders' ? [] : ['set models.placement: cpu-encoders']),
    ...(precision === 'fp8' || precision === 'fp8-weights' ? [] : ['use precision fp8']),
    ...(input.family === 'sd3.5-medium' ? [] : ['use a smaller model (sd3.5-medium)']),
  ];
  const said = fixes.length > 1 ? `${fixes.slice(0, -1).join(', ')} or ${fixes.at(-1)}` : fixes[0];
  return new ModelError(
    'models.gpuMemoryLimit',
    `${model} at ${precision} needs about ${gb(plan.peakBytes ?? 0)} of GPU memory for one ` +
      `${input.resolution}×${input.resolution} image${tried}; models.gpuMemoryLimit is ${gb(plan.budget.bytes ?? 0)}. ` +
      (side ? `Only images up to ${side}×${side} would fit. ` : '') +
      `${said[0].toUpperCase()}${said.slice(1)}.`,
  );
}

/** PipelineInfo.memory from the plan (serialisable: it crosses from the pipeline process). */
function memoryInfo(
  plan: GpuMemoryPlan,
  routes: Record<SessionComponent, SessionRoute>,
): NonNullable<PipelineInfo['memory']> {
  return {
    placement: plan.placement,
    reason: plan.reason,
    providers: {
      clipL: routes.clipL.provider,
      clipG: routes.clipG.provider,
      t5: routes.t5.provider,
      mmdit: routes.mmdit.provider,
      vae: routes.vae.provider,
    },
    budgetSource: plan.budget.source,
    ...(plan.budget.bytes !== undefined ? { budgetBytes: plan.budget.bytes } : {}),
    ...(plan.peakBytes !== undefined ? { peakBytes: plan.peakBytes } : {}),
    fits: plan.fits,
    ...(plan.maxImages !== undefined && Number.isFinite(plan.maxImages) ? { maxImages: plan.maxImages } : {}),
    ...(plan.vaeBudgetBytes !== undefined ? { vaeBudgetBytes: plan.vaeBudgetBytes } : {}),
    ...(plan.arenaLimits ? { arenaLimits: { ...plan.arenaLimits } } : {}),
    capiShapes: plan.capiShapes,
    ...(plan.loras ? { loras: { ...plan.loras } } : {}),
    summary: describePlan(plan),
  };
}

/** Bytes a component's weights occupy and their dominant storage type, for `atelier doctor`. */
export function storageOf(source: WeightSource): { bytes: number; dtype: string } {
  const byType = new Map<string, number>();
  const add = (t: ResolvedTensor) => {
    if (t.kind === 'tensor') byType.set(t.info.dtype, (byType.get(t.info.dtype) ?? 0) + t.info.byteLength);
    else if (t.kind === 'reshape') add(t.of);
    else t.parts.forEach(add);
  };
  for (const key of source.keys()) {
    const t = source.resolve(key);
    if (t) add(t);
  }
  let bytes = 0;
  let dtype = 'none';
  let most = -1;
  for (const [type, n] of byType) {
    bytes += n;
    if (n > most) [dtype, most] = [type, n];
  }
  return { bytes, dtype };
}

/**
 * Hyperparameters a file states in its metadata (`atelier.config`, written by the bundled tiny
 * model's generator) because its shapes do not tell them: attention head counts.
 */
function statedConfig(weights: ComponentWeights): Record<string, unknown> {
  const text = weights.metadata['atelier.config'];
  if (!text) return {};
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return {};
  }
}

function headsFrom(value: unknown): { heads?: number } {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? { heads: value } : {};
}

/** An allocation failure while loading, retold with the sizes involved and what to do. */
export function outOfMemory(
  error: unknown,
  name: string,
  components: ComponentInfo[],
  provider: string,
): ModelError | undefined {
  if (!isOutOfMemory(error)) return undefined;
  const message = String((error as Error)?.message ?? error);
  const total = components.reduce((sum, c) => sum + c.bytes, 0);
  const sizes = components.map((c) => `${c.name} ${gb(c.bytes)} (${c.dtype})`).join(', ');
  return new ModelError(
    name,
    `${name}: not enough ${provider === 'cuda' ? 'GPU ' : ''}memory to load it: the model's weights take ${gb(total)} ` +
      `(${sizes}) before activations. Use models.precision: fp8 (one byte per weight), the fp8 T5 ` +
      `(t5xxl_fp8_e4m3fn), or a smaller model (sd3.5-medium). ONNX Runtime said: ${message.split('\n')[0]}`,
    { cause: error },
  );
}
