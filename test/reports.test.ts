// The tune report: Markdown summary and the θ × λ heatmap SVG, on a synthetic 33 × 33 grid.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { heatmapLayout, rankedGrid, tuneHeatmapSvg, tuneMarkdown } from '../src/reports/tune-report.js';
import { colourAt, escapeXml, fmtNum, fmtPct, tickIndices, VIRIDIS } from '../src/reports/svg.js';
import { TuneResult } from '../src/jobs/results.js';

const N = 33;
const PEAK = { i: 20, j: 12 };

/** A grid peaked at PEAK: θ = 0, 5, …, 160; λ = 0, 1/32, …, 1. */
function synthetic(over: Partial<TuneResult> = {}): TuneResult {
  const thetas = Array.from({ length: N }, (_, i) => i * 5);
  const lambdas = Array.from({ length: N }, (_, j) => j / 32);
  const accuracy = thetas.map((_, i) => lambdas.map((_, j) => Math.round((0.93 - 0.00012 * ((i - PEAK.i) ** 2 + 1.5 * (j - PEAK.j) ** 2)) * 10000) / 10000));
  const logLoss = thetas.map((_, i) => lambdas.map((_, j) => 0.25 + 0.0004 * ((i - PEAK.i - 3) ** 2 + (j - PEAK.j) ** 2)));
  const r: TuneResult = {
    cache: 'cifar',
    images: 10000,
    k: 50,
    ks: [20, 50],
    byK: [
      { k: 20, theta: thetas[PEAK.i], lambda: lambdas[PEAK.j], accuracy: 0.9, logLoss: 0.3 },
      { k: 50, theta: thetas[PEAK.i], lambda: lambdas[PEAK.j], accuracy: accuracy[PEAK.i][PEAK.j], logLoss: logLoss[PEAK.i][PEAK.j] },
    ],
    thetas,
    lambdas,
    accuracy,
    logLoss,
    best: { theta: thetas[PEAK.i], lambda: lambdas[PEAK.j], accuracy: accuracy[PEAK.i][PEAK.j], logLoss: logLoss[PEAK.i][PEAK.j] },
    model: { accuracy: accuracy[PEAK.i][0], logLoss: logLoss[PEAK.i][0] },
    cacheOnly: { accuracy: accuracy[PEAK.i][N - 1], logLoss: logLoss[PEAK.i][N - 1] },
    previous: { theta: 50, lambda: 0.5, accuracy: accuracy[10][16] },
    applied: true,
    seconds: { extract: 83.4, grid: 2.71 },
    ...over,
  };
  return r;
}

/**
 * A small but real well-formedness check: every tag is a known shape, open and close
 * tags nest, attributes are quoted, and text/attribute values contain no raw `<` or
 * stray `&`. Returns the problem, or null.
 */
function xmlProblem(s: string): string | null {
  const text = /^(?:[^<&]|&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)*$/i;
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"]*")*)\s*(\/?)>/g;
  const stack: string[] = [];
  let at = 0;
  let roots = 0;
  for (let m; (m = tag.exec(s));) {
    const between = s.slice(at, m.index);
    if (!text.test(between)) return `bad text before offset ${m.index}: ${JSON.stringify(between.slice(0, 60))}`;
    if (stack.length === 0 && between.trim() !== '') return `text outside the root at ${m.index}`;
    for (const a of m[3].matchAll(/="([^"]*)"/g)) if (!text.test(a[1])) return `bad attribute value ${JSON.stringify(a[1])}`;
    const [, close, name, , selfClose] = m;
    if (close) {
      if (selfClose || m[3]) return `malformed close tag ${m[0]}`;
      const open = stack.pop();
      if (open !== name) return `</${name}> closes <${open}> at ${m.index}`;
    } else if (!selfClose) {
      if (stack.length === 0 && roots++ > 0) return 'more than one root element';
      stack.push(name);
    } else if (stack.length === 0) return 'self-closed element outside the root';
    at = tag.lastIndex;
  }
  if (!text.test(s.slice(at)) || s.slice(at).trim() !== '') return `trailing junk: ${JSON.stringify(s.slice(at, at + 60))}`;
  if (stack.length) return `unclosed: ${stack.join(' > ')}`;
  if (roots !== 1) return 'no root element';
  return null;
}

function attrs(tagText: string): Record<string, string> {
  return Object.fromEntries([...tagText.matchAll(/([\w:-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
}

describe('svg helpers', () => {
  test('the well-formedness checker is real', () => {
    assert.equal(xmlProblem('<svg xmlns="x"><g><rect/></g></svg>'), null);
    assert.match(xmlProblem('<svg><g></svg>')!, /closes/);
    assert.match(xmlProblem('<svg><g>')!, /unclosed/);
    assert.match(xmlProblem('<svg><text>a<b</text></svg>')!, /bad text/);
    assert.match(xmlProblem('<svg><text>a & b</text></svg>')!, /bad text/);
    assert.match(xmlProblem('<svg a="<"></svg>')!, /bad attribute|bad text/);
  });

  test('escapeXml, colourAt, fmtNum, fmtPct, tickIndices', () => {
    assert.equal(escapeXml(`a<b&c>"'`), 'a&lt;b&amp;c&gt;&quot;&apos;');
    assert.equal(colourAt(0), '#440154');
    assert.equal(colourAt(1), '#fde725');
    assert.equal(colourAt(-3), colourAt(0));
    assert.equal(colourAt(Number.NaN), colourAt(0));
    assert.match(colourAt(0.37), /^#[0-9a-f]{6}$/);
    // Interpolated halfway between the first two stops.
    const mid = colourAt(0.5 / (VIRIDIS.length - 1));
    assert.equal(mid, '#461566');
    assert.equal(fmtNum(0.03125), '0.03125');
    assert.equal(fmtNum(1 / 3), '0.3333');
    assert.equal(fmtNum(160), '160');
    assert.equal(fmtPct(0.91234), '91.23%');
    assert.deepEqual(tickIndices(33, 12), [0, 4, 8, 12, 16, 20, 24, 28, 32]);
    assert.deepEqual(tickIndices(1, 5), [0]);
    assert.deepEqual(tickIndices(5, 10), [0, 1, 2, 3, 4]);
    assert.ok(tickIndices(33, 26).length <= 26);
  });
});

describe('tune heatmap SVG', () => {
  const r = synthetic();
  const svg = tuneHeatmapSvg(r);

  test('is a well-formed standalone SVG about 640 px wide', () => {
    assert.equal(xmlProblem(svg), null);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    const root = attrs(svg.slice(0, svg.indexOf('>')));
    assert.equal(Number(root.width), 640);
    assert.ok(Number(root.height) > 300 && Number(root.height) < 800);
  });

  test('has one rect per grid point, coloured by accuracy', () => {
    const cells = [...svg.matchAll(/<rect class="cell"[^>]*>/g)].map((m) => attrs(m[0]));
    assert.equal(cells.length, N * N);
    const seen = new Set(cells.map((c) => `${c['data-i']},${c['data-j']}`));
    assert.equal(seen.size, N * N);
    const maxColour = cells.filter((c) => c.fill === colourAt(1));
    assert.deepEqual(
      maxColour.map((c) => [Number(c['data-i']), Number(c['data-j'])]),
      [[PEAK.i, PEAK.j]],
    );
  });

  test('marks the chosen point on its cell, under its θ and λ tick labels', () => {
    const best = /<g id="best" data-i="(\d+)" data-j="(\d+)"[^>]*><circle ([^>]*)>/.exec(svg);
    assert.ok(best, 'no best marker');
    assert.deepEqual([Number(best[1]), Number(best[2])], [PEAK.i, PEAK.j]);
    const { cx, cy } = attrs(best[3]);
    const cell = attrs(new RegExp(`<rect class="cell" data-i="${PEAK.i}" data-j="${PEAK.j}"[^>]*>`).exec(svg)![0]);
    const [x, y, w, h] = [cell.x, cell.y, cell.width, cell.height].map(Number);
    assert.ok(Number(cx) > x && Number(cx) < x + w, `cx ${cx} outside [${x}, ${x + w}]`);
    assert.ok(Number(cy) > y && Number(cy) < y + h, `cy ${cy} outside [${y}, ${y + h}]`);
    // θ grows upwards: the row above the peak is θ index PEAK.i + 1.
    const above = attrs(new RegExp(`<rect class="cell" data-i="${PEAK.i + 1}" data-j="${PEAK.j}"[^>]*>`).exec(svg)![0]);
    assert.ok(Number(above.y) < y);
    // The axis labels for this cell's θ (100) and λ (0.375) line up with the marker.
    const yLabel = [...svg.matchAll(/<text x="[\d.]+" y="([\d.]+)">100<\/text>/g)];
    assert.equal(yLabel.length, 1);
    assert.ok(Math.abs(Number(yLabel[0][1]) - Number(cy)) < h);
    const xLabel = [...svg.matchAll(/<text x="([\d.]+)" y="[\d.]+">0\.375<\/text>/g)];
    assert.equal(xLabel.length, 1);
    assert.ok(Math.abs(Number(xLabel[0][1]) - Number(cx)) < 0.01);
    const layout = heatmapLayout(N, N);
    assert.ok(Math.abs(Number(cx) - (layout.cell(PEAK.i, PEAK.j).x + layout.cellW / 2)) < 0.01);
  });

  test('marks the previous point differently', () => {
    const prev = /<g id="previous" data-i="(\d+)" data-j="(\d+)"[^>]*><rect /.exec(svg);
    assert.ok(prev, 'no previous marker');
    assert.deepEqual([Number(prev[1]), Number(prev[2])], [10, 16]);
    // Off the grid: no marker, and the legend says so.
    const off = tuneHeatmapSvg(synthetic({ previous: { theta: 42, lambda: 0.5, accuracy: null } }));
    assert.equal(xmlProblem(off), null);
    assert.doesNotMatch(off, /id="previous"/);
    assert.match(off, /previous θ = 42, λ = 0\.5, not on the grid/);
  });

  test('has axis titles, a title, ticks that do not crowd, and a colour bar with min/max in %', () => {
    assert.match(svg, /<text [^>]*class="axis-title"[^>]*>λ<\/text>/);
    assert.match(svg, /<text [^>]*class="axis-title"[^>]*>θ<\/text>/);
    assert.match(svg, /<text [^>]*font-weight="bold"[^>]*>θ × λ accuracy, cache cifar<\/text>/);
    const xTicks = svg.slice(svg.indexOf('<g id="x-axis"'), svg.indexOf('</g>', svg.indexOf('<g id="x-axis"'))).match(/<line /g)!.length;
    const yTicks = svg.slice(svg.indexOf('<g id="y-axis"'), svg.indexOf('</g>', svg.indexOf('<g id="y-axis"'))).match(/<line /g)!.length;
    assert.ok(xTicks >= 5 && xTicks <= 12, `${xTicks} λ ticks`);
    assert.ok(yTicks >= 5 && yTicks <= 26, `${yTicks} θ ticks`);
    const all = r.accuracy.flat();
    assert.match(svg, new RegExp(`class="bar-max">${fmtPct(Math.max(...all)).replace('.', '\\.')}<`));
    assert.match(svg, new RegExp(`class="bar-min">${fmtPct(Math.min(...all)).replace('.', '\\.')}<`));
    assert.match(svg, /<linearGradient id="cachet-accuracy-scale"/);
  });

  test('escapes the cache name', () => {
    const bad = tuneHeatmapSvg(synthetic({ cache: 'a<b&c' }));
    assert.equal(xmlProblem(bad), null);
    assert.ok(bad.includes('a&lt;b&amp;c'));
    assert.ok(!bad.includes('a<b'));
  });

  test('survives NaN cells, a flat grid and a tiny grid', () => {
    const nan = synthetic();
    nan.accuracy = nan.accuracy.map((row, i) => row.map((v, j) => (i === 0 && j === 0 ? Number.NaN : v)));
    const s1 = tuneHeatmapSvg(nan);
    assert.equal(xmlProblem(s1), null);
    assert.match(s1, /data-i="0" data-j="0"[^>]*fill="#cccccc"/);
    const flat = synthetic();
    flat.accuracy = flat.accuracy.map((row) => row.map(() => 0.9));
    assert.equal(xmlProblem(tuneHeatmapSvg(flat)), null);
    const tiny: TuneResult = {
      ...synthetic(),
      thetas: [10],
      lambdas: [0.5],
      accuracy: [[0.9]],
      logLoss: [[0.3]],
      best: { theta: 10, lambda: 0.5, accuracy: 0.9, logLoss: 0.3 },
      cacheOnly: null,
    };
    const s3 = tuneHeatmapSvg(tiny);
    assert.equal(xmlProblem(s3), null);
    assert.equal(s3.match(/<rect class="cell"/g)!.length, 1);
    assert.match(tuneMarkdown(tiny), /Cache alone \(λ = 1\) was not in the grid/);
  });
});

describe('tune report Markdown', () => {
  const r = synthetic();
  const md = tuneMarkdown(r);

  test('states the chosen point, the previous one and the model alone', () => {
    assert.match(md, /^# Tune report: cache `cifar`/);
    assert.match(md, /\*\*10000\*\* validation images/);
    assert.match(md, /\| \*\*chosen\*\* \| 100 \| 0\.375 \| 93\.00% \| 7\.00% \|/);
    assert.match(md, new RegExp(`\\| previous \\| 50 \\| 0\\.5 \\| ${fmtPct(r.previous.accuracy!).replace('.', '\\.')} \\|`));
    assert.match(md, new RegExp(`\\| model alone \\| — \\| 0 \\| ${fmtPct(r.model.accuracy).replace('.', '\\.')} \\|`));
    assert.match(md, /\| cache alone \| 100 \| 1 \|/);
    assert.match(md, /Chosen vs the model alone: error \d+\.\d\d% → 7\.00% \(−\d+\.\d\d points, −\d+\.\d% relative\)/);
    assert.match(md, /\*\*Applied:\*\* the cache now uses θ = 100, λ = 0\.375, k = 50 \(was θ = 50, λ = 0\.5\)/);
    assert.match(md, /## Neighbours: k[\s\S]*\| 20 \| 100 \| 0\.375 \| 90\.00% \|[\s\S]*\| 50 \| 100 \| 0\.375 \| 93\.00% \| 7\.00% \| [\d.]+ \| chosen \|/);
    assert.ok(md.includes('![θ×λ accuracy](heatmap.svg)'));
    assert.match(md, /Extracting keys, model outputs and neighbours, each batch scored on the grid as it came: 1 min 23 s/);
    assert.match(md, /of which scoring the grid \(beside the model and the search\): 2\.71 s/);
  });

  test('says how to roll back, with the previous values', () => {
    assert.ok(md.includes('```sh\ncachet cache set cifar --theta 50 --lambda 0.5\n```'));
    const dry = tuneMarkdown(synthetic({ applied: false }));
    assert.match(dry, /\*\*Dry run:\*\* nothing was changed; the cache still uses θ = 50, λ = 0\.5/);
    assert.ok(dry.includes('cachet cache set cifar --theta 100 --lambda 0.375'));
    assert.ok(dry.includes('cachet cache set cifar --theta 50 --lambda 0.5'));
    // A name the shell would mangle is quoted; in Markdown it stays inside code.
    const odd = tuneMarkdown(synthetic({ cache: 'a<b&c' }));
    assert.ok(odd.includes(`cachet cache set 'a<b&c' --theta 50 --lambda 0.5`));
    assert.match(odd, /^# Tune report: cache `a<b&c`/);
  });

  test('the top-10 table has 10 rows sorted by accuracy, best first', () => {
    const section = md.slice(md.indexOf('## Top 10 grid points'));
    const rows = section
      .split('\n')
      .filter((l) => /^\| \d+ \|/.test(l))
      .map((l) => l.split('|').map((c) => c.trim()));
    assert.equal(rows.length, 10);
    assert.deepEqual(
      rows.map((c) => Number(c[1])),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    );
    const acc = rows.map((c) => Number(c[4].replace('%', '')));
    for (let n = 1; n < acc.length; n++) assert.ok(acc[n] <= acc[n - 1], `row ${n + 1} above row ${n}`);
    assert.deepEqual([Number(rows[0][2]), Number(rows[0][3])], [100, 0.375]);
    assert.equal(rows[0][7], 'chosen');
    // Same order as rankedGrid, which breaks accuracy ties by log-loss.
    const ranked = rankedGrid(r).slice(0, 10);
    assert.deepEqual(
      rows.map((c) => [Number(c[2]), Number(c[3])]),
      ranked.map((p) => [p.theta, p.lambda]),
    );
    for (let n = 1; n < ranked.length; n++) if (ranked[n].accuracy === ranked[n - 1].accuracy) assert.ok(ranked[n].logLoss >= ranked[n - 1].logLoss);
  });

  test('handles an unknown previous accuracy', () => {
    const md2 = tuneMarkdown(synthetic({ previous: { theta: 42, lambda: 0.5, accuracy: null } }));
    assert.match(md2, /\| previous \| 42 \| 0\.5 \| — \| — \| — \|/);
    assert.match(md2, /is not on the grid, so its accuracy on these images is unknown/);
  });
});
