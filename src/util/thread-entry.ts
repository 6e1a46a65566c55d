// The entry URL of a worker thread, compiled or from TypeScript source.

/**
 * The compiled `<name>.js` beside `base` (a module's import.meta.url), or, when running from
 * TypeScript source (tests, tsx), a bootstrap that registers tsx in the new thread first: on
 * Node 20 a worker does not inherit the parent's `--import tsx` loader hooks.
 */
export function threadEntry(base: string, name: string): URL {
  if (!base.endsWith('.ts')) return new URL(`./${name}.js`, base);
  const tsx = import.meta.resolve('tsx/esm/api');
  const thread = new URL(`./${name}.ts`, base).href;
  const code = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(thread)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}
