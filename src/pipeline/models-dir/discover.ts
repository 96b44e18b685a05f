/**
 * Finds a complete SD3.5 model set in the models folder (config `models.dir`): a ComfyUI
 * `models/` folder or a diffusers folder, plus the tokenizers ComfyUI folders don't carry.
 * Everything wrong is reported at once, in one ModelError that says what was looked for where and
 * which command fixes it — at startup, never in the middle of a job.
 */
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { ModelError } from '../../errors.js';
import { resolvedShape } from '../onnx/params.js';
import {
  hasTokenizer,
  readTokenizerFiles,
  type TokenizerKind,
  tokenizerIdCount,
} from '../text/tokenizer-files.js';
import { type ComfyUIOptions, findComfyUISet, looksLikeComfyUI } from './comfyui.js';
import { findDiffusersSet, isDiffusersFolder, listDiffusersFolders } from './diffusers.js';
import type { SamplingHint } from './sampling-hint.js';
import type {
  ComponentName,
  ModelComponents,
  ModelFamily,
  ModelLayout,
  ModelSet,
  TokenizerDirs,
} from './types.js';
import { ComponentWeights } from './weight-source.js';

export interface DiscoverOptions extends ComfyUIOptions {
  /** Atelier's data dir: `models pull` puts tokenizers in `<dataDir>/tokenizers/{clip,t5}`. */
  dataDir: string;
}

interface Findings {
  name: string;
  family: ModelFamily;
  layout: ModelLayout;
  root: string;
  components: Partial<ModelComponents>;
  notes: string[];
  missing: string[];
  sampling?: SamplingHint;
}

/**
 * The `atelier models pull` name that provides files for a family. A network the shapes don't
 * place (a fine-tune, SD3 Medium) is named by its file or folder name (`hints`), so a Medium user
 * is never sent to Large's repository, whose licence they may not have accepted.
 */
export function pullNameFor(family: ModelFamily, hints: readonly string[] = []): string {
  if (family === 'sd3.5-large-turbo' || family === 'sd3.5-medium' || family === 'sd3.5-large') return family;
  if (hints.some((h) => /medium/i.test(h))) return 'sd3.5-medium';
  if (hints.some((h) => /turbo/i.test(h))) return 'sd3.5-large-turbo';
  return 'sd3.5-large';
}

export function discoverModelSet(options: DiscoverOptions): ModelSet {
  const { modelsDir } = options;
  if (!existsSync(modelsDir) || !statSync(modelsDir).isDirectory()) {
    throw new ModelError(modelsDir, `models.dir = ${modelsDir}: no such folder.\n${howToGetModels(options)}`);
  }
  const findings = find(options);
  const tokenizers = findTokenizers(findings, options);
  if (findings.missing.length) {
    throw new ModelError(findings.root, incompleteMessage(findings, options));
  }
  const set: ModelSet = {
    name: findings.name,
    family: findings.family,
    layout: findings.layout,
    root: findings.root,
    components: findings.components as ModelComponents,
    tokenizers,
    notes: findings.notes,
    ...(findings.sampling ? { sampling: findings.sampling } : {}),
  };
  checkTokenizersFit(set);
  return set;
}

function find(options: DiscoverOptions): Findings {
  const { modelsDir, checkpoint } = options;
  const namedFolder = checkpoint
    ? isAbsolute(checkpoint)
      ? checkpoint
      : join(modelsDir, checkpoint)
    : undefined;
  const diffusersRoot =
    namedFolder && isDiffusersFolder(namedFolder)
      ? namedFolder
      : isDiffusersFolder(modelsDir)
        ? modelsDir
        : undefined;
  if (diffusersRoot) return fromDiffusers(diffusersRoot, []);

  const comfy = findComfyUISet(options);
  if ('components' in comfy) {
    return { ...comfy, layout: 'comfyui', root: modelsDir };
  }
  if (comfy.problem)
    throw new ModelError(options.checkpoint ?? modelsDir, `${comfy.problem}\n${howToGetModels(options)}`);
  const folders = listDiffusersFolders(modelsDir);
  if (folders.length) {
    const notes =
      folders.length > 1 ? [`Using ${folders[0]}; also found ${folders.slice(1).join(', ')}.`] : [];
    return fromDiffusers(folders[0], notes);
  }
  const lookedAt = [
    ...comfy.lookedAt,
    `a diffusers folder (model_index.json) in ${modelsDir}, its subfolders or ${join(modelsDir, 'diffusers')}`,
  ];
  const kind = looksLikeComfyUI(modelsDir) ? 'This looks like a ComfyUI models folder, but no' : 'No';
  throw new ModelError(
    modelsDir,
    `${kind} SD3.5 model was found in ${modelsDir}. Looked for:\n${lookedAt.map((l) => `  - ${l}`).join('\n')}\n${howToGetModels(options)}`,
  );
}

function fromDiffusers(root: string, notes: string[]): Findings {
  const found = findDiffusersSet(root);
  if ('problem' in found) throw new ModelError(root, found.problem);
  return { ...found, notes: [...notes, ...found.notes], layout: 'diffusers', root };
}

/** Where a ComfyUI installation keeps the tokenizers of its own source tree (newest layout first). */
const COMFYUI_TOKENIZERS: Record<TokenizerKind, string[]> = {
  clip: ['comfy/sd1_tokenizer'],
  t5: ['comfy/text_encoders/t5_tokenizer', 'comfy/t5_tokenizer'],
};

/**
 * The ComfyUI installation a `models/` folder belongs to: the nearest folder above it (its real
 * path too, when `models` is a link) that holds ComfyUI's `comfy/` package.
 */
export function comfyUiInstallation(modelsDir: string): string | undefined {
  const starts = [resolve(modelsDir)];
  try {
    starts.push(realpathSync(modelsDir));
  } catch {
    // A folder that cannot be resolved has no installation to find.
  }
  for (const start of starts) {
    let dir = dirname(start);
    for (let depth = 0; depth < 3; depth++) {
      if (existsSync(join(dir, 'comfy', 'sd1_tokenizer'))) return dir;
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  return undefined;
}

/**
 * Tokenizer folders in order of preference: the diffusers folder's own, next to the weights, the
 * ComfyUI installation's own (its source tree ships CLIP's and T5's), the data dir.
 */
function tokenizerCandidates(findings: Findings, options: DiscoverOptions, kind: TokenizerKind): string[] {
  const own =
    findings.layout === 'diffusers'
      ? [join(findings.root, kind === 'clip' ? 'tokenizer' : 'tokenizer_3')]
      : [];
  const comfy = findings.layout === 'comfyui' ? comfyUiInstallation(options.modelsDir) : undefined;
  return [
    ...own,
    join(options.modelsDir, 'tokenizers', kind),
    ...(comfy ? COMFYUI_TOKENIZERS[kind].map((dir) => join(comfy, dir)) : []),
    join(options.dataDir, 'tokenizers', kind),
  ];
}

function findTokenizers(findings: Findings, options: DiscoverOptions): TokenizerDirs {
  const pick = (kind: TokenizerKind): string | undefined => {
    const candidates = tokenizerCandidates(findings, options, kind);
    const dir = candidates.find((d) => hasTokenizer(d, kind));
    if (!dir) {
      const files = kind === 'clip' ? 'tokenizer.json, or vocab.json + merges.txt' : 'tokenizer.json';
      const why =
        findings.layout === 'comfyui' && !comfyUiInstallation(options.modelsDir)
          ? ' (ComfyUI models folders carry no tokenizer files; inside a ComfyUI installation its own comfy/sd1_tokenizer and comfy/text_encoders/t5_tokenizer are used)'
          : '';
      findings.missing.push(
        `the ${kind.toUpperCase()} tokenizer (${files}): looked in ${candidates.join(', ')}${why}`,
      );
    }
    return dir;
  };
  const clip = pick('clip') ?? '';
  const t5 = findings.components.t5 ? pick('t5') : undefined;
  return t5 ? { clip, t5 } : { clip };
}

function incompleteMessage(findings: Findings, options: DiscoverOptions): string {
  const pull = pullNameFor(findings.family, [findings.name]);
  const onlyTokenizers = findings.missing.every((m) => m.includes(' tokenizer ('));
  const fixes = onlyTokenizers
    ? [
        `atelier models pull ${pull} --tokenizers-only   (downloads the tokenizer files, a few MB, into ${join(options.dataDir, 'tokenizers')}; needs HF_TOKEN after accepting the model's licence on huggingface.co)`,
      ]
    : [
        `atelier models pull ${pull}   (downloads the complete set from Hugging Face into models.dir; needs HF_TOKEN after accepting the licence)`,
        findings.layout === 'comfyui'
          ? `or copy the missing files into ${join(options.modelsDir, 'text_encoders')} / ${join(options.modelsDir, 'vae')} as ComfyUI expects them`
          : 'or download the missing parts of the diffusers folder again',
      ];
  return (
    `The SD3.5 model "${findings.name}" in ${findings.root} is incomplete. Missing:\n` +
    findings.missing.map((m) => `  - ${m}`).join('\n') +
    `\nTo fix it:\n${fixes.map((f) => `  - ${f}`).join('\n')}`
  );
}

function howToGetModels(_options: DiscoverOptions): string {
  return (
    'To get a model:\n' +
    `  - atelier models pull sd3.5-large   (downloads SD3.5 Large into models.dir; needs HF_TOKEN after accepting the licence on huggingface.co; also sd3.5-large-turbo, sd3.5-medium)\n` +
    `  - or set models.dir to an existing ComfyUI models folder (e.g. ~/ComfyUI/models) that holds an SD3.5 checkpoint`
  );
}

const EMBEDDINGS: Partial<Record<ComponentName, string>> = {
  clipL: 'text_model.embeddings.token_embedding.weight',
  clipG: 'text_model.embeddings.token_embedding.weight',
  t5: 'encoder.embed_tokens.weight',
};

/**
 * A tokenizer from another model (the tiny model's with real weights, or the reverse) makes ids
 * past the embedding table: caught here, with both files named, instead of a Gather error later.
 */
function checkTokenizersFit(set: ModelSet): void {
  const pairs: [ComponentName, TokenizerKind, string | undefined][] = [
    ['clipL', 'clip', set.tokenizers.clip],
    ['clipG', 'clip', set.tokenizers.clip],
    ['t5', 't5', set.tokenizers.t5],
  ];
  const counts = new Map<string, number>();
  for (const [component, kind, dir] of pairs) {
    const location = set.components[component];
    if (!location || !dir) continue;
    let ids = counts.get(dir);
    if (ids === undefined) {
      ids = tokenizerIdCount(readTokenizerFiles(dir, kind).tokenizerJson);
      counts.set(dir, ids);
    }
    const weights = ComponentWeights.open(location, component);
    try {
      const embedding = weights.resolve(EMBEDDINGS[component]!);
      const rows = embedding ? resolvedShape(embedding)[0] : undefined;
      if (rows !== undefined && ids > rows) {
        throw new ModelError(
          dir,
          `The ${kind.toUpperCase()} tokenizer in ${dir} has ${ids} tokens, but ${basename(location.file)} embeds only ${rows}: ` +
            'the tokenizer belongs to another model. Remove it, or run `atelier models pull ' +
            `${pullNameFor(set.family, [set.name])} --tokenizers-only\` to get the right one.`,
        );
      }
    } finally {
      weights.close();
    }
  }
}
