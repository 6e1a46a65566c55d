// The engine's books of what it knows of each cache: every map changes together.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CacheDefinition } from '../src/cache/definition.js';
import type { CacheState } from '../src/engine/cache-state.js';
import { HeldCaches } from '../src/engine/held-caches.js';
import { UserError } from '../src/errors/user-error.js';

// HeldCaches only files caches away: any object stands for one
const state = (name: string) => ({ definition: { name } }) as unknown as CacheState;
const code = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof UserError);
    return err.code;
  }
  return 'no error';
};

describe('HeldCaches', () => {
  test('each name says why it has no cache: unknown, failed, damaged, of several shards', () => {
    const held = new HeldCaches();
    assert.equal(
      code(() => held.get('a')),
      'unknown_cache',
    );
    held.failedToOpen('a', 'its model is gone', false);
    held.failedToOpen('b', 'hnsw.bin does not match its checksum', true);
    held.sharded.set('c', { name: 'c', shards: 3 } as CacheDefinition);
    assert.equal(
      code(() => held.get('a')),
      'cache_unavailable',
    );
    assert.equal(
      code(() => held.get('b')),
      'cache_damaged',
    );
    assert.equal(
      code(() => held.get('c')),
      'per_shard',
    );
    assert.deepEqual(
      held.failures().map((f) => [f.name, f.status]),
      [
        ['a', 'failed'],
        ['b', 'damaged'],
      ],
    );
    assert.ok(held.knows('a') && held.knows('b') && held.knows('c') && !held.knows('d'));
    assert.equal(held.heldOrFailed('a'), undefined); // verify and delete work on its files
    assert.equal(
      code(() => held.heldOrFailed('c')),
      'per_shard',
    );
    assert.equal(
      code(() => held.heldOrFailed('d')),
      'unknown_cache',
    );
    held.failedToOpen('b', 'its model is gone', false); // failed again, for another reason
    assert.equal(
      code(() => held.get('b')),
      'cache_unavailable',
    );
    held.opened('b', state('b')); // opened after all: neither failed nor damaged
    assert.equal(held.get('b').definition.name, 'b');
    assert.equal(held.heldOrFailed('b')?.definition.name, 'b');
    assert.deepEqual(held.failures(), [{ name: 'a', status: 'failed', error: 'its model is gone' }]);
    held.progress.set('b', { name: 'b', phase: 'ready', done: 1, total: 1 });
    held.released('b'); // being closed: neither held nor listed as opening
    assert.ok(!held.knows('b') && !held.progress.has('b'));
  });

  test('a cache of several shards leaves with every shard at once, held or failed', () => {
    const held = new HeldCaches();
    const d = { name: 's', shards: 3 } as CacheDefinition;
    held.sharded.set('s', d);
    held.opened('s#0', state('s#0'));
    held.opened('s#2', state('s#2'));
    held.failedToOpen('s#1', 'no snapshot', true);
    held.progress.set('s#2', { name: 's#2', phase: 'ready', done: 1, total: 1 });
    held.opened('t', state('t'));
    assert.deepEqual(
      held.shardsOf(d).map((c) => c.definition.name),
      ['s#0', 's#2'],
    );
    const closing = held.forgetSharded(d);
    assert.deepEqual(
      closing.map((c) => c.definition.name),
      ['s#0', 's#2'],
    );
    for (const name of ['s', 's#0', 's#1', 's#2']) assert.ok(!held.knows(name), name);
    assert.equal(held.progress.size, 0);
    assert.deepEqual([...held.open.keys()], ['t']);
    assert.equal(
      code(() => held.get('s#1')),
      'unknown_cache',
    );
  });
});
