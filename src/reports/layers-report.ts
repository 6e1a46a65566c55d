// The layer advisor's report: a ranked table (Markdown) and the error by layer (SVG bars).
import { LayerScore, LayerAdvice } from '../advisor/advice.js';
import { colourAt, escapeXml, px } from './svg.js';

const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
const name = (s: LayerScore) => s.layers.join(' + ');

export function layersMarkdown(a: LayerAdvice): string {
  const L = [`# Key layers for \`${a.model}\``, ''];
  L.push(
    `${a.cacheItems} cache items (${a.trainImages} train images${a.flip ? ' with flips' : ''}), ${a.valImages} validation images; θ × λ grid ${a.thetas.length} × ${a.lambdas.length}; the model alone errs on ${pct(a.modelError)}.`,
    '',
  );
  const r = a.recommendation;
  const interval = (s: LayerScore) => (s.interval ? `${pct(s.interval[0])} – ${pct(s.interval[1])}` : '—');
  L.push(
    `**Recommendation:** \`--layers ${r.layers.join(',')}\` (${r.dimension} dimensions, θ = ${r.theta}, λ = ${r.lambda}): ${pct(r.error)} validation error at the ${a.cacheItems} items scored (95 % bootstrap interval ${interval(r)}); recommended for a cache of ${a.forCacheSize?.cacheSize ?? a.cacheItems} items.`,
    '',
  );
  const f = a.forCacheSize;
  if (f) {
    L.push(
      `This is the advice **for a cache of ${f.cacheSize} items**, more than the ${a.cacheItems} scored: ${f.method}. Small caches favour compact late layers, large ones larger inner keys, so the order can change with the size.`,
      '',
    );
    L.push('| key layer(s) | dims | error at ' + f.cacheSize + ' items (extrapolated) | measured |', '|---|---:|---:|---|');
    for (const k of f.ranking)
      L.push(`| ${k.layers.join(' + ')} | ${k.dimension} | ${pct(k.error)} | ${k.curve.map((c) => `${pct(c.error)} at ${c.items}`).join(', ')} |`);
    L.push('');
  }
  const tied = a.ranking.filter((s) => s.tied);
  if (a.ranking[0].interval) {
    L.push(
      tied.length
        ? `At ${a.cacheItems} items, ${tied.length} key(s) are **tied** with the best: their intervals overlap its, so these ${a.valImages} validation images cannot tell them apart; prefer the smaller or cheaper one, or score on more images.`
        : `At ${a.cacheItems} items, no other key's interval overlaps the best one's: on these ${a.valImages} validation images it is the best.`,
      '',
    );
  }
  for (const same of a.sameKeys ?? []) L.push(`- ${same.sameAs.map((x) => `\`${x}\``).join(', ')}: the same values as \`${same.layer}\`, scored once.`);
  if (a.search) L.push(`- Concatenations: ${a.search}.`);
  L.push('');
  L.push('![validation error by key layer](by-layer.svg)', '');
  L.push('| rank | key layer(s) | dims | cache model | 95 % interval | cache alone | θ | λ | |', '|---:|---|---:|---:|---:|---:|---:|---:|---|');
  a.ranking.forEach((s, i) =>
    L.push(
      `| ${i + 1} | ${name(s)} | ${s.dimension} | ${pct(s.error)} | ${interval(s)} | ${pct(s.cacheOnlyError)} | ${s.theta} | ${s.lambda} | ${s === r ? 'recommended' : s.tied ? 'tied' : ''} |`,
    ),
  );
  if (a.tooLarge.length) {
    L.push('', '## Not scored', '');
    for (const t of a.tooLarge) L.push(`- \`${t.layer}\`: ${t.message}`);
  }
  return L.join('\n') + '\n';
}

/** Horizontal bars: the cache model's and the cache alone's validation error for each key, best first. */
export function layersSvg(a: LayerAdvice): string {
  const rows = a.ranking;
  const labels = rows.map((s) => `${name(s)} (${s.dimension})`);
  // room for the longest label (~6.6 px a character at 12 px sans-serif)
  const left = Math.max(160, 16 + Math.ceil(6.6 * Math.max(0, ...labels.map((l) => l.length))));
  const right = 80,
    top = 56,
    bar = 9,
    gap = 8;
  const W = left + 440 + right;
  const H = top + rows.length * (2 * bar + gap) + 48;
  const max = Math.max(a.modelError, ...rows.flatMap((s) => [s.error, s.cacheOnlyError]).filter(Number.isFinite)) * 1.05 || 1;
  const X = (e: number) => left + (e / max) * (W - left - right);
  const cacheModel = colourAt(0.25),
    cacheAlone = colourAt(0.75);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`];
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Validation error by key layer</text>`);
  out.push(`<rect x="${left}" y="32" width="10" height="10" fill="${cacheModel}"/><text x="${left + 14}" y="41">cache model</text>`);
  out.push(`<rect x="${left + 110}" y="32" width="10" height="10" fill="${cacheAlone}"/><text x="${left + 124}" y="41">cache alone</text>`);
  rows.forEach((s, i) => {
    const y = top + i * (2 * bar + gap);
    out.push(`<text x="${left - 8}" y="${px(y + bar + 4)}" text-anchor="end">${escapeXml(labels[i])}</text>`);
    out.push(
      `<rect x="${left}" y="${y}" width="${px(X(s.error) - left)}" height="${bar}" fill="${cacheModel}"><title>${escapeXml(`${name(s)}: cache model ${pct(s.error)}`)}</title></rect>`,
    );
    out.push(`<text x="${px(X(s.error) + 4)}" y="${y + bar - 1}" font-size="10">${pct(s.error)}</text>`);
    out.push(
      `<rect x="${left}" y="${y + bar}" width="${px(X(s.cacheOnlyError) - left)}" height="${bar}" fill="${cacheAlone}"><title>${escapeXml(`${name(s)}: cache alone ${pct(s.cacheOnlyError)}`)}</title></rect>`,
    );
  });
  const xm = X(a.modelError),
    bottom = top + rows.length * (2 * bar + gap);
  out.push(`<line x1="${px(xm)}" x2="${px(xm)}" y1="${top - 4}" y2="${bottom}" stroke="#d62728" stroke-dasharray="4 3"/>`);
  out.push(`<text x="${px(xm)}" y="${bottom + 16}" text-anchor="middle" fill="#d62728">model alone ${pct(a.modelError)}</text>`);
  out.push(`<text x="${(left + W - right) / 2}" y="${H - 8}" text-anchor="middle">top-1 validation error</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
