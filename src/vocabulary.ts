/**
 * The words every layer shares: which samplers exist, what a seed can be, how many images a job
 * makes. The config schema, chat validation, the commands, PNG parameters and the pipeline
 * contract (`GenerationRequest`) all read them from here, so they cannot drift apart. This module
 * imports nothing.
 */

/** The samplers the pipeline implements (one function each in `pipeline/sampling/samplers.ts`). */
export const SAMPLER_NAMES = ['euler', 'dpmpp_2m'] as const;

export type SamplerName = (typeof SAMPLER_NAMES)[number];

/** The names A1111, Forge and ComfyUI users know (A1111 `sd_samplers_kdiffusion.py` labels). */
export const SAMPLER_LABELS: Readonly<Record<SamplerName, string>> = {
  euler: 'Euler',
  dpmpp_2m: 'DPM++ 2M',
};

/** Accepts `dpmpp_2m`, `DPM++ 2M`, `dpmpp-2m`, `Euler`: case, spaces, `+`/`-`/`_` do not matter. */
export function parseSampler(input: string): SamplerName | undefined {
  const key = input
    .toLowerCase()
    .replace(/\+/g, 'p')
    .replace(/[\s_-]+/g, '');
  for (const name of SAMPLER_NAMES) {
    if (
      name.replace(/_/g, '') === key ||
      SAMPLER_LABELS[name].toLowerCase().replace(/\+/g, 'p').replace(/\s+/g, '') === key
    ) {
      return name;
    }
  }
  return undefined;
}

/** The highest seed: torch.manual_seed feeds the CPU mt19937 only 32 bits, so larger seeds alias. */
export const MAX_SEED = 2 ** 32 - 1;

/** Images per job: 1 to this (`GenerationRequest.count`; a 2×2 grid shows them together). */
export const MAX_COUNT = 4;

/** An upscale doubles each side (then refines at a low strength). */
export const UPSCALE_FACTOR = 2;

/**
 * What waiting jobs wait for when no GPU worker is online (the distributed mode): said instead of
 * a time by queue notices, `/queue` and the queue-cap refusals.
 */
export const WAITING_FOR_WORKER = 'waiting for a GPU worker (none is online right now)';
