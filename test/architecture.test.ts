/**
 * The layering README's Architecture section promises, checked on the sources: dependencies point
 * `adapters → commands → src`, and inside src/ from the composition down to the shared vocabulary
 * (SRC_LAYERS); `src/` knows no chat library, `commands/` no composition, `adapters/` never touch
 * ONNX Runtime; and no module reaches itself through its imports (type-only imports included: a
 * loop of types is still two modules that cannot be understood apart).
 *
 * The import graph is read with a regex over `import … from`, `export … from`, `import '…'` and
 * `import('…')` — enough for this code base, whose imports are all static strings.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LAYERS = ['src', 'commands', 'adapters'] as const;

/**
 * src/ from the bottom up: a module may import its own layer and those below, never one above.
 * A folder (`src/jobs`) or a top-level file (`src/log.ts`) missing here fails the test: place it.
 */
const SRC_LAYERS: readonly (readonly string[])[] = [
  // Words and errors every layer shares; they import nothing of ours (vocabulary nothing at all).
  ['src/vocabulary.ts', 'src/errors.ts', 'src/edit-distance.ts'],
  // Job types, chat validation, ids, aspect sizes.
  ['src/jobs'],
  ['src/config', 'src/log.ts'],
  // The parts: SQLite, PNG/grids/previews, the SD3.5 pipeline (and native/, its custom-op library).
  ['src/store', 'src/images', 'src/pipeline'],
  // The runtime: fair queue, limits, ETA, and the executor that drives a pipeline.
  ['src/scheduler'],
  // The distributed mode: the gateway's runner pool and the worker, over BullMQ on Redis.
  ['src/cluster'],
  // The composition, one module per role.
  ['src/app'],
  ['src/cli'],
];

/**
 * Loops known and accepted, each as its modules in order (`a → b → a` is `['a', 'b']`). Empty:
 * a loop found here is a bug to fix, not to list.
 */
const KNOWN_CYCLES: readonly (readonly string[])[] = [];

interface Module {
  /** Repository-relative path with `/`, e.g. `src/app/core.ts`. */
  path: string;
  /** Repository-relative paths of the modules it imports. */
  imports: string[];
  /** Bare specifiers (`discord.js`, `node:fs`, `@slack/bolt`). */
  packages: string[];
}

const SPECIFIER =
  /(?:\bimport|\bexport)\s[^;'"`]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : sourceFiles(path);
    return /\.ts$/.test(name) && !name.endsWith('.d.ts') ? [path] : [];
  });
}

const toKey = (path: string) => relative(ROOT, path).split(sep).join('/');

function readModule(file: string): Module {
  // Comments can mention imports (`see import('x')`): strip them first.
  const text = readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const imports: string[] = [];
  const packages: string[] = [];
  for (const match of text.matchAll(SPECIFIER)) {
    const specifier = match[1] ?? match[2] ?? match[3]!;
    if (!specifier.startsWith('.')) {
      packages.push(specifier);
      continue;
    }
    // NodeNext: `./x.js` names `./x.ts` (other files, such as native/'s `.mjs`, are themselves).
    const path = resolve(dirname(file), specifier);
    imports.push(toKey(existsSync(path) ? path : path.replace(/\.js$/, '.ts')));
  }
  return { path: toKey(file), imports, packages };
}

const modules = new Map<string, Module>(
  LAYERS.flatMap((layer) => sourceFiles(join(ROOT, layer))).map((file) => {
    const m = readModule(file);
    return [m.path, m] as const;
  }),
);

const layerOf = (path: string) => path.split('/')[0];

/** Every elementary loop's modules, found by Tarjan's strongly connected components. */
function cycles(): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of modules.get(v)?.imports ?? []) {
      if (!modules.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      const selfLoop = modules.get(v)?.imports.includes(v);
      if (component.length > 1 || selfLoop) components.push(component.sort());
    }
  };
  for (const v of [...modules.keys()].sort()) if (!index.has(v)) visit(v);
  return components;
}

/** `[importer, imported]` pairs that break `rule`. */
function violations(rule: (from: Module) => (string | undefined)[]): string[] {
  return [...modules.values()].flatMap((m) =>
    rule(m)
      .filter((x): x is string => x !== undefined)
      .map((x) => `${m.path} → ${x}`),
  );
}

describe('architecture', () => {
  it('finds the modules and their imports (the reader works)', () => {
    expect(modules.size).toBeGreaterThan(100);
    expect(modules.get('commands/bot.ts')?.imports).toContain('commands/definitions.ts');
    expect(modules.get('adapters/discord/surface.ts')?.packages).toContain('discord.js');
    for (const m of modules.values())
      for (const imported of m.imports)
        expect(modules.has(imported) || existsSync(join(ROOT, imported)), `${m.path} → ${imported}`).toBe(
          true,
        );
  });

  it('has no import loop', () => {
    const known = new Set(KNOWN_CYCLES.map((c) => [...c].sort().join(' ')));
    expect(cycles().filter((c) => !known.has(c.join(' ')))).toEqual([]);
  });

  it('src/ imports neither commands/ nor adapters/ nor a chat library', () => {
    expect(
      violations((m) =>
        layerOf(m.path) !== 'src'
          ? []
          : [
              // native/ is the pipeline's custom-op library (its loader is a .mjs beside the sources).
              ...m.imports.filter((i) => layerOf(i) !== 'src' && layerOf(i) !== 'native'),
              ...m.packages.filter(
                (p) => p === 'discord.js' || p.startsWith('@discordjs/') || p.startsWith('@slack/'),
              ),
            ],
      ),
    ).toEqual([]);
  });

  it('src/ points down its layers: composition → runtime → parts → config → job types → vocabulary', () => {
    const rank = (path: string) => {
      const unit = path.split('/').length > 2 ? path.split('/').slice(0, 2).join('/') : path;
      return SRC_LAYERS.findIndex((layer) => layer.includes(unit));
    };
    const src = [...modules.values()].filter((m) => layerOf(m.path) === 'src');
    expect(src.filter((m) => rank(m.path) < 0).map((m) => m.path)).toEqual([]);
    expect(
      violations((m) =>
        layerOf(m.path) !== 'src'
          ? []
          : m.imports.filter((i) => layerOf(i) === 'src' && rank(i) > rank(m.path)),
      ),
    ).toEqual([]);
    expect(modules.get('src/vocabulary.ts')?.imports).toEqual([]);
  });

  it('commands/ imports neither adapters/, nor the composition (src/app/, src/cli/), nor a chat library', () => {
    expect(
      violations((m) =>
        layerOf(m.path) !== 'commands'
          ? []
          : [
              ...m.imports.filter(
                (i) => layerOf(i) === 'adapters' || i.startsWith('src/app/') || i.startsWith('src/cli/'),
              ),
              ...m.packages.filter(
                (p) => p === 'discord.js' || p.startsWith('@discordjs/') || p.startsWith('@slack/'),
              ),
            ],
      ),
    ).toEqual([]);
  });

  it('adapters/ never touch ONNX Runtime, koffi or the CLI, and are handed the composition', () => {
    // From src/app/ an adapter reads only what it is handed (roles.ts: ServeContext) and the live
    // start-up checks it shares with `atelier doctor`.
    const fromApp = new Set(['src/app/roles.ts', 'src/app/surface-checks.ts']);
    expect(
      violations((m) =>
        layerOf(m.path) !== 'adapters'
          ? []
          : [
              ...m.imports.filter(
                (i) =>
                  i.startsWith('src/pipeline/onnx/') ||
                  i.startsWith('src/pipeline/ort/') ||
                  i.startsWith('src/cli/') ||
                  (i.startsWith('src/app/') && !fromApp.has(i)),
              ),
              ...m.packages.filter((p) => p.startsWith('onnxruntime') || p === 'koffi' || p === 'onnx-proto'),
            ],
      ),
    ).toEqual([]);
  });

  it('each adapter reaches the bot through the one port (commands/port.ts), not the Bot class', () => {
    expect(
      violations((m) =>
        layerOf(m.path) !== 'adapters' || m.path === 'adapters/serve.ts'
          ? []
          : m.imports.filter((i) => i === 'commands/bot.ts'),
      ),
    ).toEqual([]);
  });
});
