// The robustness job's report for people: the three errors on clean images, under each
// corruption and severity and under each attack, and a chart of error against severity and ε.
import { ATTACK_NAMES, type RobustnessResult } from '../robustness/result.js';
import { chartGridSvg, lineChartSvg } from './line-chart.js';

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)} %` : '—');
const eps255 = (e: number) => `${+(e * 255).toFixed(2)}/255`;
const ATTACK_TITLES = {
  transfer: 'transfer (crafted against the model alone)',
  adaptive: 'adaptive (crafted against the cache model)',
  adaptive_cache_alone: 'adaptive (crafted against the cache alone)',
} as const;

export function robustnessMarkdown(r: RobustnessResult): string {
  const L: string[] = [];
  L.push(`# Robustness of cache \`${r.cache}\``, '');
  L.push(
    `${r.images} labelled images (${r.failed} could not be read), a cache of ${r.cacheSize} items, θ = ${r.theta}, λ = ${r.lambda}, seed ${r.seed}; ${r.seconds.toFixed(0)} s.`,
    '',
    '![top-1 error under corruptions and attacks](robustness.svg)',
    '',
    '| images | model alone | cache model | cache alone |',
    '|---|---:|---:|---:|',
    `| clean | ${pct(r.clean.model)} | ${pct(r.clean.cacheModel)} | ${pct(r.clean.cacheOnly)} |`,
    '',
  );
  if (r.corruptions.length) {
    L.push(
      '## Natural corruptions (top-1 error)',
      '',
      "Made from each image at the model's input size, in the spirit of CIFAR-10-C (same families and, at 32 pixels, the same parameters).",
      '',
      '| corruption | severity | value | model alone | cache model | cache alone |',
      '|---|---:|---:|---:|---:|---:|',
    );
    for (const c of r.corruptions)
      for (const s of c.severities)
        L.push(`| ${c.name} | ${s.severity} | ${s.value} | ${pct(s.error.model)} | ${pct(s.error.cacheModel)} | ${pct(s.error.cacheOnly)} |`);
    const all = r.corruptions.flatMap((c) => c.severities.map((s) => s.error));
    const avg = (k: 'model' | 'cacheModel' | 'cacheOnly') => all.reduce((a, e) => a + e[k], 0) / all.length;
    L.push(`| **mean** | | | **${pct(avg('model'))}** | **${pct(avg('cacheModel'))}** | **${pct(avg('cacheOnly'))}** |`, '');
    L.push('Parameters: ' + r.corruptions.map((c) => `${c.name}: ${c.parameter}`).join('; ') + '.', '');
  }
  if (r.attacks.length) {
    L.push(
      `## Attacks: ${r.attack.method}, L∞, at most ${r.attack.queryBudget} queries per image (p_init ${r.attack.pInit})`,
      '',
      r.attack.note,
      '',
      '| attack | ε | model alone | cache model | cache alone | success rate | median queries per fooled image | stopped by |',
      '|---|---:|---:|---:|---:|---:|---:|---|',
    );
    for (const a of r.attacks)
      L.push(
        `| ${ATTACK_TITLES[a.name]} | ${eps255(a.epsilon)} | ${pct(a.error.model)} | ${pct(a.error.cacheModel)} | ${pct(a.error.cacheOnly)} | ${pct(a.successRate)} (${a.fooled}/${a.attacked}) | ${Number.isFinite(a.queries.medianPerFooled) ? a.queries.medianPerFooled : '—'} | ${a.stoppedBy ?? '—'} |`,
      );
    L.push('', 'The success rate counts the images the attacked classifier got right before the attack.', '');
  }
  return L.join('\n') + '\n';
}

/** One chart per corruption (error against severity, 0 = clean) and per attack (error against ε). */
export function robustnessSvg(r: RobustnessResult): string {
  const three = (points: { x: number; error: RobustnessResult['clean'] }[]) => [
    { name: 'model alone', points: points.map((p): [number, number] => [p.x, p.error.model]) },
    { name: 'cache model', points: points.map((p): [number, number] => [p.x, p.error.cacheModel]) },
    { name: 'cache alone', points: points.map((p): [number, number] => [p.x, p.error.cacheOnly]) },
  ];
  const yFormat = (y: number) => `${(100 * y).toFixed(0)} %`;
  const charts = r.corruptions.map((c) =>
    lineChartSvg({
      title: c.name.replace(/_/g, ' '),
      xLabel: 'severity (0 = clean)',
      yLabel: 'top-1 error',
      yFormat,
      series: three([{ x: 0, error: r.clean }, ...c.severities.map((s) => ({ x: s.severity, error: s.error }))]),
    }),
  );
  for (const name of ATTACK_NAMES) {
    const runs = r.attacks.filter((a) => a.name === name).sort((a, b) => a.epsilon - b.epsilon);
    if (!runs.length) continue;
    charts.push(
      lineChartSvg({
        title: ATTACK_TITLES[name],
        xLabel: 'ε (× 1/255; 0 = clean)',
        yLabel: 'top-1 error',
        yFormat,
        series: three([{ x: 0, error: r.clean }, ...runs.map((a) => ({ x: +(a.epsilon * 255).toFixed(2), error: a.error }))]),
      }),
    );
  }
  if (!charts.length)
    charts.push(lineChartSvg({ title: 'clean images only', xLabel: '', yLabel: 'top-1 error', yFormat, series: three([{ x: 0, error: r.clean }]) }));
  return chartGridSvg(charts, 3);
}
