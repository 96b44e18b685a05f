/**
 * What `atelier doctor` says about the models without loading them: the set discovery finds,
 * each component's file, storage type and bytes, and the notes discovery made.
 */
import { discoverModelSet } from '../models-dir/discover.js';
import type { ComponentName, ModelSet } from '../models-dir/types.js';
import { ComponentWeights } from '../models-dir/weight-source.js';
import { SAMPLING_DEFAULTS, type SamplingDefaults } from '../sampling/defaults.js';
import type { ComponentInfo } from '../types.js';
import { storageOf } from './components.js';
import type { EngineOptions } from './options.js';

export interface ModelDescription {
  set: ModelSet;
  components: ComponentInfo[];
  defaults: SamplingDefaults;
}

export function describeModels(options: EngineOptions): ModelDescription {
  const set = discoverModelSet({
    modelsDir: options.modelsDir,
    checkpoint: options.checkpoint,
    textEncoders: options.textEncoders,
    dataDir: options.dataDir,
  });
  const components: ComponentInfo[] = [];
  for (const [name, location] of Object.entries(set.components) as [
    ComponentName,
    (typeof set.components)['mmdit'],
  ][]) {
    if (!location) continue;
    const weights = ComponentWeights.open(location, name);
    try {
      components.push({ name, ...storageOf(weights), file: location.file });
    } finally {
      weights.close();
    }
  }
  return { set, components, defaults: SAMPLING_DEFAULTS[set.family] };
}
