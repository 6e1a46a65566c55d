// Small helpers for hand-written SVG reports (no plotting dependency): escaping,
// a sequential colour scale, number formatting and tick selection.

/** Escapes text or an attribute value for XML (both quote kinds, so either attribute quoting works). */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

export type Rgb = [number, number, number];

/** A few stops of matplotlib's viridis (dark purple → blue → green → yellow). */
export const VIRIDIS: readonly Rgb[] = [
  [68, 1, 84],
  [72, 40, 120],
  [62, 73, 137],
  [49, 104, 142],
  [38, 130, 142],
  [31, 158, 137],
  [53, 183, 121],
  [109, 205, 89],
  [180, 222, 44],
  [253, 231, 37],
];

function hex(c: Rgb): string {
  return (
    '#' +
    c
      .map((v) =>
        Math.round(Math.min(255, Math.max(0, v)))
          .toString(16)
          .padStart(2, '0'),
      )
      .join('')
  );
}

/** The colour at t ∈ [0, 1] (clamped; NaN → 0) by linear interpolation between evenly spaced stops, as #rrggbb. */
export function colourAt(t: number, stops: readonly Rgb[] = VIRIDIS): string {
  if (stops.length === 0) throw new Error('colourAt needs at least one stop');
  if (stops.length === 1) return hex(stops[0]);
  const x = (Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const a = stops[i];
  const b = stops[i + 1];
  return hex([a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f]);
}

/** A scale mapping [min, max] onto the stops; a degenerate range maps everything to the middle. */
export function sequentialScale(min: number, max: number, stops: readonly Rgb[] = VIRIDIS): (v: number) => string {
  const span = max - min;
  return (v) => colourAt(span > 0 ? (v - min) / span : 0.5, stops);
}

/** Black or white, whichever reads better on the #rrggbb background (relative luminance). */
export function contrastingInk(background: string): '#000000' | '#ffffff' {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(background);
  if (!m) return '#000000';
  const lin = (h: string) => {
    const c = parseInt(h, 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const l = 0.2126 * lin(m[1]) + 0.7152 * lin(m[2]) + 0.0722 * lin(m[3]);
  return l > 0.179 ? '#000000' : '#ffffff';
}

/** A compact number: at most `significant` significant digits, no trailing zeros, no exponent for everyday sizes. */
export function fmtNum(x: number, significant = 4): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const r = Number(x.toPrecision(significant));
  return Math.abs(r) >= 1e-6 && Math.abs(r) < 1e15 ? String(r) : r.toExponential();
}

/** A fraction in [0, 1] as a percentage with fixed decimals: 0.9123 → "91.23%". */
export function fmtPct(fraction: number, decimals = 2): string {
  return Number.isFinite(fraction) ? `${(fraction * 100).toFixed(decimals)}%` : '—';
}

/** Coordinates for SVG attributes: at most 2 decimals, no trailing zeros. */
export function px(x: number): string {
  return String(Math.round(x * 100) / 100);
}

/**
 * Which of n evenly spaced categorical positions get a tick label so labels don't
 * overlap: at most `maxLabels`, always the first, and the last too when a step that
 * divides n − 1 is close to the minimum one (33 values, 12 labels → every 4th: 0, 4, …, 32).
 */
export function tickIndices(n: number, maxLabels: number): number[] {
  if (n <= 0) return [];
  if (n === 1) return [0];
  const minStep = Math.max(1, Math.ceil((n - 1) / Math.max(1, maxLabels - 1)));
  let step = minStep;
  for (let s = minStep; s <= Math.ceil(minStep * 1.5); s++) {
    if ((n - 1) % s === 0) {
      step = s;
      break;
    }
  }
  const out: number[] = [];
  for (let i = 0; i < n; i += step) out.push(i);
  return out;
}
