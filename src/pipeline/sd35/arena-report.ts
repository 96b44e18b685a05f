/**
 * The arenas of a loaded SD3.5 model set (issue 11's measurements, bench/gpu/atelier-bench.ts):
 * every session opened through ONNX Runtime's C API reports its arena's counters; onnxruntime-node's
 * sessions report none (`EngineOptions.sessionApi: 'capi'` opens them all through the C API, and a
 * memory limit does so on CUDA).
 */
import type { ComponentSession } from './component-session.js';
import type { LoadedComponents } from './components.js';
import type { ArenaReport } from './gpu-memory.js';

type Component = ArenaReport['component'];

/** Each C-API session's arena now, the text encoders first, the C-API step sessions last. */
export async function arenaReports(
  c: Pick<LoadedComponents, 'text' | 'vaeDecoder' | 'mmdit' | 'capi' | 'info'>,
): Promise<ArenaReport[]> {
  const providers = c.info.memory?.providers;
  const fallback = c.info.executionProvider === 'cuda' ? 'cuda' : 'cpu';
  const provider = (component: Component) => providers?.[component] ?? fallback;
  const out: ArenaReport[] = [];
  const add = (component: Component, session: string, s: ComponentSession | undefined) => {
    const stats = s?.arenaStats?.();
    if (stats) out.push({ component, session, provider: provider(component), stats });
  };
  add('clipL', 'clip_l', c.text.clipL);
  add('clipG', 'clip_g', c.text.clipG);
  add('t5', 't5', c.text.t5);
  add('mmdit', 'mmdit', c.mmdit);
  add('vae', 'vae_decoder', c.vaeDecoder);
  for (const { shape, stats } of (await c.capi?.arenaStats()) ?? []) {
    out.push({
      component: 'mmdit',
      session: 'mmdit_step',
      provider: provider('mmdit'),
      stats,
      shape: { images: shape.images, height: shape.height, width: shape.width },
    });
  }
  return out;
}
