// The merge of shards' answers is exact: the same p_cache as one cache holding every item.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cacheProbabilities } from '../src/math/cache-model.js';
import { classLogSums, mergeCandidates, mergedCacheProbabilities, type Candidate, type ShardAnswer } from '../src/shards/merge.js';
import { parseShardName, shardName, shardOf } from '../src/shards/shards.js';
import { Rng } from '../src/math/rng.js';

const C = 10;
function items(n: number, seed: number): Candidate[] {
  const rng = new Rng(seed);
  const r = () => rng.uniform();
  return Array.from({ length: n }, (_, i) => ({ id: `img-${i}`, label: Math.floor(r() * (C - 1)), similarity: 2 * r() - 1 })); // class 9: none
}

function split(all: Candidate[], shards: number): Candidate[][] {
  const parts: Candidate[][] = Array.from({ length: shards }, () => []);
  for (const c of all) parts[shardOf(c.id, shards)].push(c);
  return parts;
}

test('every item: per-class log-sum-exp over shards gives the unsharded p_cache to 1e-12, for θ from 0 to 1000', () => {
  const all = items(5000, 7);
  for (const theta of [0, 1, 50, 90, 1000]) {
    const whole = cacheProbabilities(
      all.map((c) => c.similarity),
      all.map((c) => c.label),
      theta,
      C,
    );
    for (const shards of [2, 3, 4, 7]) {
      const answers: ShardAnswer[] = split(all, shards).map((part) => ({
        candidates: part.slice(0, 1),
        classLogSums: classLogSums(
          part.map((c) => c.similarity),
          part.map((c) => c.label),
          theta,
          C,
        ),
      }));
      const merged = mergedCacheProbabilities(answers, theta, 50, C)!;
      for (let c = 0; c < C; c++) assert.ok(Math.abs(merged[c] - whole[c]) < 1e-12, `θ ${theta}, ${shards} shards, class ${c}: ${merged[c]} vs ${whole[c]}`);
      assert.equal(merged[9], 0, 'a class no shard holds');
    }
  }
});

test("k nearest: the shards' own top-k merge into the global top-k and its p_cache", () => {
  const all = items(3000, 11);
  const k = 50;
  const best = [...all].sort((a, b) => b.similarity - a.similarity).slice(0, k);
  const answers = split(all, 4).map((part) => ({ candidates: [...part].sort((a, b) => b.similarity - a.similarity).slice(0, k) }));
  assert.deepEqual(
    mergeCandidates(answers, k).map((c) => c.id),
    best.map((c) => c.id),
  );
  const merged = mergedCacheProbabilities(answers, 50, k, C)!;
  const whole = cacheProbabilities(
    best.map((c) => c.similarity),
    best.map((c) => c.label),
    50,
    C,
  );
  assert.deepEqual(Array.from(merged), Array.from(whole));
  assert.equal(mergedCacheProbabilities([{ candidates: [] }, { candidates: [] }], 50, k, C), null, 'no item anywhere: no p_cache');
});

test('shard assignment: stable, spread, and a shard name that no cache name can take', () => {
  assert.equal(shardOf('img-0', 4), shardOf('img-0', 4));
  assert.equal(shardOf('anything', 1), 0);
  const counts = new Array(4).fill(0);
  for (let i = 0; i < 4000; i++) counts[shardOf(`img-${i}`, 4)]++;
  for (const n of counts) assert.ok(n > 850 && n < 1150, `shard sizes ${counts}`);
  assert.equal(shardName('paper', 2, 4), 'paper#2');
  assert.equal(shardName('paper', 0, 1), 'paper');
  assert.deepEqual(parseShardName('paper#2'), { cache: 'paper', shard: 2 });
  assert.equal(parseShardName('paper'), null);
});
