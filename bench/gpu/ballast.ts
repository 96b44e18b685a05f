/**
 * Emulates a smaller GPU for issue 11's rows (`atelier-bench --emulate-card`): the bench process
 * itself allocates all but `leave` bytes of the GPU's free memory (cudaMalloc through koffi, in
 * 1 GiB blocks), so the pipeline child runs on what a 16 or 24 GB card would have free — CUDA
 * context, cuBLAS/cuDNN workspaces and our kernels' scratch included, which no arena cap covers.
 * Loaded only when asked for; without the CUDA runtime (a CPU machine) `open()` is undefined.
 */
import koffi from 'koffi';

const GiB = 2 ** 30;
/** cudaMalloc hands out 2 MiB pages: the last block is rounded down to one. */
const PAGE = 2 * 2 ** 20;
const NAMES = ['libcudart.so.13', 'libcudart.so.12', 'libcudart.so'];

export class GpuBallast {
  readonly #blocks: unknown[] = [];
  #held = 0;

  private constructor(
    readonly library: unknown,
    readonly memGetInfo: (free: unknown[], total: unknown[]) => number,
    readonly malloc: (ptr: unknown[], size: number) => number,
    readonly free: (ptr: unknown) => number,
    readonly deviceId: number,
  ) {}

  /** The CUDA runtime on `deviceId`, or undefined (with the reason) where it cannot be loaded. */
  static open(deviceId = 0): { ballast?: GpuBallast; reason?: string } {
    let lib: ReturnType<typeof koffi.load> | undefined;
    const errors: string[] = [];
    for (const name of NAMES) {
      try {
        lib = koffi.load(name);
        break;
      } catch (error) {
        errors.push(`${name}: ${(error as Error).message}`);
      }
    }
    if (!lib) return { reason: `no CUDA runtime (${errors.join('; ')})` };
    const setDevice = lib.func('int cudaSetDevice(int device)') as (d: number) => number;
    const ballast = new GpuBallast(
      lib,
      lib.func('int cudaMemGetInfo(_Out_ size_t* free, _Out_ size_t* total)') as GpuBallast['memGetInfo'],
      lib.func('int cudaMalloc(_Out_ void** ptr, size_t size)') as GpuBallast['malloc'],
      lib.func('int cudaFree(void* ptr)') as GpuBallast['free'],
      deviceId,
    );
    const code = setDevice(deviceId);
    if (code !== 0) return { reason: `cudaSetDevice(${deviceId}) failed (${code})` };
    try {
      ballast.info();
    } catch (error) {
      return { reason: (error as Error).message };
    }
    return { ballast };
  }

  /** The GPU's free and total bytes now (cudaMemGetInfo: every process's use counted). */
  info(): { free: number; total: number } {
    const free: unknown[] = [0];
    const total: unknown[] = [0];
    const code = this.memGetInfo(free, total);
    if (code !== 0) throw new Error(`cudaMemGetInfo failed (${code})`);
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /**
   * Allocates until about `leave` bytes stay free (never frees what it holds: call release() first
   * to change the size). Returns the free bytes after; throws when less than `leave` is free now.
   */
  fill(leave: number): number {
    let { free } = this.info();
    if (free < leave)
      throw new Error(
        `only ${(free / GiB).toFixed(2)} GiB free on the GPU, less than the ${(leave / GiB).toFixed(2)} GiB card to emulate`,
      );
    while (free - leave >= PAGE) {
      const size = Math.min(GiB, Math.floor((free - leave) / PAGE) * PAGE);
      const out: unknown[] = [null];
      const code = this.malloc(out, size);
      if (code !== 0) break;
      this.#blocks.push(out[0]);
      this.#held += size;
      free = this.info().free;
    }
    return free;
  }

  /** Frees every block. */
  release(): void {
    for (const block of this.#blocks.splice(0)) this.free(block);
    this.#held = 0;
  }
}
