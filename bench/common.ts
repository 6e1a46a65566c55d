// Helpers shared by the benchmarks: tables, and class-balanced image lists.
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { parse as parseCsv } from 'csv-parse/sync';

export interface Img {
  path: string;
  label: string;
}

export const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : '—');
export const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

export function printTable(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) => '  ' + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : (cell ?? '').padStart(widths[c]))).join('   ');
  console.log(`\n${title}\n${line(header)}\n  ${widths.map((w) => '-'.repeat(w)).join('   ')}`);
  rows.forEach((r) => console.log(line(r)));
}

/** Round-robin over the classes (in order of first appearance), so any prefix is class-balanced. */
export function balanced(imgs: Img[], n: number): Img[] {
  const byClass = new Map<string, Img[]>();
  for (const img of imgs) {
    const queue = byClass.get(img.label);
    if (queue) queue.push(img);
    else byClass.set(img.label, [img]);
  }
  const queues = [...byClass.values()];
  const out: Img[] = [];
  for (let i = 0; out.length < Math.min(n, imgs.length); i++) for (const q of queues) if (i < q.length && out.length < n) out.push(q[i]);
  return out;
}

export async function listFolder(root: string): Promise<Img[]> {
  const out: Img[] = [];
  for (const dir of (await fs.readdir(root, { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort()) {
    for (const file of (await fs.readdir(path.join(root, dir))).filter((f) => /\.(jpe?g|png|webp)$/i.test(f)).sort()) {
      out.push({ path: path.join(root, dir, file), label: dir });
    }
  }
  return out;
}

export async function listManifest(file: string): Promise<Img[]> {
  const rows = parseCsv(await fs.readFile(file, 'utf8'), { columns: true, skip_empty_lines: true, trim: true }) as { path: string; label: string }[];
  return rows.map((r) => ({ path: path.resolve(path.dirname(file), r.path), label: r.label }));
}
