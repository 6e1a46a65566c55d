// Suggesting valid tensor names when a user mistypes one.

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

const stem = (s: string) => s.toLowerCase().replace(/[_\-.:/]*\d+$/, '');

/** Up to `k` names from `valid` closest to `wanted`: same stem first (activation_14 → activation_*), then by edit distance. */
export function nearestNames(wanted: string, valid: string[], k = 5): string[] {
  const w = stem(wanted);
  return [...new Set(valid)]
    .map((name) => ({ name, sameStem: stem(name) === w ? 0 : 1, d: editDistance(wanted.toLowerCase(), name.toLowerCase()) }))
    .sort((a, b) => a.sameStem - b.sameStem || a.d - b.d)
    .slice(0, k)
    .map((x) => x.name);
}
