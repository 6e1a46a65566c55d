// A cache's snapshot as the engine writes and reads it: the manifest that says what the snapshot
// holds and which model and key layers built it, and the checks that a snapshot still fits its
// cache's definition before anything is loaded from it.
import type { CacheDefinition } from '../cache/definition.js';
import { UserError } from '../errors/user-error.js';
import type { SnapshotManifest } from '../index/snapshot.js';
import type { Extractor } from '../model/types.js';
import type { ItemTable } from './item-table.js';
import type { SearchIndex } from './search-index.js';

export function snapshotManifest(
  definition: CacheDefinition,
  extractor: Extractor,
  search: SearchIndex,
  items: ItemTable,
  logPosition: number,
): SnapshotManifest {
  const index = search.index;
  return {
    formatVersion: 2,
    createdAt: new Date().toISOString(),
    logPosition,
    size: items.positions,
    deleted: items.deleted.size,
    dimension: index.dimension,
    indexKind: index.kind,
    indexParams: index.params(),
    cache: definition.name,
    model: definition.model,
    modelHash: extractor.modelHash,
    keyLayers: definition.keyLayers,
    theta: definition.theta,
    lambda: definition.lambda,
    keyDimension: extractor.keyDimension,
    projection: search.projection?.fingerprint ?? null,
  };
}

/** A snapshot built with another model file or other key layers is refused, with what to do. */
export function checkSnapshotMatches(m: SnapshotManifest, d: CacheDefinition, extractor: Extractor): void {
  const fix = `Restore the model the cache was built with, or delete indexes/${d.name}/ and index the images again.`;
  if (m.modelHash !== extractor.modelHash) {
    throw new UserError(
      'snapshot_model_mismatch',
      `cache "${d.name}": its snapshot was built with a model whose sha256 is ${String(m.modelHash).slice(0, 12)}…, but ${d.model} now has sha256 ${extractor.modelHash.slice(0, 12)}…. ${fix}`,
    );
  }
  const layers = JSON.stringify(m.keyLayers);
  const keyDimension = Number(m.keyDimension ?? m.dimension);
  if (layers !== JSON.stringify(d.keyLayers) || keyDimension !== extractor.keyDimension) {
    throw new UserError(
      'snapshot_layers_mismatch',
      `cache "${d.name}": its snapshot has key layers ${layers} (dimension ${keyDimension}), the definition asks for ${JSON.stringify(d.keyLayers)} (dimension ${extractor.keyDimension}). ${fix}`,
    );
  }
}
