// `cachet robustness <cache> <source>`: a robustness job on the service (either mode), followed
// with a progress bar; its reports (Markdown, SVG, PNG, JSON) written to a folder.
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { JobView } from '../jobs/types.js';
import type { RobustnessResult } from '../robustness/result.js';
import { list, nonNegativeInt, num, positiveInt } from './args.js';
import { client, print, sourceOf, urlOption, writeJobReports } from './common.js';
import { followJob } from './progress.js';

/** "8/255,0.03": fractions of the pixel range, as a/b or decimals. */
const epsilons = (v: string) =>
  list(v).map((e) => {
    const [a, b = '1'] = e.split('/');
    const x = Number(a) / Number(b);
    if (!Number.isFinite(x) || x <= 0 || x > 1) throw new InvalidArgumentError(`"${e}" is not an ε in (0, 1]: give e.g. 8/255 or 0.03`);
    return x;
  });

interface RobustnessCliOptions {
  perClass?: number;
  corruptions?: string[];
  severities?: number[];
  attacks?: string[];
  epsilons?: number[];
  queries?: number;
  pInit?: number;
  seed?: number;
  maxSeconds?: number;
  theta?: number;
  lambda?: number;
  reportDir: string;
  json?: boolean;
  url: string;
  apiKey?: string;
}

export function registerRobustnessCommand(program: Command): void {
  program
    .command('robustness <cache> <source>')
    .description(
      'top-1 error of the model alone, the cache model and the cache alone under natural corruptions, a transfer attack and adaptive attacks (Square Attack, L∞)',
    )
    .option('--per-class <n>', "use the source's first n images of each class (e.g. 50 of val-5k: 500 images)", positiveInt)
    .option('--corruptions <names>', 'gaussian_noise,gaussian_blur,contrast,brightness,jpeg_compression,pixelate (default all; "none" for none)', list)
    .option('--severities <list>', 'of 1…5 (default all)', (v: string) => list(v).map(Number))
    .option('--attacks <names>', 'transfer,adaptive,adaptive_cache_alone (default all; "none" for none)', list)
    .option('--epsilons <list>', 'L∞ radii, e.g. 2/255,4/255,8/255 (default 8/255)', epsilons)
    .option('--queries <n>', 'queries per image per attack, at most (default 200)', positiveInt)
    .option('--p-init <p>', "Square Attack's initial window fraction (default 0.05)", num)
    .option('--seed <n>', 'seed of the noise and the attacks (default 0)', nonNegativeInt)
    .option('--max-seconds <s>', 'time budget of the job; the attacks share what the corruptions leave (default 3600)', num)
    .option('--theta <θ>', "θ (default: the cache's)", num)
    .option('--lambda <λ>', "λ (default: the cache's)", num)
    .option('--report-dir <dir>', 'where to write the report (Markdown, SVG, PNG, JSON)', 'reports')
    .option('--json', 'print only the JSON result')
    .addOption(urlOption())
    .action(async (name: string, source: string, o: RobustnessCliOptions) => {
      const api = client(o);
      const none = (v?: string[]) => (v?.length === 1 && v[0] === 'none' ? [] : v);
      const body = {
        source: sourceOf(source),
        perClass: o.perClass,
        corruptions: none(o.corruptions),
        severities: o.severities,
        attacks: none(o.attacks),
        epsilons: o.epsilons,
        queries: o.queries,
        pInit: o.pInit,
        seed: o.seed,
        maxSeconds: o.maxSeconds,
        theta: o.theta,
        lambda: o.lambda,
      };
      const job = await api.request<JobView>('POST', `/v1/caches/${encodeURIComponent(name)}/robustness-jobs`, body);
      const done = await followJob(api, job, 'corrupting and attacking');
      const r = done.result as RobustnessResult;
      const dir = await writeJobReports(api, o.url, done, path.join(o.reportDir, `${name}-robustness-${done.id.slice(0, 8)}`), [
        ['md', 'report.md'],
        ['svg', 'robustness.svg'],
        ['png', 'robustness.png'],
      ]);
      if (o.json) return print(r);
      const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)} %` : '—');
      const three = (e: RobustnessResult['clean']) => `model ${pct(e.model)}, cache model ${pct(e.cacheModel)}, cache alone ${pct(e.cacheOnly)}`;
      console.log(`${r.images} images, cache of ${r.cacheSize} items, θ=${r.theta}, λ=${r.lambda}, seed ${r.seed}, ${r.seconds.toFixed(0)} s`);
      console.log(`clean: ${three(r.clean)}`);
      for (const c of r.corruptions) {
        const worst = c.severities[c.severities.length - 1];
        console.log(`${c.name} (severity ${worst.severity}): ${three(worst.error)}`);
      }
      for (const a of r.attacks)
        console.log(
          `${a.name} attack, ε=${+(a.epsilon * 255).toFixed(2)}/255: ${three(a.error)}; success ${pct(a.successRate)} of ${a.attacked}${a.stoppedBy ? ' (out of time)' : ''}`,
        );
      console.log(`report: ${path.relative(process.cwd(), dir)}/report.md`);
    });
}
