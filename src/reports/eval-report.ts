// The eval job's report for people: errors of the model, the cache model and the cache
// alone, top-1 and top-5, per class, and the comparison with another cache if asked.
import { EvalJobResult } from '../jobs/results.js';
import { lineChartSvg } from './line-chart.js';

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(2)} %` : '—');

export function evalMarkdown(r: EvalJobResult): string {
  const L: string[] = [];
  L.push(`# Evaluation of cache \`${r.cache}\``, '');
  L.push(`${r.images} labelled images (${r.failed} could not be read), a cache of ${r.cacheSize} items, θ = ${r.theta}, λ = ${r.lambda}.`, '');
  L.push('| | model alone | cache model | cache alone |', '|---|---:|---:|---:|');
  L.push(`| top-1 error | ${pct(r.error.model)} | ${pct(r.error.cacheModel)} | ${pct(r.error.cacheOnly)} |`);
  L.push(`| top-5 error | ${pct(r.top5Error.model)} | ${pct(r.top5Error.cacheModel)} | ${pct(r.top5Error.cacheOnly)} |`, '');
  const gain = r.error.model - r.error.cacheModel;
  L.push(
    `The cache model ${gain >= 0 ? 'removes' : 'adds'} ${(100 * Math.abs(gain)).toFixed(2)} points of top-1 error${r.error.model > 0 ? ` (${((100 * gain) / r.error.model).toFixed(1)} % of the model's errors)` : ''}.`,
    '',
  );
  if (r.compare) {
    const c = r.compare;
    L.push(`## Against cache \`${c.cache}\` (${c.cacheSize} items), same images`, '');
    L.push(
      `Top-1 error: cache model ${pct(c.error.cacheModel)}, cache alone ${pct(c.error.cacheOnly)}; the two caches agree on the top-1 class of ${pct(c.agreement.cacheModel)} of the images (cache model) and ${pct(c.agreement.cacheOnly)} (cache alone).`,
      '',
    );
  }
  if (r.bySize) {
    L.push(
      '## Error against cache size (random subsets of the cache)',
      '',
      '![error against cache size](by-size.svg)',
      '',
      '| fraction | items | cache model | cache alone |',
      '|---:|---:|---:|---:|',
    );
    for (const b of r.bySize) L.push(`| ${b.fraction} | ${b.items} | ${pct(b.error.cacheModel)} | ${pct(b.error.cacheOnly)} |`);
    L.push('');
  }
  L.push('## Per class (top-1 error)', '', '| class | images | model alone | cache model | cache alone |', '|---|---:|---:|---:|---:|');
  for (const c of r.perClass) L.push(`| ${c.class} | ${c.images} | ${pct(c.error.model)} | ${pct(c.error.cacheModel)} | ${pct(c.error.cacheOnly)} |`);
  return L.join('\n') + '\n';
}

/** The error against cache size (cache model and cache alone), or null if the job did not measure it. */
export function evalBySizeSvg(r: EvalJobResult): string | null {
  if (!r.bySize) return null;
  return lineChartSvg({
    title: `Top-1 error against cache size, cache ${r.cache}`,
    xLabel: 'items in the cache',
    yLabel: 'top-1 error',
    yFormat: (y) => `${(100 * y).toFixed(1)} %`,
    series: [
      { name: 'cache model', points: r.bySize.map((b) => [b.items, b.error.cacheModel]) },
      { name: 'cache alone', points: r.bySize.map((b) => [b.items, b.error.cacheOnly]) },
      { name: 'model alone', points: r.bySize.map((b) => [b.items, r.error.model]) },
    ],
  });
}
