// `cachet cache …`: create, list, show, verify, export, import and set caches.
import path from 'node:path';
import { promises as fs, createReadStream, createWriteStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Command, Option } from 'commander';
import { unpackArchive } from '../cache/archive.js';
import type { CacheInfo } from '../cache/info.js';
import type { CacheVerification } from '../engine/status.js';
import { UserError } from '../errors/user-error.js';
import { int, num } from './args.js';
import { apiErrorOf, client, print, urlOption } from './common.js';
import { addSpecOptions, specOverrides } from './spec-flags.js';
import { DEFAULT_K } from '../cache/definition.js';

export function registerCacheCommands(program: Command): void {
  const cache = program.command('cache').description('create and look at caches');
  const create = cache
    .command('create <name>')
    .description('create an empty cache')
    .requiredOption('--model <path>', 'the .onnx file, as the service sees it (a <model>.spec.json beside it says how to feed it)')
    .requiredOption('--layers <names>', 'key layers, comma-separated (see `cachet model inspect`)')
    .option('--theta <θ>', 'θ (default 50)', num)
    .option('--lambda <λ>', 'λ (default 0.5)', num)
    .option('--k <k>', `neighbours p_cache sums over with an approximate index (default ${DEFAULT_K})`, int)
    .addOption(new Option('--index <type>', 'index type').choices(['auto', 'exact', 'hnsw']))
    .option('--exact-threshold <n>', 'with --index auto: exact search up to this many items', int)
    .option('--m <m>', 'hnsw M', int)
    .option('--ef-construction <n>', 'hnsw efConstruction', int)
    .option('--ef-search <n>', 'hnsw efSearch', int)
    .addOption(new Option('--reduce <how>', 'index a reduced search key').choices(['none', 'pca', 'random']))
    .option('--search-dim <n>', 'with --reduce: the reduced dimension (default 128)', int)
    .option('--no-rerank', 'with --reduce: score with the reduced similarities, keep no full keys')
    .option('--shards <n>', 'split the items over this many shards, each held by the replicas that serve it (distributed mode; default 1)', int);
  addSpecOptions(create)
    .addOption(urlOption())
    .action(async (name: string, o: Record<string, string | number | boolean | undefined> & { url: string }) => {
      const spec = await specOverrides(o);
      const index = Object.fromEntries(
        Object.entries({ type: o.index, exactThreshold: o.exactThreshold, m: o.m, efConstruction: o.efConstruction, efSearch: o.efSearch }).filter(
          ([, v]) => v !== undefined,
        ),
      );
      const body = {
        name,
        model: path.resolve(String(o.model)),
        keyLayers: String(o.layers)
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
        ...(o.theta !== undefined && { theta: o.theta }),
        ...(o.lambda !== undefined && { lambda: o.lambda }),
        ...(o.k !== undefined && { k: o.k }),
        ...(o.shards !== undefined && { shards: o.shards }),
        ...(Object.keys(index).length && { index }),
        ...(Object.keys(spec).length && { spec }),
        ...(o.reduce !== undefined && {
          searchKey: { reduce: o.reduce, ...(o.searchDim !== undefined && { dimension: o.searchDim }), rerank: o.rerank !== false },
        }),
      };
      print(await client(o).request<CacheInfo>('POST', '/v1/caches', body));
    });
  cache
    .command('list')
    .description('the caches of the service: name, state, size')
    .addOption(urlOption())
    .action(async (o: { url: string }) => print(await client(o).request('GET', '/v1/caches')));
  cache
    .command('show <name>')
    .description('one cache: its definition, size, index, search key, log and snapshot positions, damage')
    .addOption(urlOption())
    .action(async (name: string, o: { url: string }) => print(await client(o).request('GET', `/v1/caches/${encodeURIComponent(name)}`)));
  cache
    .command('verify <name>')
    .description('check every stored file of a cache against its checksums and read its key log again; exit 1 if something does not check out')
    .option('--clear-damage', 'then forget the damage records (once the lost images are indexed again)')
    .option('--json', 'print the whole report as JSON')
    .addOption(urlOption())
    .action(async (name: string, o: { url: string; clearDamage?: boolean; json?: boolean }) => {
      const report = await client(o).request<CacheVerification>('POST', `/v1/caches/${encodeURIComponent(name)}/verify`);
      if (o.json) print(report);
      else {
        const files = report.snapshot?.files.length ?? 0;
        const log = report.log ? `key log positions ${report.log.base}–${report.log.end}` : 'key log not read (cache not loaded)';
        console.log(`${name}: ${report.ok ? 'ok' : 'DAMAGED'} — ${report.snapshot ? `${files} snapshot files` : 'no snapshot'}, ${log}`);
        for (const p of report.problems) console.log(`  ✗ ${p}`);
        for (const d of report.damage)
          console.log(`  earlier (${d.detectedAt}): ${d.what}; ${d.outcome}${d.lostIds.length ? `; lost ids: ${d.lostIds.join(', ')}` : ''}`);
      }
      if (o.clearDamage && report.ok) await client(o).request('DELETE', `/v1/caches/${encodeURIComponent(name)}/damage`);
      if (!report.ok) process.exitCode = 1;
    });
  cache
    .command('export <name> <file>')
    .description('back up a cache: one archive of a consistent snapshot, checked against its checksums on receipt')
    .addOption(urlOption())
    .action(async (name: string, file: string, o: { url: string; apiKey?: string }) => {
      const t0 = performance.now();
      const c = client(o);
      const res = await fetch(new URL(`/v1/caches/${encodeURIComponent(name)}/snapshot`, o.url), { headers: c.authHeaders() });
      if (!res.ok || !res.body) throw await apiErrorOf(res);
      const partial = `${file}.partial`;
      await pipeline(Readable.fromWeb(res.body as never), createWriteStream(partial));
      const header = await unpackArchive(createReadStream(partial), null, Number.MAX_SAFE_INTEGER).catch(async (err: Error) => {
        await fs.rm(partial, { force: true });
        throw new UserError('bad_archive', `the export of "${name}" arrived damaged or cut short (${err.message}); nothing was written to ${file}: try again`);
      });
      await fs.rename(partial, file);
      const bytes = statSync(file).size;
      const files = Object.keys(header.files).length;
      console.log(
        `exported cache "${name}" to ${file}: ${files} files, ${(bytes / 2 ** 20).toFixed(1)} MiB, every checksum verified, in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    });
  cache
    .command('import <file>')
    .description('restore a cache from an export archive (embedded service); the model must be the same file, wherever it is here')
    .option('--name <name>', 'import under this name (default: the exported name)')
    .option('--model <path>', "the model's .onnx file on this machine (default: the exported path)")
    .addOption(urlOption())
    .action(async (file: string, o: { url: string; name?: string; model?: string }) => {
      const query = new URLSearchParams({ ...(o.name && { name: o.name }), ...(o.model && { model: path.resolve(o.model) }) });
      const size = statSync(file).size;
      const res = await fetch(new URL(`/v1/caches/import?${query}`, o.url), {
        method: 'POST',
        headers: { ...client(o).authHeaders(), 'content-type': 'application/x-tar', 'content-length': String(size) },
        body: Readable.toWeb(createReadStream(file)) as never,
        duplex: 'half',
      } as RequestInit);
      if (!res.ok) throw await apiErrorOf(res);
      const info = (await res.json()) as CacheInfo;
      console.log(`imported cache "${info.name}": ${info.size} items, ${info.index.type} index, model ${info.model}`);
    });
  cache
    .command('set <name>')
    .description('change θ, λ, k or efSearch (no re-indexing needed)')
    .option('--theta <θ>', 'θ', num)
    .option('--lambda <λ>', 'λ', num)
    .option('--k <k>', 'neighbours p_cache sums over with an hnsw index', int)
    .option('--ef-search <n>', 'hnsw efSearch', int)
    .addOption(urlOption())
    .action(async (name: string, o: { theta?: number; lambda?: number; k?: number; efSearch?: number; url: string }) =>
      print(await client(o).request('PATCH', `/v1/caches/${encodeURIComponent(name)}`, { theta: o.theta, lambda: o.lambda, k: o.k, efSearch: o.efSearch })),
    );
}
