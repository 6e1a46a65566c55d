// Loading a model spec: `<model>.spec.json` beside the model (or `<model>.json`), overrides on top.
import { stat } from 'node:fs/promises';
import { readGuarded } from '../util/guarded-read.js';
import type { z } from 'zod';
import { UserError } from '../errors/user-error.js';
import { ModelSpecSchema, type ModelSpec } from './spec.js';

/** Where the spec file of a model is looked for, in order. */
export function specFileCandidates(modelPath: string): string[] {
  const base = modelPath.replace(/\.onnx$/i, '');
  return [`${base}.spec.json`, `${base}.json`];
}

async function readSpecFile(modelPath: string): Promise<{ path?: string; data: Record<string, unknown> }> {
  for (const path of specFileCandidates(modelPath)) {
    let text: string;
    try {
      await stat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
    }
    try {
      text = (await readGuarded(path, { what: 'model spec', maxBytes: 1 << 20 })).toString('utf8');
    } catch (err) {
      throw new UserError('bad_model_spec', `cannot read model spec: ${(err as Error).message}`);
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new UserError('bad_model_spec', `model spec ${path} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new UserError('bad_model_spec', `model spec ${path} must be a JSON object`);
    return { path, data: data as Record<string, unknown> };
  }
  return { data: {} };
}

function describeIssue(issue: z.core.$ZodIssue, given: Record<string, unknown>): string {
  const field = issue.path.join('.') || '(spec)';
  if (issue.code === 'unrecognized_keys') return `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.path.length === 1 && given[String(issue.path[0])] === undefined)
    return `"${field}" is missing (${issue.message.replace(/, received undefined$/, '').replace(/^Invalid input: /, '')})`;
  return `"${field}": ${issue.message} (got ${JSON.stringify(issue.path.reduce<unknown>((o, k) => (o as Record<PropertyKey, unknown>)?.[k], given))})`;
}

export async function loadModelSpec(modelPath: string, overrides: Partial<ModelSpec> = {}): Promise<ModelSpec> {
  const file = await readSpecFile(modelPath);
  const definedOverrides = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  const merged = { ...file.data, ...definedOverrides };
  const result = ModelSpecSchema.safeParse(merged);
  if (result.success) return result.data;
  const where = file.path
    ? `read from ${file.path}${Object.keys(definedOverrides).length ? ' plus overrides' : ''}`
    : `no spec file found (expected ${specFileCandidates(modelPath)[0]}), so every required field must be given: write that file, or give the fields (\`cachet cache create --spec <file>\` or --input, --output, --output-kind, --layout, --size, --classes; over HTTP the definition's "spec")`;
  const issues = result.error.issues.map((i) => `  - ${describeIssue(i, merged)}`).join('\n');
  throw new UserError('bad_model_spec', `bad model spec for ${modelPath} (${where}):\n${issues}`, {
    details: {
      specFile: file.path ?? specFileCandidates(modelPath)[0],
      issues: result.error.issues.map((i) => ({ field: i.path.join('.'), message: i.message })),
    },
  });
}
