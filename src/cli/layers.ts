// `cachet layers`: recommend key layers for a model by validation error (the layer advisor).
// Runs locally (no service): extracts every candidate layer once, then scores keys in memory.
import path from 'node:path';
import { promises as fs } from 'node:fs';
import cliProgress from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { sourceOf } from './common.js';
import { parseBytes } from '../advisor/job.js';
import { list, positiveInt } from './args.js';
import { layersMarkdown, layersSvg } from '../reports/layers-report.js';
import { adviseRemotely } from './layers-remote.js';
import { LayerAdvice, LayerScore } from '../advisor/advice.js';

const memorySize = (v: string) => {
  const bytes = parseBytes(v);
  if (bytes === null) throw new InvalidArgumentError('give a size, e.g. 16GiB or 17179869184');
  return bytes;
};

const grid = (v: string) => {
  const values = list(v).map(Number);
  if (values.length === 0 || !values.every(Number.isFinite)) throw new InvalidArgumentError('give values "a,b,c"');
  return values;
};

interface LayersCliOptions {
  train: string;
  val: string;
  candidates?: string[];
  maxDimension: number;
  top: number;
  cacheSize?: number;
  perClass?: number;
  valPerClass?: number;
  flip?: boolean;
  theta?: number[];
  lambda?: number[];
  reportDir: string;
  json?: boolean;
  maxMemory?: number;
  /** run it as a job of the service at `url` */
  remote?: boolean;
  url: string;
  apiKey?: string;
}

export function registerLayersCommand(program: Command): void {
  program
    .command('layers <model>')
    .description(
      "recommend key layers: score single layers and concatenations of the best by the cache model's validation error (runs locally, or as a job of a running service with --remote)",
    )
    .requiredOption('--train <source>', 'cache images: a folder (one subfolder per class) or a .csv/.jsonl manifest')
    .requiredOption('--val <source>', 'labelled validation images: a folder or a manifest')
    .option('--candidates <names>', 'candidate layers, comma-separated (default: Relu/Add/Flatten/pooling/MatMul/Gemm outputs)', list)
    .option('--max-dimension <n>', 'layers with larger keys are not scored', positiveInt, 20_000)
    .option('--top <n>', 'try concatenations of up to n layers (greedy forward selection)', positiveInt, 3)
    .option('--cache-size <n>', 'the items your cache will hold: the best keys are extrapolated to it (learning curves)', positiveInt)
    .option('--per-class <n>', 'use at most n train images per class', positiveInt)
    .option('--val-per-class <n>', 'use at most n val images per class', positiveInt)
    .option('--flip', 'also cache each train image mirrored left-right, as the paper does')
    .option('--max-memory <size>', 'stop before starting if the advisor would hold more than this in memory, e.g. 16GiB (default 8GiB)', memorySize)
    .option('--theta <values>', 'θ grid "a,b,c" (default 10,20,…,90)', grid)
    .option('--lambda <values>', 'λ grid "a,b,c" (default 0.1,0.2,…,0.9)', grid)
    .option('--report-dir <dir>', 'where to write the report (Markdown, SVG, JSON)', 'reports')
    .option('--json', 'print the whole result as JSON')
    .option('--remote', 'run it as a job of the service at --url (POST /v1/layer-jobs): the service reads the model and the images by path')
    .addOption(new Option('--url <url>', 'the Cachet service (given on the command line, implies --remote)').env('CACHET_URL').default('http://localhost:8080'))
    .action(async (model: string, o: LayersCliOptions, cmd: Command) => {
      const remote = Boolean(o.remote) || cmd.getOptionValueSource('url') === 'cli';
      const { adviseLayers } = await import('../advisor/layers.js');
      let bar: cliProgress.SingleBar | null = null;
      // the same options either way; the HTTP body names the grids theta/lambda, as tune-jobs do
      const common = {
        model: path.resolve(model),
        train: sourceOf(o.train),
        val: sourceOf(o.val),
        candidates: o.candidates,
        maxDimension: o.maxDimension,
        top: o.top,
        cacheSize: o.cacheSize,
        perClass: o.perClass,
        valPerClass: o.valPerClass,
        flip: Boolean(o.flip),
      };
      if (!remote) {
        // the budget a layers job of the service has (8 GiB unless --max-memory): checked before
        // any image is read, so that a run too large for the machine never starts
        const { checkLayersMemory, planLayerJob } = await import('../advisor/job.js');
        const { inspectModel } = await import('../model/inspect.js');
        const plan = await planLayerJob(common, async (m, spec) => (await inspectModel(m, spec)).tensors);
        const flags = {
          perClass: '--per-class',
          valPerClass: '--val-per-class',
          candidates: '--candidates',
          maxDimension: '--max-dimension',
          maxMemory: '--max-memory',
        };
        checkLayersMemory(plan, o.maxMemory, Infinity, flags); // the machine is the user's: no service cap
      }
      const advice = remote
        ? await adviseRemotely(o.url, o.apiKey, { ...common, theta: o.theta, lambda: o.lambda, maxMemoryBytes: o.maxMemory })
        : await adviseLayers({ ...common, thetas: o.theta, lambdas: o.lambda }, (p) => {
            if (p.phase !== 'extract') {
              if (bar) {
                bar.stop();
                bar = null;
                console.error('scoring layers…');
              }
              return;
            }
            if (!bar) {
              bar = new cliProgress.SingleBar(
                { format: 'extracting |{bar}| {value}/{total} images | {percentage}% | ETA {eta_formatted}', etaBuffer: 20, stream: process.stderr },
                cliProgress.Presets.shades_classic,
              );
              bar.start(p.total, 0);
            }
            bar.update(p.done);
          });
      (bar as cliProgress.SingleBar | null)?.stop();
      const dir = path.resolve(o.reportDir, `layers-${path.basename(model, '.onnx')}`);
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(path.join(dir, 'report.md'), layersMarkdown(advice));
      await fs.writeFile(path.join(dir, 'by-layer.svg'), layersSvg(advice));
      await fs.writeFile(path.join(dir, 'result.json'), JSON.stringify(advice, null, 2) + '\n');
      console.error(`report: ${path.relative(process.cwd(), dir)}/report.md`);
      if (o.json) {
        console.log(JSON.stringify(advice, null, 2));
        return;
      }
      printAdvice(advice);
    });
}

function printAdvice(a: LayerAdvice): void {
  const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
  const name = (s: LayerScore) => s.layers.join(' + ');
  console.log(
    `${a.cacheItems} cache items (${a.trainImages} train images${a.flip ? ', with flips' : ''}), ${a.valImages} val images; ` +
      `grid ${a.thetas.length} θ × ${a.lambdas.length} λ; model alone ${pct(a.modelError)} error`,
  );
  const width = Math.max(8, ...a.ranking.map((s) => name(s).length));
  console.log(
    `${'#'.padStart(3)}  ${'layer(s)'.padEnd(width)}  ${'dims'.padStart(6)}  ${'val error'.padStart(9)}  ${'95 % interval'.padStart(17)}  ${'θ'.padStart(4)}  ${'λ'.padStart(4)}  ${'vs model alone'.padStart(14)}  cache alone (λ=1)`,
  );
  const interval = (s: LayerScore) => (s.interval ? `${pct(s.interval[0])}–${pct(s.interval[1])}` : '—');
  a.ranking.forEach((s, i) =>
    console.log(
      `${String(i + 1).padStart(3)}  ${name(s).padEnd(width)}  ${String(s.dimension).padStart(6)}  ${pct(s.error).padStart(9)}  ${interval(s).padStart(17)}  ${String(s.theta).padStart(4)}  ${String(s.lambda).padStart(4)}  ${pct(s.modelError).padStart(14)}  ${pct(s.cacheOnlyError)}${s.tied ? '  tied' : ''}`,
    ),
  );
  for (const same of a.sameKeys ?? []) console.log(`${same.sameAs.join(', ')}: the same values as ${same.layer} (scored once)`);
  if (a.search) console.log(`concatenations: ${a.search}`);
  const f = a.forCacheSize;
  if (f) {
    console.log(`\nat ${f.cacheSize} cache items (${f.method}):`);
    for (const k of f.ranking)
      console.log(
        `  ${k.layers.join(' + ').padEnd(width)}  ${String(k.dimension).padStart(6)}  ${pct(k.error).padStart(9)}  (measured ${k.curve.map((c) => `${pct(c.error)} at ${c.items}`).join(', ')})`,
      );
  }
  const r = a.recommendation;
  const tied = a.ranking.filter((s) => s.tied).length;
  console.log(
    `\nrecommendation: --layers ${r.layers.join(',')}  (${r.dimension} dims, θ=${r.theta}, λ=${r.lambda}: ${pct(r.error)} val error, 95 % interval ${interval(r)}, vs ${pct(r.modelError)} for the model alone at ${a.cacheItems} items)${f ? `; for a cache of ${f.cacheSize} items, extrapolated: ${pct(f.ranking[0].error)}` : `; for a cache of ${a.cacheItems} items`}`,
  );
  if (tied)
    console.log(`${tied} key(s) are tied with the best at ${a.cacheItems} items: ${a.valImages} validation images cannot tell them apart (marked "tied")`);
  if (a.tooLarge.length) {
    console.log('\nnot scored:');
    for (const t of a.tooLarge) console.log(`  ${t.layer}: ${t.message}`);
  }
  if (a.failedImages.length) {
    console.error(`${a.failedImages.length} images could not be decoded, for example:`);
    for (const e of a.failedImages.slice(0, 5)) console.error(`  ${e.id}: ${e.error}`);
  }
}
