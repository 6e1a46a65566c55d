// `npm run bench`: on a folder of the paper's manifests (--data with cache-45k.csv) and no --items,
// issue 15's table on the full paper cache (bench/paper.ts); otherwise the sample benchmark
// (bench/bench.ts: a few thousand items, exact against hnsw, batch sizes 1, 8, 64).
import { existsSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const value = (flag: string) => {
  const i = args.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
  return i < 0 ? undefined : args[i] === flag ? args[i + 1] : args[i].slice(flag.length + 1);
};
const data = value('--data');
const paper = data !== undefined && existsSync(path.join(data, 'cache-45k.csv')) && value('--items') === undefined;
await import(paper ? './paper.js' : './bench.js');
