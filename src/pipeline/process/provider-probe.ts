/**
 * Whether ONNX Runtime's execution provider loads, checked the way the pipeline process loads it:
 * in a fresh process that first takes `models.onnxRuntimeDir`'s libraries when set (they must be
 * loaded before onnxruntime-node, which a running CLI has long imported), then opens a one-node
 * session on the provider. `atelier doctor` asks; a failure comes back as ONNX Runtime's message.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ModelError } from '../../errors.js';

export interface ProviderProbe {
  provider: string;
  deviceId?: number;
  onnxRuntimeDir?: string;
}

/** Resolves with the ONNX Runtime library the session ran on; rejects with ModelError naming the cause. */
export function probeProvider(probe: ProviderProbe, timeoutMs = 60_000): Promise<{ library: string }> {
  // `library`: the ONNX Runtime file(s) the probe process had mapped after the session ran.
  const entry = fileURLToPath(import.meta.url);
  const execArgv = entry.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [];
  return new Promise((resolve, reject) => {
    const child = fork(entry, [JSON.stringify(probe)], {
      execArgv,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    let answer: { ok: true; library: string } | { ok: false; message: string } | undefined;
    child.on('message', (message: typeof answer) => {
      answer = message;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (answer?.ok) resolve({ library: answer.library });
      else
        reject(
          new ModelError(
            'models.executionProvider',
            answer?.message ??
              `the provider check ended without an answer (${signal ?? `exit ${code}`})${stderr ? `: ${stderr.trim().split('\n').at(-1)}` : ''}`,
          ),
        );
    });
  });
}

async function runProbe(probe: ProviderProbe): Promise<string> {
  const { useOnnxRuntimeDir, mappedOrtLibraries } = await import('../ort/library.js');
  if (probe.onnxRuntimeDir) useOnnxRuntimeDir(probe.onnxRuntimeDir, probe.provider);
  const { GraphBuilder } = await import('../onnx/graph.js');
  const { openSession } = await import('../onnx/session.js');
  const g = new GraphBuilder('provider_check');
  g.output(g.op('Identity', [g.input('x', 'float32', [1])]), 'y', 'float32', [1]);
  const session = await openSession('execution provider check', g.build(), {
    provider: probe.provider as 'cpu' | 'cuda',
    deviceId: probe.deviceId,
  });
  await session.release();
  return mappedOrtLibraries().join(', ');
}

if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const probe = JSON.parse(process.argv[2] ?? '{}') as ProviderProbe;
  runProbe(probe).then(
    (library) => process.send!({ ok: true, library }, () => process.exit(0)),
    (error: unknown) =>
      process.send!({ ok: false, message: String((error as Error)?.message ?? error).split('\n')[0] }, () =>
        process.exit(1),
      ),
  );
}
