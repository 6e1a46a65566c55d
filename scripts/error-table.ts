// Rewrites README.md's error table from src/errors/catalogue.ts: `npm run docs:errors`
// (test/openapi.test.ts fails while they differ).
import { readFileSync, writeFileSync } from 'node:fs';
import { ERROR_CATALOGUE } from '../src/errors/catalogue.js';

const README = new URL('../README.md', import.meta.url);
const HEAD = '| code | status | meaning |\n|---|---|---|\n';
const text = readFileSync(README, 'utf8');
const start = text.indexOf(HEAD);
if (start < 0) throw new Error(`README.md has no error table (a line "${HEAD.split('\n')[0]}")`);
const bodyStart = start + HEAD.length;
let end = bodyStart;
while (text.startsWith('| `', end)) end = text.indexOf('\n', end) + 1;
const rows = Object.entries(ERROR_CATALOGUE).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.description.replace(/\|/g, '\\|')} |\n`);
writeFileSync(README, text.slice(0, bodyStart) + rows.join('') + text.slice(end));
