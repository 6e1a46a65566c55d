// Huge pages for the keys (src/util/huge-pages.ts): the environment that asks for them, what the
// service says at start, and that the tunable really gives a process's typed arrays huge pages.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { HUGE_PAGES_TUNABLE, hugePagesStatus, readThpMode, withHugePages } from '../src/util/huge-pages.js';

const run = promisify(execFile);

describe('huge pages', () => {
  test('withHugePages adds the tunable, keeps other tunables, and never overrides a hugetlb the operator set', () => {
    assert.equal(withHugePages({}).GLIBC_TUNABLES, HUGE_PAGES_TUNABLE);
    assert.equal(withHugePages({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, `glibc.malloc.arena_max=2:${HUGE_PAGES_TUNABLE}`);
    assert.equal(withHugePages({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }).GLIBC_TUNABLES, 'glibc.malloc.hugetlb=0');
    const env = { PATH: '/bin' };
    assert.equal(withHugePages(env).PATH, '/bin');
    assert.equal((env as NodeJS.ProcessEnv).GLIBC_TUNABLES, undefined, 'the given environment is not changed');
  });

  test('the start-up status: on, off and fixable (with what to set), or off for reasons the operator of the service cannot change', () => {
    const off = hugePagesStatus({}, 'madvise');
    assert.deepEqual([off.on, off.fixable], [false, true]);
    assert.match(off.detail, /GLIBC_TUNABLES=glibc\.malloc\.hugetlb=1/);
    assert.deepEqual(
      [
        hugePagesStatus({ GLIBC_TUNABLES: 'a=1:glibc.malloc.hugetlb=1' }, 'madvise').on,
        hugePagesStatus({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }, 'madvise').on,
      ],
      [true, false],
    );
    assert.deepEqual([hugePagesStatus({}, 'always').on, hugePagesStatus({}, 'always').fixable], [true, false]);
    for (const mode of ['never', null]) assert.deepEqual([hugePagesStatus({}, mode).on, hugePagesStatus({}, mode).fixable], [false, false]);
  });

  // The tunable is read by glibc at process start: a child allocates and touches 256 MB of typed
  // arrays (as the full-key store does) and reports its anonymous huge pages.
  const thp = readThpMode();
  test('a process started with the tunable holds its typed arrays in huge pages', { skip: thp !== 'madvise' && `transparent huge pages: ${thp}` }, async () => {
    const child = `const blocks = Array.from({ length: 2 }, () => new Uint16Array(64 * 1024 * 1024).fill(1));
      const kb = /AnonHugePages:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/smaps_rollup', 'utf8'))[1];
      console.log(kb, blocks.length);`;
    const hugeKb = async (env: NodeJS.ProcessEnv) => Number((await run(process.execPath, ['-e', child], { env })).stdout.split(' ')[0]);
    const { GLIBC_TUNABLES: _, ...without } = process.env;
    assert.equal(await hugeKb(without), 0, 'in madvise mode, without the tunable: no huge pages');
    assert.ok((await hugeKb(withHugePages(without))) >= 128 * 1024, 'with it, at least half of the 256 MB is in huge pages');
  });
});
