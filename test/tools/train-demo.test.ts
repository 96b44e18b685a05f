/**
 * The demo model's trainer (tools/train-demo): a CPU smoke run of a few steps on tiny images with
 * Debian's PyTorch, then its artefact through the product's ordinary discovery and engine, compared
 * with the trainer's own PyTorch model code: same tokens, same conditioning, same sampled latent,
 * same pixels. Needs /usr/bin/python3 with torch (`apt-get install python3-torch`).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discoverModelSet } from '../../src/pipeline/models-dir/discover.js';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import { SD3Tokenizer } from '../../src/pipeline/text/tokenizer.js';
import type { GenerationRequest } from '../../src/pipeline/types.js';
import { writeDemoText } from '../../tools/train-demo/export-text.js';

const ROOT = join(import.meta.dirname, '../..');
const TOOL = join(ROOT, 'tools/train-demo');
const PYTHON = process.env.ATELIER_TRAIN_PYTHON ?? '/usr/bin/python3';

function torchMissing(): string | undefined {
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  if (r.status === 0) return undefined;
  return (
    `The demo trainer's smoke test needs PyTorch and numpy for ${PYTHON}: run \`apt-get install python3-torch python3-numpy\` ` +
    `(or set ATELIER_TRAIN_PYTHON to a python3 that has them). ${(r.stderr || String(r.error ?? '')).trim().split('\n').at(-1)}`
  );
}

function python(args: string[], input?: string): string {
  return execFileSync(PYTHON, args, {
    cwd: ROOT,
    input,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, OMP_NUM_THREADS: '2' },
  });
}

let root: string;
let missing: string | undefined;
const engines: Sd35Engine[] = [];

beforeAll(() => {
  missing = torchMissing();
  root = mkdtempSync(join(tmpdir(), 'atelier-train-demo-'));
  if (!missing)
    python([join(TOOL, 'train.py'), '--out', join(root, 'run'), '--smoke', '--preview-steps', '']);
}, 180_000);
afterAll(async () => {
  for (const e of engines) await e.dispose();
  rmSync(root, { recursive: true, force: true });
});

function requireTorch(): void {
  if (missing) throw new Error(missing);
}

/** Another smoke call on the same run folder (train.py's flags after `--smoke`). */
function trainAgain(...flags: string[]): void {
  python([join(TOOL, 'train.py'), '--out', join(root, 'run'), '--smoke', ...flags, '--preview-steps', '']);
}

/** A line of train.py's log.jsonl (the fields these tests read). */
interface LogEvent {
  event?: string;
  phase?: string;
  loss?: number;
  step: number;
  mmdit_s: number;
  plan_mmdit_s?: number;
  loaded?: boolean;
  rows?: number;
}

/** The run's log.jsonl events, from line `from` on. */
function runLog(from = 0): LogEvent[] {
  return readFileSync(join(root, 'run/log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .slice(from)
    .map((l) => JSON.parse(l) as LogEvent);
}

interface CheckResult {
  tokens: [number[], number[], number[]][];
  context: number[][];
  y: number[][];
  latent: number[];
  image: number[];
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('tools/train-demo', () => {
  it('has the text encoders and tokenizers that export-text.ts writes, byte for byte', () => {
    const again = join(root, 'text');
    writeDemoText(again);
    const committed = join(TOOL, 'text');
    const files = (dir: string): string[] =>
      readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((d) => d.isFile())
        .map((d) => join(d.parentPath, d.name).slice(dir.length + 1))
        .sort();
    expect(files(again)).toEqual(files(committed));
    for (const f of files(committed)) {
      const [ours, theirs] = [readFileSync(join(again, f)), readFileSync(join(committed, f))];
      // The committed JSON is biome-formatted (`npx biome format --write tools/train-demo/text`).
      if (f.endsWith('.json')) expect(JSON.parse(ours.toString()), f).toEqual(JSON.parse(theirs.toString()));
      else expect(ours.equals(theirs), f).toBe(true);
    }
  });

  it('trains a few steps on the CPU and writes both artefacts with a log', () => {
    requireTorch();
    for (const set of ['model', 'model-fp16']) {
      for (const f of [
        'checkpoints/atelier-demo-sd35.safetensors',
        'text_encoders/clip_l.safetensors',
        'text_encoders/clip_g.safetensors',
        'text_encoders/t5xxl_demo.safetensors',
        'tokenizers/clip/tokenizer.json',
        'tokenizers/t5/tokenizer.json',
      ])
        expect(existsSync(join(root, 'run', set, f)), `${set}/${f}`).toBe(true);
    }
    const log = runLog();
    expect(log.filter((e) => e.phase === 'mmdit' && e.loss !== undefined).length).toBe(3);
    expect(log.at(-1)?.event).toBe('done');
  });

  it('resumes from its state and carries on counting steps', () => {
    requireTorch();
    trainAgain('--resume', '--mmdit-steps', '1');
    const log = runLog();
    expect(log.some((e) => e.event === 'resumed')).toBe(true);
    expect(log.filter((e) => e.phase === 'mmdit' && e.loss !== undefined).at(-1)?.step).toBe(4);
    // The first call, ending before its plan, kept its scene cache; this one loaded it instead of drawing.
    const caches = log.filter((e) => e.event === 'cache');
    expect(log.filter((e) => e.event === 'cache saved').length).toBeGreaterThanOrEqual(1);
    expect(caches.map((e) => e.loaded)).toEqual([false, true]);
    expect(caches[1]?.rows).toBe(caches[0]?.rows);
  }, 120_000);

  it('ends its plan with a --last-call call, which keeps no scene cache', () => {
    requireTorch();
    const before = runLog().length;
    trainAgain('--resume', '--last-call', '--mmdit-steps', '1');
    const log = runLog(before);
    const resumed = log.find((e) => e.event === 'resumed')!;
    const last = log.find((e) => e.event === 'last call: the plan ends with it');
    // The plan becomes the seconds trained so far plus what this call has left (the smoke profile's own is 1e9).
    expect(last?.plan_mmdit_s).toBeGreaterThan(resumed.mmdit_s);
    expect(last?.plan_mmdit_s).toBeLessThan(resumed.mmdit_s + 8 * 60);
    expect(log.some((e) => e.event === 'cache saved')).toBe(false);
    expect(log.filter((e) => e.phase === 'mmdit' && e.loss !== undefined).at(-1)?.step).toBe(5);
  }, 120_000);

  it('is found by the ordinary discovery as a complete SD3.5 set in the ComfyUI layout', () => {
    requireTorch();
    for (const set of ['model', 'model-fp16']) {
      const found = discoverModelSet({ modelsDir: join(root, 'run', set), dataDir: join(root, 'data') });
      expect(found).toMatchObject({ name: 'atelier-demo-sd35', layout: 'comfyui', notes: [] });
      for (const c of ['mmdit', 'vae', 'clipL', 'clipG', 't5'] as const)
        expect(found.components[c], c).toBeDefined();
    }
  });

  it("tokenizes the world's captions in Python exactly as the product does", () => {
    requireTorch();
    const captions = [
      ...python([join(TOOL, 'world.py'), '--sample', '150'])
        .trim()
        .split('\n'),
      ...python([join(TOOL, 'world.py'), '--held-out', '50'])
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).caption as string),
      '',
      'two small yellow stars on a dark blue background',
      'a red fox in the snow, 3 big stars',
    ];
    const model = join(root, 'run/model');
    const ours = JSON.parse(
      python([join(TOOL, 'check.py'), model], JSON.stringify({ captions })),
    ) as CheckResult;
    const product = SD3Tokenizer.fromDirs({
      clip: join(model, 'tokenizers/clip'),
      t5: join(model, 'tokenizers/t5'),
    });
    captions.forEach((caption, i) => {
      const t = product.tokenize(caption);
      expect(ours.tokens[i], caption).toEqual([t.l[0], t.g[0], t.t5]);
    });
    // Caption words are single tokens: the vocabularies were learned from the world's words.
    for (const w of ['circle', 'hearts', 'crosses', 'dark', 'stripes', 'background', 'corner', 'above']) {
      expect(product.clipL.words(w), w).toHaveLength(1);
      expect(product.clipL.words(w)[0], w).toHaveLength(1);
      expect(product.t5!.words(w)[0], w).toHaveLength(1);
    }
  });

  for (const set of ['model-fp16', 'model']) {
    it(`generates in the product (${set}) what the trainer's PyTorch model computes`, async () => {
      requireTorch();
      const modelsDir = join(root, 'run', set);
      const engine = new Sd35Engine({
        modelsDir,
        checkpoint: 'atelier-demo-sd35.safetensors',
        dataDir: join(root, `data-${set}`),
      });
      engines.push(engine);
      await engine.load();
      const req: GenerationRequest = {
        prompt: 'two small yellow stars on a dark blue background',
        negativePrompt: '',
        width: 64,
        height: 64,
        seed: 5,
        steps: 3,
        guidance: 4.5,
        sampler: 'euler',
        count: 1,
      };
      const prepared = await engine.prepare(req);
      const latent = await engine.sample(prepared);
      const image = (await engine.generate(req)).images[0];
      const ours = JSON.parse(
        python(
          [join(TOOL, 'check.py'), modelsDir],
          JSON.stringify({
            prompts: [req.prompt, req.negativePrompt],
            noise: [...prepared.noise],
            shape: prepared.latentShape,
            sigmas: [...prepared.schedule],
            guidance: req.guidance,
          }),
        ),
      ) as CheckResult;
      expect(maxAbsDiff(ours.context[0], prepared.cond.context)).toBeLessThan(1e-4);
      expect(maxAbsDiff(ours.context[1], prepared.uncond.context)).toBeLessThan(1e-4);
      expect(maxAbsDiff(ours.y[0], prepared.cond.y)).toBeLessThan(1e-4);
      expect(maxAbsDiff(ours.latent, latent)).toBeLessThan(1e-3);
      expect(maxAbsDiff(ours.image, image.data)).toBeLessThanOrEqual(2);
    }, 120_000);
  }
});
