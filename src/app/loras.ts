/**
 * How `loras.*` maps onto the parts: the folder the pipeline reads LoRA files from, and the LoRAs
 * chat validation allows (with their default weights).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AtelierSettings } from '../config/index.js';
import type { LoraChoice } from '../jobs/loras.js';

/**
 * `loras.dir`, or ComfyUI's `models/loras` beside the checkpoints when `models.dir` is a ComfyUI
 * models folder that has one, or `<dataDir>/loras`.
 */
export function lorasDir(config: Pick<AtelierSettings, 'loras' | 'models' | 'dataDir'>): string {
  if (config.loras.dir) return config.loras.dir;
  const comfy = config.models.dir ? join(config.models.dir, 'loras') : undefined;
  return comfy && existsSync(comfy) ? comfy : join(config.dataDir, 'loras');
}

/** The allowed LoRAs: file `<name>.safetensors` and weight 1 unless configured. */
export function loraChoicesFromConfig(allowed: AtelierSettings['loras']['allowed']): LoraChoice[] {
  return Object.entries(allowed).map(([name, lora]) => ({
    name,
    file: lora.file?.trim() || `${name}.safetensors`,
    weight: lora.weight ?? 1,
  }));
}
