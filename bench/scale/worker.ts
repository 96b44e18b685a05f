/**
 * One `atelier worker` for the scale benchmark, as its own process: the cluster's worker
 * (src/cluster/worker.ts) on the instant pipeline double, without the pipeline child process the
 * product adds (the embedded baseline runs without it too). Prints `ready` once it takes jobs and
 * stops on SIGTERM. Benchmark use only.
 *
 *   node --import tsx bench/scale/worker.ts <redisUrl> <prefix> <id>
 */
import { ClusterWorker } from '../../src/cluster/index.js';
import { createLogger } from '../../src/log.js';
import { InstantPipeline } from './instant-pipeline.js';

const [redisUrl, prefix, id] = process.argv.slice(2);
if (!redisUrl || !prefix || !id) throw new Error('usage: worker.ts <redisUrl> <prefix> <id>');
const worker = new ClusterWorker({
  redisUrl,
  prefix,
  id,
  device: 0,
  pipeline: new InstantPipeline(),
  logger: createLogger({ level: 'silent' }),
});
await worker.start();
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  void worker.close().then(() => process.exit(0));
});
