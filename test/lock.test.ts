// A cache's lock (src/util/mutex.ts): changes are exclusive, searches and snapshots only read, and
// searches pass a change that waits for a snapshot, without starving it afterwards.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Mutex } from '../src/util/mutex.js';

/** A section that records its start and end and returns when `open()` is called. */
function gate(log: string[], name: string) {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return {
    open: () => open(),
    section: async () => {
      log.push(`${name}+`);
      await opened;
      log.push(`${name}-`);
      return name;
    },
  };
}
const tick = () => new Promise((r) => setImmediate(r));

test('readers run together; a change waits for them, and readers after it wait for the change', async () => {
  const lock = new Mutex();
  const log: string[] = [];
  const [r1, r2, w, r3] = [gate(log, 'r1'), gate(log, 'r2'), gate(log, 'w'), gate(log, 'r3')];
  const done = [lock.read(r1.section), lock.read(r2.section), lock.run(w.section), lock.read(r3.section)];
  await tick();
  assert.deepEqual(log, ['r1+', 'r2+'], 'two readers at once; the change waits; the reader after it too');
  r1.open();
  r2.open();
  await tick();
  assert.deepEqual(log.slice(2), ['r1-', 'r2-', 'w+']);
  w.open();
  await tick();
  assert.deepEqual(log.slice(5), ['w-', 'r3+']);
  r3.open();
  assert.deepEqual(await Promise.all(done), ['r1', 'r2', 'w', 'r3']);
});

test('while a snapshot (a long reader) holds the lock, searches pass the change waiting for it', async () => {
  const lock = new Mutex();
  const log: string[] = [];
  const [snap, w, s1, s2] = [gate(log, 'snapshot'), gate(log, 'w'), gate(log, 's1'), gate(log, 's2')];
  const done = [lock.read(snap.section, { long: true }), lock.run(w.section), lock.read(s1.section)];
  await tick();
  assert.deepEqual(log, ['snapshot+', 's1+'], 'the search runs beside the snapshot, ahead of the change');
  s1.open();
  await tick();
  snap.open();
  await tick();
  assert.deepEqual(log.slice(2), ['s1-', 'snapshot-', 'w+'], 'the change goes once the snapshot is written');
  done.push(lock.read(s2.section));
  await tick();
  assert.ok(!log.includes('s2+'), 'no snapshot now: a new search waits behind the change');
  w.open();
  await tick();
  assert.deepEqual(log.slice(5), ['w-', 's2+']);
  s2.open();
  await Promise.all(done);
});

test('changes run one at a time, in order; a failed one does not hold the next', async () => {
  const lock = new Mutex();
  const order: number[] = [];
  const results = await Promise.allSettled([
    lock.run(async () => {
      await tick();
      order.push(1);
      throw new Error('boom');
    }),
    lock.run(async () => void order.push(2)),
    lock.read(async () => void order.push(3)),
  ]);
  assert.deepEqual(order, [1, 2, 3]);
  assert.equal(results[0].status, 'rejected');
});
