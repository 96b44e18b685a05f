/**
 * The sessions of the text encoders and the VAE (and the stock path's MMDiT), whichever API opened
 * them: onnxruntime-node's InferenceSession, or a CapiSession (ONNX Runtime's C API) when the CUDA
 * provider needs options the Node binding cannot pass (`gpu_mem_limit`, `arena_extend_strategy`).
 * Both take and give onnxruntime-node tensors in host memory, so conditioning.ts and vae-codec.ts
 * do not know which one runs.
 */
import * as ort from 'onnxruntime-node';
import type { ComputeType } from '../onnx/tensors.js';
import type { ArenaStats, CapiSession, ElementType, HostTensor } from '../ort/index.js';
import type { Placement } from './gpu-memory.js';

/** What the engine calls on a component's session (ort.InferenceSession has it). */
export interface ComponentSession {
  run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  run(feeds: Record<string, ort.Tensor>, fetches: string[]): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
  /** Its arena's counters (sessions opened through the C API; onnxruntime-node's report none). */
  arenaStats?(): ArenaStats | undefined;
}

const HOST_TYPES: Partial<Record<string, ElementType>> = {
  float32: 'float32',
  float16: 'float16',
  int64: 'int64',
  int32: 'int32',
  uint8: 'uint8',
  int8: 'int8',
  bool: 'bool',
  float64: 'float64',
};

/** A CapiSession behind the InferenceSession interface: host tensors in, host tensors out. */
export function capiComponentSession(
  session: CapiSession,
  options: { shrinkArena?: string } = {},
): ComponentSession {
  const runOptions = options.shrinkArena ? { shrinkArena: options.shrinkArena } : undefined;
  return {
    async run(feeds: Record<string, ort.Tensor>, fetches?: string[]) {
      const host: Record<string, HostTensor> = {};
      for (const [name, tensor] of Object.entries(feeds)) {
        const type = HOST_TYPES[tensor.type];
        if (!type)
          throw new TypeError(`input ${name}: tensor type ${tensor.type} is not supported by the C API path`);
        host[name] = { type, dims: [...tensor.dims], data: tensor.data as HostTensor['data'] };
      }
      const out = await session.run(host, fetches ?? session.outputNames, runOptions);
      return Object.fromEntries(
        Object.entries(out).map(([name, t]) => [
          name,
          new ort.Tensor(t.type as ort.Tensor.Type, t.data as ort.Tensor.DataType, t.dims),
        ]),
      );
    },
    async release() {
      session.release();
    },
    arenaStats: () => session.arenaStats(),
  };
}

export type SessionComponent = 'clipL' | 'clipG' | 't5' | 'vae' | 'mmdit';

/** How one component's session is opened. */
export interface SessionRoute {
  provider: 'cpu' | 'cuda';
  /** `stock`: onnxruntime-node; `capi`: CapiSession (needed for the CUDA arena options). */
  api: 'stock' | 'capi';
  compute: ComputeType;
  /** CUDA V2 provider options (gpu_mem_limit, arena_extend_strategy) for a `capi` route. */
  cuda: Record<string, string>;
  /**
   * Free the arena's unused regions after every run (the capped VAE): a capped arena that grows by
   * exactly what is asked cannot reuse the blocks of one decode size for a larger one.
   */
  shrinkArena?: boolean;
}

export interface RouteOptions {
  provider: 'cpu' | 'cuda';
  placement: Placement;
  compute: ComputeType;
  vaeCompute: ComputeType;
  /** Per-session arena caps (GpuMemoryPlan.arenaLimits): present exactly when a limit is set on CUDA. */
  arenaLimits?: Partial<Record<SessionComponent, number>>;
  /** `capi` opens every component through the C API, on any provider (tests, benchmarks). */
  sessionApi?: 'auto' | 'capi';
}

/**
 * Where and how each component's session opens. `cpu-encoders` puts CLIP-L, CLIP-G and T5 on the
 * CPU provider in float32 (ONNX Runtime's CPU kernels have no float16 route worth taking; fp8
 * weights are dequantized there, as on any CPU run), the MMDiT and VAE stay on the provider. With a
 * memory limit every CUDA session opens through the C API with its arena capped
 * (`gpu_mem_limit`) and growing by exactly what is requested (`kSameAsRequested`), not by powers
 * of two.
 */
export function sessionRoutes(o: RouteOptions): Record<SessionComponent, SessionRoute> {
  const route = (name: SessionComponent): SessionRoute => {
    const encoder = name === 'clipL' || name === 'clipG' || name === 't5';
    const provider = encoder && o.placement === 'cpu-encoders' ? 'cpu' : o.provider;
    const limit = provider === 'cuda' ? o.arenaLimits?.[name] : undefined;
    const compute =
      provider === 'cpu' && encoder && o.provider === 'cuda'
        ? 'float32'
        : name === 'vae'
          ? o.vaeCompute
          : o.compute;
    return {
      provider,
      api: limit !== undefined || o.sessionApi === 'capi' ? 'capi' : 'stock',
      compute,
      cuda:
        limit !== undefined
          ? {
              gpu_mem_limit: String(Math.floor(limit)),
              arena_extend_strategy: 'kSameAsRequested',
            }
          : {},
      ...(limit !== undefined && name === 'vae' ? { shrinkArena: true } : {}),
    };
  };
  return {
    clipL: route('clipL'),
    clipG: route('clipG'),
    t5: route('t5'),
    vae: route('vae'),
    mmdit: route('mmdit'),
  };
}
