// Parsers for numeric command-line arguments, with messages commander shows.
import { InvalidArgumentError } from 'commander';

export const num = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('not a number');
  return n;
};

export const int = (v: string): number => {
  const n = num(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('not an integer');
  return n;
};

export const positiveInt = (v: string): number => {
  const n = int(v);
  if (n < 1) throw new InvalidArgumentError('not a positive integer');
  return n;
};

export const nonNegativeInt = (v: string): number => {
  const n = int(v);
  if (n < 0) throw new InvalidArgumentError('must be ≥ 0');
  return n;
};

export const nonNegative = (v: string): number => {
  const n = num(v);
  if (n < 0) throw new InvalidArgumentError('must be ≥ 0');
  return n;
};

/** "a, b,c" → ["a", "b", "c"] */
export const list = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
