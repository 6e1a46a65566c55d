// A small SVG line chart (several series over one x axis), for report plots such as
// the error against cache size.
import { colourAt, escapeXml, fmtNum, px } from './svg.js';

export interface Series {
  name: string;
  points: [number, number][];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** format of y tick labels (default: the number) */
  yFormat?: (y: number) => string;
}

export function lineChartSvg(c: LineChart): string {
  const W = 640,
    H = 400,
    left = 72,
    right = 160,
    top = 48,
    bottom = 56;
  const plotW = W - left - right,
    plotH = H - top - bottom;
  const all = c.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const [x0, x1] = extent(all.map((p) => p[0]));
  const [y0, y1] = extent(
    all.map((p) => p[1]),
    0.05,
  );
  const X = (x: number) => left + ((x - x0) / (x1 - x0 || 1)) * plotW;
  const Y = (y: number) => top + plotH - ((y - y0) / (y1 - y0 || 1)) * plotH;
  const fy = c.yFormat ?? ((y: number) => fmtNum(y));
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`];
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(c.title)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${px(Y(y))}" y2="${px(Y(y))}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${left - 6}" y="${px(Y(y) + 4)}" text-anchor="end">${escapeXml(fy(y))}</text>`);
  }
  const xs = [...new Set(all.map((p) => p[0]))].sort((a, b) => a - b);
  for (const x of xs) out.push(`<text x="${px(X(x))}" y="${top + plotH + 18}" text-anchor="middle">${escapeXml(fmtNum(x))}</text>`);
  out.push(`<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#444444"/>`);
  out.push(`<text x="${left + plotW / 2}" y="${H - 14}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(c.yLabel)}</text>`);
  c.series.forEach((s, i) => {
    const colour = colourAt(c.series.length === 1 ? 0.3 : (0.85 * i) / (c.series.length - 1));
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map(([x, y]) => `${px(X(x))},${px(Y(y))}`).join(' ')}"/>`);
    for (const [x, y] of pts)
      out.push(`<circle cx="${px(X(x))}" cy="${px(Y(y))}" r="3.5" fill="${colour}"><title>${escapeXml(`${s.name}: ${fmtNum(x)} → ${fy(y)}`)}</title></circle>`);
    const ly = top + 12 + 20 * i;
    out.push(`<line x1="${left + plotW + 14}" x2="${left + plotW + 34}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`);
    out.push(`<text x="${left + plotW + 40}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function extent(values: number[], pad = 0): [number, number] {
  if (values.length === 0) return [0, 1];
  const lo = Math.min(...values),
    hi = Math.max(...values);
  const d = (hi - lo || Math.abs(hi) || 1) * pad;
  return [lo - d, hi + d];
}

/** Several charts of lineChartSvg's size in one SVG, `columns` to a row (nested <svg> elements). */
export function chartGridSvg(charts: string[], columns: number): string {
  const W = 640,
    H = 400;
  const cols = Math.max(1, Math.min(columns, charts.length));
  const rows = Math.ceil(charts.length / cols);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W * cols}" height="${H * rows}" viewBox="0 0 ${W * cols} ${H * rows}">`];
  out.push(`<rect width="${W * cols}" height="${H * rows}" fill="#ffffff"/>`);
  charts.forEach((chart, i) => out.push(chart.trim().replace(/^<svg /, `<svg x="${(i % cols) * W}" y="${Math.floor(i / cols) * H}" `)));
  out.push('</svg>');
  return out.join('\n') + '\n';
}
