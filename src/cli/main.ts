#!/usr/bin/env node
// `cachet`: run the service, inspect models, and talk to a running service.
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ApiError } from './client.js';
import { registerCacheCommands } from './cache-commands.js';
import { addSpecOptions, specOverrides } from './spec-flags.js';
import { client, print, sourceOf, urlOption, writeJobReports } from './common.js';
import { followJob } from './progress.js';
import type { ServeFlags } from './serve.js';
import { int, nonNegative, num, positiveInt, redisUrl, shardList } from './args.js';
import type { JobView } from '../jobs/types.js';
import type { z } from 'zod';
import type { PredictResponseSchema } from '../http/schemas.js';

type PredictResponse = z.infer<typeof PredictResponseSchema>;
import { UserError } from '../errors/user-error.js';
import { IndexJobResult, EvalJobResult, TuneResult } from '../jobs/results.js';

const program = new Command('cachet').description('A cache model (Orhan 2018) for any ONNX image classifier, served over HTTP').showHelpAfterError();

/** Every command that talks to the service (those with --url) also takes --api-key: added below, before parsing. */
const apiKeyOption = () => new Option('--api-key <key>', 'API key for the service, sent as "Authorization: Bearer <key>"').env('CACHET_API_KEY');

program
  .command('serve')
  .description('run the service: embedded mode (one process, no Redis), or an api replica of distributed mode with --redis-url')
  .addOption(new Option('--port <port>', 'port to listen on').env('PORT').default(8080).argParser(int))
  .addOption(new Option('--host <host>', 'address to listen on').env('HOST').default('127.0.0.1'))
  .addOption(new Option('--data-dir <dir>', "where caches (embedded) or this replica's snapshots (distributed) live").env('CACHET_DATA_DIR').default('indexes'))
  .addOption(
    new Option(
      '--redis-url <url>',
      'distributed mode: coordinate with workers and other replicas through this Redis (redis://…, or redis-cluster://host:port,… for a Redis Cluster)',
    )
      .env('REDIS_URL')
      .argParser(redisUrl),
  )
  .addOption(new Option('--chunk-size <n>', 'distributed mode: images per chunk job').default(256).argParser(int))
  .addOption(
    new Option('--shards <list>', 'distributed mode: the shards of sharded caches this replica holds (default: all)').env('CACHET_SHARDS').argParser(shardList),
  )
  .addOption(
    new Option(
      '--api-keys-file <file>',
      'API keys, "role key [name]" per line (also CACHET_API_KEYS="role:key[:name],…"); without keys the service listens on localhost only',
    ).env('CACHET_API_KEYS_FILE'),
  )
  .addOption(
    new Option(
      '--read-roots <dirs>',
      `the only folders models and images are read from on a caller's behalf, separated by "${path.delimiter}" (default: anywhere the process can read)`,
    ).env('CACHET_READ_ROOTS'),
  )
  .addOption(
    new Option('--url-prefixes <prefixes>', 'the URL prefixes images may be fetched from, comma-separated (default: none: URL sources are off)').env(
      'CACHET_URL_PREFIXES',
    ),
  )
  .addOption(
    new Option('--min-body-rate <bytes/s>', 'a request body slower than this on average is cut with 408 (default 16384)')
      .env('CACHET_MIN_BODY_RATE')
      .argParser(positiveInt),
  )
  .addOption(
    new Option('--body-rate-grace-ms <ms>', 'how long a body may start slowly before --min-body-rate applies (default 10000)')
      .env('CACHET_BODY_RATE_GRACE_MS')
      .argParser(positiveInt),
  )
  .addOption(
    new Option('--max-import-bytes <n>', 'bytes of a cache export archive imported over HTTP (default 64 GiB)')
      .env('CACHET_MAX_IMPORT_BYTES')
      .argParser(positiveInt),
  )
  .addOption(
    new Option('--max-body-bytes <n>', 'bytes of a JSON body or of one uploaded file (default 16 MiB)').env('CACHET_MAX_BODY_BYTES').argParser(positiveInt),
  )
  .addOption(new Option('--max-images <n>', 'images per predict request (default 64)').env('CACHET_MAX_IMAGES_PER_REQUEST').argParser(positiveInt))
  .addOption(new Option('--max-pixels <n>', 'pixels per image, checked before decoding (default 16.8 M)').env('CACHET_MAX_INPUT_PIXELS').argParser(positiveInt))
  .addOption(new Option('--max-jobs-per-cache <n>', 'jobs waiting or running per cache (default 4)').env('CACHET_MAX_JOBS_PER_CACHE').argParser(positiveInt))
  .addOption(
    new Option('--max-concurrent-predicts <n>', 'predict requests in flight in this process (default 64)')
      .env('CACHET_MAX_CONCURRENT_PREDICTS')
      .argParser(positiveInt),
  )
  .addOption(
    new Option('--predict-max-batch <n>', 'micro-batching: the most images of concurrent predicts in one model run (default 64; 1 turns it off)')
      .env('CACHET_PREDICT_MAX_BATCH')
      .argParser(positiveInt),
  )
  .addOption(
    new Option('--predict-max-wait-ms <ms>', 'micro-batching: the longest a predict waits for others to join its batch while the engine is busy (default 2)')
      .env('CACHET_PREDICT_MAX_WAIT_MS')
      .argParser(nonNegative),
  )
  .addOption(
    new Option('--drain-delay-ms <ms>', 'on SIGTERM or SIGINT, answer /readyz 503 this long before closing, for load balancers to drain')
      .env('CACHET_DRAIN_DELAY_MS')
      .default(0)
      .argParser(int),
  )
  .addOption(
    new Option('--shutdown-timeout-ms <ms>', 'on SIGTERM or SIGINT, wait this long for requests in flight')
      .env('CACHET_SHUTDOWN_TIMEOUT_MS')
      .default(30_000)
      .argParser(int),
  )
  .action(async (opts: ServeFlags) => {
    const { serveFlags } = await import('./serve.js');
    await serveFlags(opts);
  });

program
  .command('worker')
  .description('distributed mode: extract keys for index jobs (run as many as you like, on any host)')
  .addOption(
    new Option('--redis-url <url>', 'the Redis the api replicas use (redis://… or redis-cluster://…)')
      .env('REDIS_URL')
      .argParser(redisUrl)
      .makeOptionMandatory(),
  )
  .addOption(new Option('--concurrency <n>', 'chunk jobs in hand at once').env('CACHET_WORKER_CONCURRENCY').default(1).argParser(int))
  .addOption(
    new Option('--lock-duration <ms>', "a dead worker's chunk goes to another after this long").env('CACHET_LOCK_DURATION_MS').default(30_000).argParser(int),
  )
  .action(async (opts: { redisUrl: string; concurrency: number; lockDuration: number }) => {
    const { runWorkerProcess } = await import('../../workers/index-worker.js');
    await runWorkerProcess(opts);
  });

program
  .command('demo')
  .description('run the service with a demo cache: CIFAR-10 ResNet-20 and a small sample (what `npm start` runs)')
  .addOption(new Option('--port <port>', 'port to listen on').env('PORT').default(8080).argParser(int))
  .addOption(new Option('--host <host>', 'address to listen on').env('HOST').default('127.0.0.1'))
  .addOption(new Option('--data-dir <dir>', 'where caches live').env('CACHET_DATA_DIR').default('indexes'))
  .option('--exit', 'exit after the demo instead of serving')
  .action(async (opts: { port: number; host: string; dataDir: string; exit?: boolean }) => {
    const { runDemo } = await import('./demo.js');
    await runDemo(opts);
  });

const model = program.command('model').description('look inside ONNX models');
model
  .command('inspect <model>')
  .description('list every tensor the graph computes, with op type and shape, to choose key layers')
  .option('--json', 'print JSON')
  .action(async (modelPath: string, opts: { json?: boolean }) => {
    const { inspectModel } = await import('../model/inspect.js');
    const { loadModelSpec } = await import('../model/spec-file.js');
    const spec = await loadModelSpec(modelPath).catch(() => undefined);
    const report = await inspectModel(modelPath, spec);
    if (opts.json) return print(report);
    const symbolic = report.input.dims.filter((d) => typeof d === 'string');
    const probe = symbolic.length ? `; shapes below are for one image (${symbolic.map((d) => `${d} = 1`).join(', ')})` : '';
    console.log(
      `input ${report.input.name} [${report.input.dims.join(', ')}]${probe}${spec ? '' : ' (no spec file: probed with symbolic dimensions set to 1)'}`,
    );
    const width = Math.max(...report.tensors.map((t) => t.name.length), 4);
    console.log(`${'name'.padEnd(width)}  ${'op'.padEnd(22)} ${'shape'.padEnd(20)} size`);
    for (const t of report.tensors) console.log(`${t.name.padEnd(width)}  ${t.opType.padEnd(22)} ${`[${t.shape.join(',')}]`.padEnd(20)} ${t.size}`);
  });
addSpecOptions(
  model
    .command('init <model>')
    .description("write the model's spec (<model>.spec.json) from its graph and a probe run; the flags give what the graph cannot say")
    .option('--force', 'replace a spec file that exists')
    .option('--json', 'print the spec as JSON instead of a summary'),
).action(async (modelPath: string, o: Record<string, string | number | boolean | undefined>) => {
  const { proposeSpec } = await import('../model/spec-init.js');
  const { specFileCandidates } = await import('../model/spec-file.js');
  const target = specFileCandidates(modelPath)[0];
  if (
    !o.force &&
    (await fs.stat(target).then(
      () => true,
      () => false,
    ))
  ) {
    throw new UserError('bad_model_spec', `${target} exists: give --force to replace it`);
  }
  const { spec, sources } = await proposeSpec(modelPath, (await specOverrides(o)) as never);
  await fs.writeFile(target, JSON.stringify(spec, null, 2) + '\n');
  if (o.json) return print(spec);
  console.log(`wrote ${target}:`);
  for (const [key, value] of Object.entries(spec)) {
    const shown = Array.isArray(value) && value.length > 6 ? `[${value.slice(0, 5).join(', ')}, … ${value.length} in all]` : JSON.stringify(value);
    console.log(`  ${key.padEnd(13)} ${shown.padEnd(34)} ${sources[key as keyof typeof sources]}`);
  }
  const assumed = Object.values(sources).filter((s) => s.startsWith('assumed')).length;
  if (assumed)
    console.log(`${assumed} field(s) are assumed: check them against how the model was trained, then \`cachet model inspect ${modelPath}\` for key layers`);
});

program
  .command('index <cache> <source>')
  .description('add labelled images to a cache: a folder (one subfolder per class) or a .csv/.jsonl manifest (path,label[,id])')
  .option('--flip', 'also add each image mirrored left-right, as the paper does')
  .addOption(
    new Option(
      '--id-from <what>',
      "the ids of images the source names none: content, the sha256 of the image bytes (a different image never takes an item's place), or path, e.g. cat/0001.jpg",
    )
      .choices(['content', 'path'])
      .default('content'),
  )
  .option('--detach', 'print the job and return without waiting')
  .option('--json', 'print the finished job as JSON instead of a summary')
  .addOption(urlOption())
  .action(async (name: string, source: string, o: { flip?: boolean; idFrom: 'content' | 'path'; detach?: boolean; json?: boolean; url: string }) => {
    const api = client(o);
    const body = { source: sourceOf(source, o.idFrom), flip: Boolean(o.flip) };
    const job = await api.request<JobView>('POST', `/v1/caches/${encodeURIComponent(name)}/index-jobs`, body);
    if (o.detach) return print(job);
    const done = await followJob(api, job, 'indexing');
    const r = done.result as IndexJobResult;
    if (o.json) return print(done);
    console.log(`added ${r.added} items (${r.duplicates} already present, ${r.failed} failed); cache ${name} holds ${r.cacheSize}`);
    for (const e of done.errors.slice(0, 10)) console.log(`  ✗ ${e.id}: ${e.error}`);
    if (done.errorCount > 10) console.log(`  … and ${done.errorCount - 10} more (GET /v1/jobs/${done.id} lists them)`);
  });

program
  .command('predict <cache> <images...>')
  .description('classify image files with the cache model')
  .option('--top-k <k>', 'classes to show', int, 5)
  .option('--neighbours <n>', 'nearest cached items to show', int, 0)
  .option('--theta <θ>', 'override θ', num)
  .option('--lambda <λ>', 'override λ', num)
  .option('--json', 'print the JSON response instead of a table')
  .addOption(urlOption())
  .action(async (name: string, files: string[], o: { topK: number; neighbours: number; theta?: number; lambda?: number; json?: boolean; url: string }) => {
    const images = await Promise.all(files.map(async (f) => (await fs.readFile(f)).toString('base64')));
    const r = await client(o).request<PredictResponse>('POST', `/v1/caches/${encodeURIComponent(name)}/predict`, {
      images,
      topK: o.topK,
      neighbours: o.neighbours,
      theta: o.theta,
      lambda: o.lambda,
    });
    if (o.json) return print({ ...r, predictions: r.predictions.map((p, i) => ({ file: files[i], ...(p as object) })) });
    console.log(`cache ${r.cache} (${r.cacheSize} items), θ=${r.theta}, λ=${r.lambda}`);
    r.predictions.forEach((p, i) => printPrediction(files[i], p));
  });

program
  .command('eval <cache> <source>')
  .description('top-1 error of the model alone, the cache model and the cache alone (λ=1) on labelled images')
  .option('--theta <θ>', "θ (default: the cache's)", num)
  .option('--lambda <λ>', "λ (default: the cache's)", num)
  .option('--compare <cache>', 'also classify with another cache (e.g. an hnsw twin) and report top-1 agreement')
  .option('--sizes <fractions>', 'also the error with random subsets of the cache, e.g. 0.1,0.25,0.5,1', (v: string) => v.split(',').map(Number))
  .option('--json', 'print only the JSON result')
  .addOption(urlOption())
  .action(async (name: string, source: string, o: { theta?: number; lambda?: number; compare?: string; sizes?: number[]; json?: boolean; url: string }) => {
    const api = client(o);
    const body = { source: sourceOf(source), theta: o.theta, lambda: o.lambda, compareWith: o.compare, cacheSizes: o.sizes };
    const job = await api.request<JobView>('POST', `/v1/caches/${encodeURIComponent(name)}/eval-jobs`, body);
    const done = await followJob(api, job, 'evaluating');
    const r = done.result as EvalJobResult;
    if (o.json) return print(r);
    const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
    console.log(`${r.images} images, cache of ${r.cacheSize} items, θ=${r.theta}, λ=${r.lambda}`);
    console.log(`top-1 error: model ${pct(r.error.model)}, cache model ${pct(r.error.cacheModel)}, cache alone ${pct(r.error.cacheOnly)}`);
    console.log(`top-5 error: model ${pct(r.top5Error.model)}, cache model ${pct(r.top5Error.cacheModel)}, cache alone ${pct(r.top5Error.cacheOnly)}`);
    if (r.compare) {
      const c = r.compare;
      console.log(
        `${c.cache} (${c.cacheSize} items): cache model ${pct(c.error.cacheModel)}, cache alone ${pct(c.error.cacheOnly)}; top-1 agreement ${pct(c.agreement.cacheModel)}`,
      );
    }
  });

program
  .command('tune <cache> <source>')
  .description("choose θ and λ on labelled validation images (the paper's grid by default); stores them unless --dry-run")
  .option('--flip', "also score each image's mirror image, as the paper's validation set does")
  .option('--theta <grid>', 'θ values "a,b,c" or "from:to:steps" (default 10:90:33)', axisArg)
  .option('--lambda <grid>', 'λ values "a,b,c" or "from:to:steps" (default 0.1:0.9:33)', axisArg)
  .option('--k <list>', 'k values "a,b,c" to try (default 10,20,50,100,200 and the cache\'s k)', (v: string) => v.split(',').map(Number))
  .option('--dry-run', 'report the best θ, λ and k without storing them')
  .option('--report-dir <dir>', 'where to write the report (Markdown, SVG heatmap, JSON)', 'reports')
  .option('--json', 'print only the JSON result')
  .addOption(urlOption())
  .action(
    async (
      name: string,
      source: string,
      o: { flip?: boolean; theta?: Axis; lambda?: Axis; k?: number[]; dryRun?: boolean; reportDir: string; json?: boolean; url: string },
    ) => {
      const api = client(o);
      const body = { source: sourceOf(source), flip: Boolean(o.flip), theta: o.theta, lambda: o.lambda, k: o.k, dryRun: Boolean(o.dryRun) };
      const job = await api.request<JobView>('POST', `/v1/caches/${encodeURIComponent(name)}/tune-jobs`, body);
      const done = await followJob(api, job, 'extracting keys and neighbours');
      const r = done.result as TuneResult;
      const dir = await writeJobReports(api, o.url, done, path.join(o.reportDir, `${name}-tune-${done.id.slice(0, 8)}`), [
        ['md', 'report.md'],
        ['svg', 'heatmap.svg'],
      ]);
      if (o.json) return print(r);
      const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
      console.log(
        `${r.images} validation images, grid ${r.ks ? `${r.ks.length} k × ` : ''}${r.thetas.length} θ × ${r.lambdas.length} λ, p_cache over each image's ${r.k} nearest items (${r.seconds.extract} s, of which scoring the grid ${r.seconds.grid} s beside the model and the search)`,
      );
      console.log(
        `best θ=${r.best.theta}, λ=${r.best.lambda}${r.ks ? `, k=${r.k} (of ${r.ks.join(', ')})` : ''}: accuracy ${pct(r.best.accuracy)} (model alone ${pct(r.model.accuracy)}; before: θ=${r.previous.theta}, λ=${r.previous.lambda})`,
      );
      console.log(r.applied ? `stored in cache ${name} (the previous θ and λ are in its history)` : 'dry run: nothing stored');
      console.log(`report: ${path.relative(process.cwd(), dir)}/report.md`);
    },
  );

/** One image's prediction for a person: the top classes with p, p_model, p_cache; its neighbours. */
function printPrediction(file: string, p: PredictResponse['predictions'][number]): void {
  const f = (x: number | null) => (x === null ? '     —' : x.toFixed(4));
  const width = Math.max(5, ...p.top.map((t) => t.class.length));
  console.log(`\n${file}`);
  console.log(`  ${'class'.padEnd(width)}  p       p_model p_cache`);
  for (const t of p.top) console.log(`  ${t.class.padEnd(width)}  ${f(t.p)}  ${f(t.pModel)}  ${f(t.pCache)}`);
  for (const n of p.neighbours) console.log(`  neighbour ${n.id} (${n.class}), similarity ${n.similarity.toFixed(4)}`);
}

type Axis = number[] | { from: number; to: number; steps: number };
/** "a,b,c" or "from:to:steps" */
function axisArg(v: string): Axis {
  const range = v.split(':').map(Number);
  if (range.length === 3 && range.every(Number.isFinite)) return { from: range[0], to: range[1], steps: range[2] };
  const list = v.split(',').map(Number);
  if (list.length > 0 && list.every(Number.isFinite)) return list;
  throw new InvalidArgumentError('give values "a,b,c" or a range "from:to:steps"');
}

registerCacheCommands(program);
for (const register of [(await import('./layers.js')).registerLayersCommand, (await import('./robustness.js')).registerRobustnessCommand]) register(program);

const allCommands = (c: Command): Command[] => c.commands.flatMap((sub) => [sub, ...allCommands(sub)]);
for (const command of allCommands(program)) {
  if (command.options.some((o) => o.long === '--url')) command.addOption(apiKeyOption());
}

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ApiError || err instanceof UserError) {
    console.error(`cachet: ${err.message}`);
    process.exit(err instanceof ApiError && err.status === 0 ? 3 : 2);
  }
  // a file the user named (ENOENT, EACCES, EISDIR…): one line saying which, as for every other error
  const fsErr = err as NodeJS.ErrnoException;
  if (typeof fsErr?.code === 'string' && fsErr.code.startsWith('E') && fsErr.path) {
    const why = { ENOENT: 'no such file', EACCES: 'permission denied', EISDIR: 'a folder, not a file' }[fsErr.code] ?? fsErr.code;
    console.error(`cachet: ${fsErr.path}: ${why}`);
    process.exit(2);
  }
  if (err instanceof TypeError && err.message === 'fetch failed') {
    console.error(
      `cachet: cannot reach the Cachet service (${String((err as { cause?: unknown }).cause ?? err.message)}): start it with \`cachet serve\` or pass --url`,
    );
    process.exit(3);
  }
  console.error(err);
  process.exit(1);
});
