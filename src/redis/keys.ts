// Every Redis key Cachet uses, in one place. `cachet:` prefixes them all, so one
// Redis can serve other things too. BullMQ's own keys live under `bull:`.
export const redisKeys = {
  /** hash: cache name → cache definition (JSON) */
  caches: 'cachet:caches',
  /** stream: the key log of a cache; entry ID `<n>-0` is the record at position n − 1 */
  log: (cache: string) => `cachet:{${cache}}:log`,
  /** set: item ids in the log (makes an append idempotent) */
  ids: (cache: string) => `cachet:{${cache}}:ids`,
  /** string: records in the log (the next record's position) */
  end: (cache: string) => `cachet:{${cache}}:end`,
  /** string (binary): the search-key projection every replica uses (see Projection.toBuffer) */
  projection: (cache: string) => `cachet:{${cache}}:projection`,
  /** string: the first position the stream still holds (records below it were trimmed: every live replica's snapshot covers them) */
  base: (cache: string) => `cachet:{${cache}}:base`,
  /** hash: replica id → JSON {position, url, at}: the position its last snapshot covers, where peers can fetch that snapshot, and when it last said so (Redis time, ms) */
  replicas: (cache: string) => `cachet:{${cache}}:replicas`,
  /** string: the key dimension the log was started with */
  dimension: (cache: string) => `cachet:{${cache}}:dimension`,
  /** pub/sub channel: a cache's name, each time its definition is created, changed or deleted */
  definitionsChanged: 'cachet:definitions-changed',
};

/** BullMQ queue names: part of the documented job schema (see docs/jobs.md). */
export const queueNames = {
  /** parent jobs: one per index job; they finish when all their chunks have */
  jobs: 'cachet-jobs',
  /** chunk jobs: a slice of an index job's images, processed by `cachet worker` */
  index: 'cachet-index',
  /** eval jobs, processed by api replicas (they hold the indexes) */
  eval: 'cachet-eval',
};
