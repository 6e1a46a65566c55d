// What the engine answers, and how a process sets it up. Shared by the engine's roles, its thread
// client and the layers above (jobs, queue, http).

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

export interface NeighbourScores {
  k: number;
  /** n × numClasses */
  pModel: Float32Array;
  /** n × k, best first */
  similarities: Float32Array;
  /** n × k class labels */
  labels: Uint16Array;
  /** n × k item positions (−1: padding) */
  positions: Int32Array;
}

export interface CacheUpdate {
  theta?: number;
  lambda?: number;
  /** why θ or λ changed, kept in the history (e.g. "tune job <id>") */
  reason?: string;
  k?: number;
  efSearch?: number;
}

export interface ClassifyOptions {
  theta?: number;
  lambda?: number;
  /** how many nearest cached items to return per image */
  neighbours?: number;
  /** a cache of several shards: answer over the shards that are there when some have no healthy replica */
  partial?: boolean;
}

export interface ClassifyResult {
  cache: string;
  theta: number;
  lambda: number;
  cacheSize: number;
  results: Classification[];
  /** a cache of several shards answered with `partial`: the shards it was answered without */
  missingShards?: number[];
  /** engine-thread time of this call: the model run, and the search + p_cache (including the wait for the cache's lock) */
  timings?: { inferenceMs: number; searchMs: number };
}

export interface IndexBatchResult {
  added: number;
  duplicates: number;
  failed: { id: string; error: string }[];
}

/**
 * What this process does with caches:
 * - `embedded`: everything, in one process; definitions and key logs are files.
 * - `api`: an api replica of distributed mode; definitions and key logs are in Redis,
 *   and it tails every cache's log into its own index (workers append to the logs).
 * - `worker`: a `cachet worker`: extracts keys and appends them to the logs; holds no index.
 */
export type EngineRole = 'embedded' | 'api' | 'worker';

export interface EngineOptions {
  role: EngineRole;
  dataDir: string;
  /** distributed mode (roles api and worker) */
  redisUrl?: string;
  /** api: snapshot at every this many log positions */
  snapshotEvery?: number;
  /** api: records the key log keeps below its end, whatever the replicas' snapshots cover */
  logKeep?: number;
  /** api: a replica silent for this long no longer holds the log's trimming back */
  replicaTtlMs?: number;
  /** api: this replica's id (default: made on its first start, kept in the data directory) */
  replicaId?: string;
  /** api: the shards of each cache of several shards this replica holds (default: all) */
  shards?: number[];
  /** api: an admin API key to fetch peers' snapshots with, when they ask for keys */
  peerKey?: string;
}

/** The Redis a distributed role works on. */
export function redisUrlOf(options: EngineOptions): string {
  if (!options.redisUrl) throw new Error(`role ${options.role} needs REDIS_URL`);
  return options.redisUrl;
}

/** What the engine reports of its background work (tailing logs, syncing definitions). */
export interface EngineLogEntry {
  level: 'info' | 'warn' | 'error';
  msg: string;
}
