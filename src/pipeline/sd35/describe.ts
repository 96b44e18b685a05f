/**
 * What `atelier doctor` says about the models without loading them: the set discovery finds,
 * each component's file, storage type and bytes, and the notes discovery made.
 */
import { discoverModelSet } from '../models-dir/discover.js';
import type { ModelSet } from '../models-dir/types.js';
import { type SamplingDefaults, samplingDefaultsOf } from '../sampling/defaults.js';
import type { ComponentInfo } from '../types.js';
import { fileComponents } from './components.js';
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
  const components = fileComponents(set);
  return { set, components, defaults: samplingDefaultsOf(set) };
}
