// Huge pages for what a cache reads at random: its full keys (GBs, for re-ranking) and its hnsw
// graph. On 4 KB pages a 24 KB float16 key row spans 6 pages, each a TLB miss, and in a virtual
// machine each miss walks two page tables: measured here, copying a random row of the paper's
// 2.2 GB of full keys took 12 µs on 4 KB pages and 2 µs on 2 MB ones, and the re-rank of one
// query's 100 candidates 3.2 → 0.7 ms. Typed arrays and hnswlib take their memory from glibc's
// malloc, which asks the kernel for transparent huge pages when the tunable below is set. glibc
// reads it when the process starts, so it must be in the environment before node runs: the
// Dockerfile sets it, and so should whatever starts `cachet serve` (README, "Operating Cachet").
// It is glibc's: on musl (Alpine) it does nothing, and the status below cannot tell.
import { readFileSync } from 'node:fs';

export const HUGE_PAGES_TUNABLE = 'glibc.malloc.hugetlb=1';

/** `env` with GLIBC_TUNABLES asking for huge pages, unless it already says something of hugetlb. */
export function withHugePages(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const tunables = env.GLIBC_TUNABLES ?? '';
  if (/(^|:)glibc\.malloc\.hugetlb=/.test(tunables)) return env;
  return { ...env, GLIBC_TUNABLES: tunables ? `${tunables}:${HUGE_PAGES_TUNABLE}` : HUGE_PAGES_TUNABLE };
}

export interface HugePagesStatus {
  on: boolean;
  /** one sentence for the operator */
  detail: string;
  /** whether the operator can turn them on (then the service warns at start) */
  fixable: boolean;
}

/**
 * Whether this process's malloc'd memory gets transparent huge pages, from its GLIBC_TUNABLES and
 * the kernel's mode (`thpMode`: the bracketed word of /sys/kernel/mm/transparent_hugepage/enabled,
 * null where there is none, as on macOS).
 */
export function hugePagesStatus(env: NodeJS.ProcessEnv = process.env, thpMode: string | null = readThpMode()): HugePagesStatus {
  if (thpMode === null) return { on: false, fixable: false, detail: 'this system has no transparent huge pages' };
  if (thpMode === 'always') return { on: true, fixable: false, detail: 'the kernel gives every allocation transparent huge pages' };
  if (thpMode === 'never') {
    return { on: false, fixable: false, detail: 'the kernel has transparent huge pages off (/sys/kernel/mm/transparent_hugepage/enabled: never)' };
  }
  const asked = /(^|:)glibc\.malloc\.hugetlb=1(:|$)/.test(env.GLIBC_TUNABLES ?? '');
  return asked
    ? { on: true, fixable: false, detail: `malloc asks for transparent huge pages (GLIBC_TUNABLES=${env.GLIBC_TUNABLES})` }
    : {
        on: false,
        fixable: true,
        detail: `malloc does not ask for transparent huge pages: start the service with GLIBC_TUNABLES=${HUGE_PAGES_TUNABLE} (re-ranking a single image's candidates is ~4× faster with it)`,
      };
}

/** The kernel's transparent-huge-page mode (`always`, `madvise`, `never`), or null where it has none. */
export function readThpMode(): string | null {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}
