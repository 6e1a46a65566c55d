// The engine owns every cache of a process: models, indexes and key logs.
// It runs on its own worker thread (see thread.ts) because onnxruntime and
// hnswlib compute synchronously on the calling thread; the HTTP thread stays free.
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { CacheDefinition, CacheDefinitionSchema, CacheInfo, LambdaSchema, ThetaSchema } from '../cache/definition.js';
import { cacheProbabilities, mixProbabilities } from '../cache/math.js';
import { KeyExtractor } from '../model/extractor.js';
import { loadModelSpec } from '../model/spec-file.js';
import { ModelSpec } from '../model/spec.js';
import { ExactIndex, TopK } from '../index/exact.js';
import { CacheState, DEFINITION_FILE } from './cache-state.js';
import { badRequest, conflict, notFound, UserError } from '../errors.js';
import { KeyRecord } from '../keylog/types.js';

export interface Neighbour {
  id: string;
  label: number;
  similarity: number;
}

export interface Classification {
  pModel: number[];
  /** null when the cache is empty */
  pCache: number[] | null;
  p: number[];
  neighbours: Neighbour[];
}

export interface ClassifyOptions {
  theta?: number;
  lambda?: number;
  /** how many nearest cached items to return per image */
  neighbours?: number;
}

export interface ClassifyResult {
  cache: string;
  theta: number;
  lambda: number;
  cacheSize: number;
  results: Classification[];
}

export interface IndexBatchResult {
  added: number;
  duplicates: number;
  failed: { id: string; error: string }[];
}

export interface CacheStatus {
  name: string;
  status: 'ready' | 'failed';
  error?: string;
  info?: CacheInfo;
}

export class Engine {
  private readonly caches = new Map<string, CacheState>();
  private readonly failed = new Map<string, string>();
  /** one onnxruntime session per (model, spec, key layers) for the life of the process */
  private readonly extractors = new Map<string, Promise<KeyExtractor>>();
  private dataDir = 'indexes';

  /** Load every cache found under dataDir. A cache that cannot load is reported, not fatal. */
  async open(dataDir: string): Promise<CacheStatus[]> {
    this.dataDir = dataDir;
    await fs.mkdir(dataDir, { recursive: true });
    for (const entry of await fs.readdir(dataDir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = path.join(dataDir, entry.name);
      const definitionFile = path.join(dir, DEFINITION_FILE);
      try {
        const raw = await fs.readFile(definitionFile, 'utf8').catch(() => null);
        if (raw === null) continue;
        const definition = CacheDefinitionSchema.parse(JSON.parse(raw));
        const extractor = await this.extractorFor(definition);
        this.caches.set(definition.name, await CacheState.open(definition, dir, extractor));
      } catch (err) {
        this.failed.set(entry.name, err instanceof Error ? err.message : String(err));
      }
    }
    return this.listCaches();
  }

  /** `input` is validated here: it comes straight from an HTTP body. */
  async createCache(input: unknown): Promise<CacheInfo> {
    const parsed = CacheDefinitionSchema.safeParse(input);
    if (!parsed.success) throw badRequest('invalid_cache_definition', describeZodError(parsed.error));
    const definition = parsed.data;
    if (this.caches.has(definition.name) || this.failed.has(definition.name)) {
      throw conflict('cache_exists', `a cache named "${definition.name}" already exists: pick another name`);
    }
    const extractor = await this.extractorFor(definition);
    if (definition.keyLayers.length !== new Set(definition.keyLayers).size) {
      throw badRequest('invalid_cache_definition', `keyLayers lists a layer twice: ${definition.keyLayers.join(', ')}`);
    }
    const state = await CacheState.create(definition, path.join(this.dataDir, definition.name), extractor);
    this.caches.set(definition.name, state);
    return state.info();
  }

  async listCaches(): Promise<CacheStatus[]> {
    const ready: CacheStatus[] = [...this.caches.values()].map((c) => ({ name: c.definition.name, status: 'ready', info: c.info() }));
    const failed: CacheStatus[] = [...this.failed].map(([name, error]) => ({ name, status: 'failed', error }));
    return [...ready, ...failed].sort((a, b) => a.name.localeCompare(b.name));
  }

  async getCache(name: string): Promise<CacheInfo> {
    return this.cache(name).info();
  }

  async modelSpec(name: string): Promise<ModelSpec> {
    return this.cache(name).extractor.spec;
  }

  /** Change θ and λ (for example after tuning). */
  async updateCache(name: string, change: { theta?: number; lambda?: number }): Promise<CacheInfo> {
    const cache = this.cache(name);
    const theta = change.theta === undefined ? cache.definition.theta : parseOr400(ThetaSchema, change.theta, 'theta');
    const lambda = change.lambda === undefined ? cache.definition.lambda : parseOr400(LambdaSchema, change.lambda, 'lambda');
    cache.definition = { ...cache.definition, theta, lambda };
    await cache.saveDefinition();
    return cache.info();
  }

  /**
   * Extract the keys of a batch of decoded images and add them as items.
   * `images` is n images laid out as the model's input; labels are class indices.
   */
  async indexBatch(name: string, images: Float32Array, ids: string[], labels: number[]): Promise<IndexBatchResult> {
    const cache = this.cache(name);
    const n = ids.length;
    const numClasses = cache.extractor.numClasses;
    const failed: IndexBatchResult['failed'] = [];
    const bad = labels.findIndex((l) => !Number.isInteger(l) || l < 0 || l >= numClasses);
    if (bad >= 0) throw badRequest('label_out_of_range', `item ${ids[bad]}: label ${labels[bad]} is not a class index 0–${numClasses - 1}`);
    const { keys, zeroKeys } = await cache.extractor.run(images, n);
    const zero = new Set(zeroKeys);
    const dim = cache.extractor.keyDimension;
    const records: KeyRecord[] = [];
    for (let i = 0; i < n; i++) {
      if (zero.has(i)) {
        failed.push({ id: ids[i], error: 'its key is zero or not finite (every key layer is zero for this image), so it cannot be compared: not added' });
        continue;
      }
      records.push({ id: ids[i], label: labels[i], key: keys.subarray(i * dim, (i + 1) * dim) });
    }
    const { added, duplicates } = await cache.lock.run(() => cache.add(records));
    return { added, duplicates, failed };
  }

  /** p_model, p_cache and p = (1 − λ)·p_model + λ·p_cache for n images, with their nearest cached items. */
  async classify(name: string, images: Float32Array, n: number, options: ClassifyOptions = {}): Promise<ClassifyResult> {
    const cache = this.cache(name);
    const d = cache.definition;
    const theta = options.theta === undefined ? d.theta : parseOr400(ThetaSchema, options.theta, 'theta');
    const lambda = options.lambda === undefined ? d.lambda : parseOr400(LambdaSchema, options.lambda, 'lambda');
    const wanted = options.neighbours ?? 0;
    const { keys, probs } = await cache.extractor.run(images, n);
    const numClasses = cache.extractor.numClasses;
    return cache.lock.run(async () => {
      const size = cache.size;
      const index = cache.index;
      const results: Classification[] = [];
      // Exact index: p_cache sums over every item (the reference). Approximate: over the k nearest.
      const all = index instanceof ExactIndex && size > 0 ? await index.similaritiesAll(keys, n) : null;
      const nearest = !all && size > 0 ? await index.search(keys, n, Math.max(d.k, wanted)) : null;
      for (let i = 0; i < n; i++) {
        const pModel = Array.from(probs.subarray(i * numClasses, (i + 1) * numClasses));
        let pCache: Float64Array | null = null;
        let neighbours: Neighbour[] = [];
        const toNeighbour = (position: number, similarity: number): Neighbour => ({
          id: cache.ids[position],
          label: cache.labels[position],
          similarity,
        });
        if (all) {
          const sims = all[i];
          pCache = cacheProbabilities(sims, cache.labels.subarray(0, size), theta, numClasses);
          const top = new TopK(Math.min(wanted, size));
          top.offer(sims, 0, size, 0);
          const { positions, similarities } = top.result();
          neighbours = Array.from(positions, (p, j) => toNeighbour(p, similarities[j]));
        } else if (nearest) {
          const { positions, similarities } = nearest[i];
          const labels = Array.from(positions, (p) => cache.labels[p]);
          pCache = cacheProbabilities(similarities, labels, theta, numClasses);
          neighbours = Array.from(positions.subarray(0, wanted), (p, j) => toNeighbour(p, similarities[j]));
        }
        const p = mixProbabilities(pModel, pCache ?? pModel, lambda, pCache === null);
        results.push({ pModel, pCache: pCache && Array.from(pCache), p: Array.from(p), neighbours });
      }
      return { cache: name, theta, lambda, cacheSize: size, results };
    });
  }

  async snapshot(name: string): Promise<CacheInfo> {
    const cache = this.cache(name);
    await cache.lock.run(() => cache.snapshot());
    return cache.info();
  }

  /** Snapshot every cache and close its log (graceful shutdown). */
  async close(): Promise<void> {
    for (const cache of this.caches.values()) {
      await cache.lock.run(async () => {
        await cache.snapshot();
        await cache.close();
      });
    }
  }

  private cache(name: string): CacheState {
    const cache = this.caches.get(name);
    if (cache) return cache;
    const error = this.failed.get(name);
    if (error !== undefined) throw new UserError(409, 'cache_unavailable', `cache "${name}" could not be loaded: ${error}`);
    const known = [...this.caches.keys()];
    throw notFound('unknown_cache', `no cache named "${name}"; ${known.length ? `known caches: ${known.join(', ')}` : 'create one with POST /v1/caches'}`);
  }

  private extractorFor(d: CacheDefinition): Promise<KeyExtractor> {
    const key = JSON.stringify([path.resolve(d.model), d.spec ?? {}, d.keyLayers]);
    let extractor = this.extractors.get(key);
    if (!extractor) {
      extractor = fs
        .access(d.model)
        .catch(() => {
          throw badRequest('bad_model', `model ${d.model}: no such file; give the path of the .onnx file as the service sees it`);
        })
        .then(() => loadModelSpec(d.model, d.spec))
        .then((spec) => KeyExtractor.create(d.model, spec, d.keyLayers));
      this.extractors.set(key, extractor);
      extractor.catch(() => this.extractors.delete(key)); // a failed load may succeed once the user fixes the file
    }
    return extractor;
  }
}

function parseOr400<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { message: string }[] } } }, value: unknown, field: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw badRequest(`invalid_${field}`, `${field} = ${JSON.stringify(value)}: ${r.error.issues.map((i) => i.message).join('; ')}`);
}

export function describeZodError(error: { issues: { path: PropertyKey[]; message: string }[] }): string {
  return error.issues.map((i) => `${i.path.length ? i.path.map(String).join('.') : 'body'}: ${i.message}`).join('; ');
}
