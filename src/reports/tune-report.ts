// The report of a tune job: a Markdown summary and a θ × λ accuracy heatmap (hand-written SVG).
import { TuneResult } from '../jobs/results.js';
import { escapeXml, fmtNum, fmtPct, px, sequentialScale, tickIndices, colourAt } from './svg.js';

/** The index of v in a grid axis (exact, else equal to ~1e-9 relative), or −1. */
export function gridIndex(axis: readonly number[], v: number): number {
  const exact = axis.indexOf(v);
  if (exact >= 0) return exact;
  return axis.findIndex((a) => Math.abs(a - v) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(v)));
}

export interface GridPoint {
  i: number;
  j: number;
  theta: number;
  lambda: number;
  accuracy: number;
  logLoss: number;
}

/** All finite grid points, best first: accuracy descending, then log-loss ascending, then smaller θ, λ. */
export function rankedGrid(r: TuneResult): GridPoint[] {
  const points: GridPoint[] = [];
  r.thetas.forEach((theta, i) =>
    r.lambdas.forEach((lambda, j) => {
      const accuracy = r.accuracy[i]?.[j];
      const logLoss = r.logLoss[i]?.[j];
      if (accuracy !== undefined && Number.isFinite(accuracy)) points.push({ i, j, theta, lambda, accuracy, logLoss: logLoss ?? NaN });
    }),
  );
  const ll = (x: number) => (Number.isFinite(x) ? x : Infinity);
  return points.sort((a, b) => b.accuracy - a.accuracy || ll(a.logLoss) - ll(b.logLoss) || a.theta - b.theta || a.lambda - b.lambda);
}

// ---------------------------------------------------------------- Markdown

/** A Markdown code span that survives backticks in the content. */
function code(s: string): string {
  const longest = Math.max(0, ...(s.match(/`+/g) ?? []).map((m) => m.length));
  const fence = '`'.repeat(longest + 1);
  return longest > 0 || s.startsWith('`') || s.endsWith('`') ? `${fence} ${s} ${fence}` : `${fence}${s}${fence}`;
}

/** A POSIX-shell word: bare when safe, else single-quoted. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_.,:=@%+/-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The exact `cachet cache set` command for θ, λ (full precision: this is what gets typed). */
export function setCommand(cache: string, theta: number, lambda: number): string {
  return `cachet cache set ${shellWord(cache)} --theta ${theta} --lambda ${lambda}`;
}

function fmtLoss(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(4);
}

function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return '—';
  if (s < 60) return `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  const rest = Math.round(s - m * 60);
  return `${m} min ${String(rest).padStart(2, '0')} s`;
}

/** "error 8.77% → 7.12% (−1.65 points, −18.8% relative)". */
function errorChange(fromAcc: number, toAcc: number): string {
  const e0 = 1 - fromAcc;
  const e1 = 1 - toAcc;
  const points = (e1 - e0) * 100;
  const sign = points > 0 ? '+' : points < 0 ? '−' : '±';
  const rel = e0 > 0 ? `, ${sign}${Math.abs(((e1 - e0) / e0) * 100).toFixed(1)}% relative` : '';
  return `error ${fmtPct(e0)} → ${fmtPct(e1)} (${sign}${Math.abs(points).toFixed(2)} points${rel})`;
}

function range(axis: readonly number[]): string {
  if (axis.length === 0) return 'none';
  const lo = Math.min(...axis);
  const hi = Math.max(...axis);
  return lo === hi ? fmtNum(lo) : `${fmtNum(lo)} … ${fmtNum(hi)}`;
}

export function tuneMarkdown(r: TuneResult): string {
  const L: string[] = [];
  const name = code(r.cache);
  const nT = r.thetas.length;
  const nL = r.lambdas.length;
  const onePoint = r.images > 0 ? fmtPct(1 / r.images, 3) : '—';
  const prevOnGrid = gridIndex(r.thetas, r.previous.theta) >= 0 && gridIndex(r.lambdas, r.previous.lambda) >= 0;

  L.push(`# Tune report: cache ${name}`, '');
  L.push(
    `Tuned θ (the sharpness of p_cache ∝ Σ exp(θ·similarity)) and λ (the weight of p_cache in p = (1 − λ)·p_model + λ·p_cache) ` +
      `of cache ${name} on **${r.images}** validation images, each query's p_cache summed over its **${r.k}** nearest neighbours. ` +
      `Grid: ${nT} θ (${range(r.thetas)}) × ${nL} λ (${range(r.lambdas)}) = ${nT * nL} points. ` +
      `One image is ${onePoint} of accuracy, so differences that small are a single flip.`,
    '',
  );
  L.push(
    r.applied
      ? `**Applied:** the cache now uses θ = ${r.best.theta}, λ = ${r.best.lambda}${r.ks ? `, k = ${r.k}` : ''} (was θ = ${r.previous.theta}, λ = ${r.previous.lambda}).`
      : `**Dry run:** nothing was changed; the cache still uses θ = ${r.previous.theta}, λ = ${r.previous.lambda}.`,
    '',
  );

  L.push('## Result', '');
  L.push('| | θ | λ | accuracy | error | log-loss |', '|---|---:|---:|---:|---:|---:|');
  L.push(`| **chosen** | ${r.best.theta} | ${r.best.lambda} | ${fmtPct(r.best.accuracy)} | ${fmtPct(1 - r.best.accuracy)} | ${fmtLoss(r.best.logLoss)} |`);
  const prevAcc = r.previous.accuracy;
  L.push(
    `| previous | ${r.previous.theta} | ${r.previous.lambda} | ${prevAcc === null ? '—' : fmtPct(prevAcc)} | ${prevAcc === null ? '—' : fmtPct(1 - prevAcc)} | ${
      prevOnGrid ? fmtLoss(r.logLoss[gridIndex(r.thetas, r.previous.theta)]?.[gridIndex(r.lambdas, r.previous.lambda)]) : '—'
    } |`,
  );
  L.push(`| model alone | — | 0 | ${fmtPct(r.model.accuracy)} | ${fmtPct(1 - r.model.accuracy)} | ${fmtLoss(r.model.logLoss)} |`);
  if (r.cacheOnly)
    L.push(`| cache alone | ${r.best.theta} | 1 | ${fmtPct(r.cacheOnly.accuracy)} | ${fmtPct(1 - r.cacheOnly.accuracy)} | ${fmtLoss(r.cacheOnly.logLoss)} |`);
  L.push('');
  L.push(`- Chosen vs the model alone: ${errorChange(r.model.accuracy, r.best.accuracy)}; log-loss ${fmtLoss(r.model.logLoss)} → ${fmtLoss(r.best.logLoss)}.`);
  if (prevAcc === null)
    L.push(
      `- Chosen vs previous: the previous point (θ = ${r.previous.theta}, λ = ${r.previous.lambda}) ${prevOnGrid ? 'was not scored' : 'is not on the grid'}, so its accuracy on these images is unknown.`,
    );
  else L.push(`- Chosen vs previous: ${errorChange(prevAcc, r.best.accuracy)}.`);
  if (!r.cacheOnly) L.push('- Cache alone (λ = 1) was not in the grid.');
  L.push('');

  if (r.byK) {
    L.push('## Neighbours: k', '');
    L.push(
      `p_cache sums over each query's k nearest items. The largest k's neighbours were searched once; each smaller k is scored on their first k (the grid below is at the chosen k = ${r.k}).`,
      '',
    );
    L.push('| k | best θ | best λ | accuracy | error | log-loss | |', '|---:|---:|---:|---:|---:|---:|---|');
    for (const b of r.byK) {
      L.push(
        `| ${b.k} | ${b.theta} | ${b.lambda} | ${fmtPct(b.accuracy)} | ${fmtPct(1 - b.accuracy)} | ${fmtLoss(b.logLoss)} | ${b.k === r.k ? 'chosen' : ''} |`,
      );
    }
    L.push('');
  }

  L.push('## Accuracy over the grid', '', '![θ×λ accuracy](heatmap.svg)', '');
  L.push('The ring marks the chosen point, the dashed square the previous one.', '');

  const top = rankedGrid(r).slice(0, 10);
  L.push(`## Top ${top.length} grid points`, '');
  L.push('| # | θ | λ | accuracy | error | log-loss | |', '|---:|---:|---:|---:|---:|---:|---|');
  top.forEach((p, n) => {
    const tags = [
      p.theta === r.best.theta && p.lambda === r.best.lambda ? 'chosen' : '',
      p.theta === r.previous.theta && p.lambda === r.previous.lambda ? 'previous' : '',
    ].filter(Boolean);
    L.push(`| ${n + 1} | ${p.theta} | ${p.lambda} | ${fmtPct(p.accuracy)} | ${fmtPct(1 - p.accuracy)} | ${fmtLoss(p.logLoss)} | ${tags.join(', ')} |`);
  });
  L.push('');

  L.push('## Timing', '');
  L.push(`- Extracting keys, model outputs and neighbours, each batch scored on the grid as it came: ${fmtSeconds(r.seconds.extract)}`);
  L.push(
    `- of which scoring the grid (beside the model and the search): ${fmtSeconds(r.seconds.grid)}${nT * nL > 0 && Number.isFinite(r.seconds.grid) ? ` (${fmtNum((r.seconds.grid * 1000) / (nT * nL), 3)} ms a point)` : ''}`,
    '',
  );

  L.push('## Roll back', '');
  if (r.applied) {
    L.push('To go back to the previous values:', '', '```sh', setCommand(r.cache, r.previous.theta, r.previous.lambda), '```', '');
  } else {
    L.push(
      'This was a dry run, so there is nothing to roll back. To apply the chosen point:',
      '',
      '```sh',
      setCommand(r.cache, r.best.theta, r.best.lambda),
      '```',
      '',
      'and to go back to the previous values afterwards:',
      '',
      '```sh',
      setCommand(r.cache, r.previous.theta, r.previous.lambda),
      '```',
      '',
    );
  }
  return L.join('\n');
}

// ---------------------------------------------------------------- SVG heatmap

/** Layout of the heatmap, exported so tests (and callers adding overlays) can find a cell. */
export function heatmapLayout(nThetas: number, nLambdas: number) {
  const width = 640;
  const left = 72;
  const right = 96; // colour bar
  const top = 58;
  const plotW = width - left - right;
  const cellW = plotW / Math.max(1, nLambdas);
  const plotH = Math.min(480, Math.max(200, nThetas * Math.min(cellW, 24)));
  const cellH = plotH / Math.max(1, nThetas);
  const bottom = 110; // λ ticks and title, then the legend on two lines
  return {
    width,
    height: top + plotH + bottom,
    left,
    top,
    plotW,
    plotH,
    cellW,
    cellH,
    /** Top-left corner of cell [thetaIndex][lambdaIndex]; θ grows upwards, λ to the right. */
    cell(i: number, j: number) {
      return { x: left + j * cellW, y: top + (nThetas - 1 - i) * cellH };
    },
  };
}

export function tuneHeatmapSvg(r: TuneResult): string {
  const nT = r.thetas.length;
  const nL = r.lambdas.length;
  const g = heatmapLayout(nT, nL);
  const finite = r.accuracy.flat().filter((v) => Number.isFinite(v));
  const min = finite.length ? Math.min(...finite) : 0;
  const max = finite.length ? Math.max(...finite) : 1;
  const colour = sequentialScale(min, max);
  const out: string[] = [];
  const t = (x: number, y: number, s: string, attrs = '') => `<text x="${px(x)}" y="${px(y)}"${attrs ? ' ' + attrs : ''}>${escapeXml(s)}</text>`;

  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${g.width}" height="${px(g.height)}" viewBox="0 0 ${g.width} ${px(g.height)}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
  );
  out.push(`<title>${escapeXml(`θ × λ accuracy for cache ${r.cache}`)}</title>`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);

  // Title and subtitle.
  // Shrink a line that would overflow (a 64-character cache name) rather than clip it
  // (font-size rather than textLength, which some renderers ignore).
  const fit = (s: string, fontSize: number, emPerChar: number) => px(Math.min(fontSize, (g.width - 16) / (Math.max(1, s.length) * emPerChar)));
  const title = `θ × λ accuracy, cache ${r.cache}`;
  out.push(t(g.width / 2, 22, title, `text-anchor="middle" font-size="${fit(title, 15, 0.64)}" font-weight="bold"`));
  const subtitle = `${r.images} validation images, k = ${r.k}; best ${fmtPct(r.best.accuracy)} at θ = ${fmtNum(r.best.theta)}, λ = ${fmtNum(r.best.lambda)}; model alone ${fmtPct(r.model.accuracy)}`;
  out.push(t(g.width / 2, 40, subtitle, `text-anchor="middle" fill="#444444" font-size="${fit(subtitle, 11, 0.56)}"`));

  // Cells.
  out.push(`<g id="cells" shape-rendering="crispEdges">`);
  for (let i = 0; i < nT; i++) {
    for (let j = 0; j < nL; j++) {
      const v = r.accuracy[i]?.[j];
      const ok = v !== undefined && Number.isFinite(v);
      const { x, y } = g.cell(i, j);
      // Overlap by a hair so anti-aliasing leaves no seams between cells.
      out.push(
        `<rect class="cell" data-i="${i}" data-j="${j}" x="${px(x)}" y="${px(y)}" width="${px(g.cellW + 0.3)}" height="${px(g.cellH + 0.3)}" fill="${ok ? colour(v) : '#cccccc'}">` +
          `<title>${escapeXml(`θ = ${r.thetas[i]}, λ = ${r.lambdas[j]}: ${ok ? fmtPct(v) : 'not scored'}`)}</title></rect>`,
      );
    }
  }
  out.push(`</g>`);
  out.push(`<rect x="${g.left}" y="${g.top}" width="${px(g.plotW)}" height="${px(g.plotH)}" fill="none" stroke="#333333" stroke-width="1"/>`);

  // Axes: ticks and labels at cell centres (the grid may be log-spaced, so the axes are categorical).
  const xAxisY = g.top + g.plotH;
  out.push(`<g id="x-axis" text-anchor="middle">`);
  for (const j of tickIndices(nL, Math.floor(g.plotW / 40))) {
    const cx = g.left + (j + 0.5) * g.cellW;
    out.push(`<line x1="${px(cx)}" y1="${px(xAxisY)}" x2="${px(cx)}" y2="${px(xAxisY + 4)}" stroke="#333333"/>`);
    out.push(t(cx, xAxisY + 16, fmtNum(r.lambdas[j], 3)));
  }
  out.push(t(g.left + g.plotW / 2, xAxisY + 36, 'λ', 'class="axis-title" font-size="14" font-style="italic"'));
  out.push(`</g>`);
  out.push(`<g id="y-axis" text-anchor="end">`);
  for (const i of tickIndices(nT, Math.floor(g.plotH / 18))) {
    const cy = g.cell(i, 0).y + g.cellH / 2;
    out.push(`<line x1="${g.left - 4}" y1="${px(cy)}" x2="${g.left}" y2="${px(cy)}" stroke="#333333"/>`);
    out.push(t(g.left - 7, cy + 4, fmtNum(r.thetas[i], 3)));
  }
  const yMid = g.top + g.plotH / 2;
  out.push(t(20, yMid, 'θ', `class="axis-title" text-anchor="middle" font-size="14" font-style="italic" transform="rotate(-90 20 ${px(yMid)})"`));
  out.push(`</g>`);

  // Colour bar, max at the top.
  const barX = g.left + g.plotW + 22;
  const barW = 14;
  out.push(`<defs><linearGradient id="cachet-accuracy-scale" x1="0" y1="1" x2="0" y2="0">`);
  for (let s = 0; s <= 10; s++) out.push(`<stop offset="${s / 10}" stop-color="${colourAt(s / 10)}"/>`);
  out.push(`</linearGradient></defs>`);
  out.push(`<g id="colour-bar">`);
  out.push(
    `<rect x="${px(barX)}" y="${g.top}" width="${barW}" height="${px(g.plotH)}" fill="url(#cachet-accuracy-scale)" stroke="#333333" stroke-width="0.5"/>`,
  );
  out.push(t(barX + barW / 2, g.top - 6, 'accuracy', 'text-anchor="middle" fill="#444444"'));
  out.push(t(barX + barW + 4, g.top + 9, fmtPct(max), 'class="bar-max"'));
  out.push(t(barX + barW + 4, g.top + g.plotH, fmtPct(min), 'class="bar-min"'));
  // Where the model alone sits on the scale: cells below it are worse than no cache.
  if (max > min && r.model.accuracy > min && r.model.accuracy < max) {
    const my = g.top + g.plotH * (1 - (r.model.accuracy - min) / (max - min));
    out.push(`<line x1="${px(barX - 3)}" y1="${px(my)}" x2="${px(barX + barW + 3)}" y2="${px(my)}" stroke="#000000" stroke-width="1.5"/>`);
    if (my > g.top + 24 && my < g.top + g.plotH - 24) {
      out.push(t(barX + barW + 4, my - 2, 'model', 'class="bar-model" fill="#444444"'));
      out.push(t(barX + barW + 4, my + 10, fmtPct(r.model.accuracy), 'fill="#444444"'));
    }
  }
  out.push(`</g>`);

  // Markers.
  const ring = Math.max(4, Math.min(g.cellW, g.cellH) * 0.62);
  const legendY = xAxisY + 62;
  const legend: string[] = [];
  const bi = gridIndex(r.thetas, r.best.theta);
  const bj = gridIndex(r.lambdas, r.best.lambda);
  const pi = gridIndex(r.thetas, r.previous.theta);
  const pj = gridIndex(r.lambdas, r.previous.lambda);
  if (pi >= 0 && pj >= 0) {
    const { x, y } = g.cell(pi, pj);
    const cx = x + g.cellW / 2;
    const cy = y + g.cellH / 2;
    const h = ring;
    out.push(
      `<g id="previous" data-i="${pi}" data-j="${pj}" fill="none">` +
        `<rect x="${px(cx - h)}" y="${px(cy - h)}" width="${px(2 * h)}" height="${px(2 * h)}" stroke="#000000" stroke-width="3"/>` +
        `<rect x="${px(cx - h)}" y="${px(cy - h)}" width="${px(2 * h)}" height="${px(2 * h)}" stroke="#ffffff" stroke-width="1.5" stroke-dasharray="3 2"/></g>`,
    );
  }
  if (bi >= 0 && bj >= 0) {
    const { x, y } = g.cell(bi, bj);
    const cx = x + g.cellW / 2;
    const cy = y + g.cellH / 2;
    out.push(
      `<g id="best" data-i="${bi}" data-j="${bj}" fill="none">` +
        `<circle cx="${px(cx)}" cy="${px(cy)}" r="${px(ring)}" stroke="#000000" stroke-width="3.5"/>` +
        `<circle cx="${px(cx)}" cy="${px(cy)}" r="${px(ring)}" stroke="#ffffff" stroke-width="1.5"/></g>`,
    );
  }

  // Legend under the λ title.
  const lx = g.left;
  legend.push(
    `<circle cx="${lx + 6}" cy="${legendY - 4}" r="5" fill="${colourAt(0.5)}" stroke="#000000" stroke-width="3"/><circle cx="${lx + 6}" cy="${legendY - 4}" r="5" fill="none" stroke="#ffffff" stroke-width="1.2"/>`,
  );
  legend.push(
    t(
      lx + 16,
      legendY,
      `chosen θ = ${fmtNum(r.best.theta)}, λ = ${fmtNum(r.best.lambda)} (${fmtPct(r.best.accuracy)})${bi < 0 || bj < 0 ? ', not on the grid' : ''}${r.applied ? '' : ', dry run'}`,
    ),
  );
  const px2 = lx; // the previous point's entry goes on a second line: both can be long
  const legend2Y = legendY + 18;
  legend.push(
    `<rect x="${px2}" y="${legend2Y - 9}" width="10" height="10" fill="${colourAt(0.5)}" stroke="#000000" stroke-width="2.5"/><rect x="${px2}" y="${legend2Y - 9}" width="10" height="10" fill="none" stroke="#ffffff" stroke-width="1.2" stroke-dasharray="3 2"/>`,
  );
  legend.push(
    t(
      px2 + 16,
      legend2Y,
      `previous θ = ${fmtNum(r.previous.theta)}, λ = ${fmtNum(r.previous.lambda)}${r.previous.accuracy === null ? '' : ` (${fmtPct(r.previous.accuracy)})`}${pi < 0 || pj < 0 ? ', not on the grid' : ''}`,
    ),
  );
  out.push(`<g id="legend" fill="#222222">${legend.join('')}</g>`);
  out.push(`</svg>`);
  return out.join('\n') + '\n';
}
