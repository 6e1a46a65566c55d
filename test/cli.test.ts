// The cachet command against a running service, as a user runs it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { writeTinyModel } from './fixtures/tiny-model.js';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { PAPER_KEY_LAYERS, REPO, RESNET, SAMPLE, sampleFolder, start, tempDir } from './harness.js';

const run = promisify(execFile);
const CLI = path.join(REPO, 'src', 'cli', 'main.ts');

async function cachet(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: REPO, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('cachet CLI', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  before(async () => {
    svc = await start();
  });
  after(async () => svc.close());

  test('model inspect lists every tensor with op type and shape', async () => {
    const r = await cachet(['model', 'inspect', RESNET, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    const byName = new Map(report.tensors.map((t: { name: string }) => [t.name, t]));
    assert.deepEqual(byName.get('activation_14'), { name: 'activation_14', opType: 'Relu', shape: [1, 64, 8, 8], size: 4096 });
    assert.deepEqual((byName.get('probs') as { shape: number[] }).shape, [1, 10]);
    assert.ok(report.tensors.length > 70);
  });

  test('cache create, index with flips, predict and eval --json', async () => {
    const url = svc.url;
    const created = await cachet([
      'cache',
      'create',
      'cli',
      '--model',
      RESNET,
      '--layers',
      PAPER_KEY_LAYERS.join(','),
      '--theta',
      '80',
      '--lambda',
      '0.5111',
      '--url',
      url,
    ]);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(JSON.parse(created.stdout).dimension, 12288);

    const indexed = await cachet(['index', 'cli', sampleFolder('cache', 5), '--flip', '--json'], { CACHET_URL: url });
    assert.equal(indexed.code, 0, indexed.stderr);
    assert.deepEqual(JSON.parse(indexed.stdout).result, { images: 50, added: 100, duplicates: 0, failed: 0, cacheSize: 100 });

    const ship = path.join(SAMPLE, 'heldout', 'ship', '4500.jpg');
    const predicted = await cachet(['predict', 'cli', ship, '--neighbours', '2', '--json', '--url', url]);
    assert.equal(predicted.code, 0, predicted.stderr);
    const p = JSON.parse(predicted.stdout).predictions[0];
    assert.equal(p.neighbours.length, 2);
    assert.equal(p.top.length, 5);
    // for people: a table, and no JSON
    const table = await cachet(['predict', 'cli', ship, '--neighbours', '2', '--url', url]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /class\s+p\s+p_model\s+p_cache/);
    assert.match(table.stdout, new RegExp(`\\n  ${p.top[0].class}\\s+${p.top[0].p.toFixed(4)}`));
    assert.equal((table.stdout.match(/neighbour /g) ?? []).length, 2);
    assert.ok(!table.stdout.includes('{'), 'no JSON without --json');
    const summary = await cachet(['index', 'cli', sampleFolder('cache', 5), '--flip', '--url', url]);
    assert.equal(summary.stdout.trim(), 'added 0 items (100 already present, 0 failed); cache cli holds 100');

    const evaluated = await cachet(['eval', 'cli', sampleFolder('heldout', 2), '--json', '--lambda', '0.3', '--url', url]);
    assert.equal(evaluated.code, 0, evaluated.stderr);
    const e = JSON.parse(evaluated.stdout);
    assert.equal(e.images, 20);
    assert.equal(e.lambda, 0.3);
    assert.equal(e.theta, 80);
    assert.deepEqual(Object.keys(e.error).sort(), ['cacheModel', 'cacheOnly', 'model']);

    const reports = tempDir();
    const robust = await cachet(
      [
        'robustness',
        'cli',
        sampleFolder('heldout', 2),
        '--per-class',
        '1',
        '--corruptions',
        'contrast',
        '--severities',
        '2,5',
        '--attacks',
        'transfer',
        '--epsilons',
        '4/255',
        '--queries',
        '5',
        '--report-dir',
        reports,
      ],
      { CACHET_URL: url },
    );
    assert.equal(robust.code, 0, robust.stderr);
    assert.match(robust.stdout, /^10 images, cache of 100 items, θ=80, λ=0.5111, seed 0/);
    assert.match(robust.stdout, /\ncontrast \(severity 5\): model [\d.]+ %, cache model [\d.]+ %, cache alone [\d.]+ %/);
    assert.match(robust.stdout, /\ntransfer attack, ε=4\/255: model [\d.]+ %.*; success [\d.—]+ % of \d+/);
    const dir = /report: (.*)\/report\.md/.exec(robust.stdout)![1];
    for (const file of ['report.md', 'robustness.svg', 'robustness.png', 'result.json']) assert.ok(readFileSync(path.join(REPO, dir, file)).length > 0, file);
    assert.equal(JSON.parse(readFileSync(path.join(REPO, dir, 'result.json'), 'utf8')).attacks.length, 1);

    const tuned = await cachet(['tune', 'cli', sampleFolder('heldout', 1), '--theta', '40,60', '--lambda', '0.3', '--dry-run', '--report-dir', reports], {
      CACHET_URL: url,
    });
    assert.equal(tuned.code, 0, tuned.stderr);
    const tuneDir = /report: (.*)\/report\.md/.exec(tuned.stdout)![1];
    assert.match(readFileSync(path.join(REPO, tuneDir, 'heatmap.svg'), 'utf8'), /^<svg/);
    assert.equal(JSON.parse(readFileSync(path.join(REPO, tuneDir, 'result.json'), 'utf8')).applied, false);
  });

  test('errors: the service message on stderr, a non-zero exit', async () => {
    const r = await cachet(['eval', 'nope', sampleFolder('heldout', 1), '--url', svc.url]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no cache named "nope"/);
    const down = await cachet(['cache', 'list', '--url', 'http://127.0.0.1:9']);
    assert.equal(down.code, 3);
    assert.match(down.stderr, /cannot reach the Cachet service/);
    const missing = await cachet(['predict', 'nope', '/no/such/image.jpg', '--url', svc.url]);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr.trim(), 'cachet: /no/such/image.jpg: no such file', 'one line, no stack trace');
  });

  test('layers run locally keeps to the memory budget of a layers job: over it, one line and no work', async () => {
    const train = sampleFolder('cache', 2);
    const over = await cachet(['layers', RESNET, '--train', train, '--val', sampleFolder('heldout', 1), '--max-memory', '1MiB', '--report-dir', tempDir()]);
    assert.equal(over.code, 2, over.stderr);
    assert.match(over.stderr, /^cachet: the layer advisor would hold about [\d.]+ MiB in memory, over this job's budget of 1\.00 MiB/);
    assert.equal(over.stderr.trim().split('\n').length, 1);
    assert.doesNotMatch(over.stderr, /extracting/, 'it stops before reading an image');
    const bad = await cachet(['layers', RESNET, '--train', train, '--val', train, '--max-memory', 'lots']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--max-memory.*give a size, e\.g\. 16GiB/);
  });

  test('your own model without a spec file: the spec as flags to cache create', async () => {
    const dir = tempDir('cachet-cli-own-');
    const model = path.join(dir, 'mine.onnx');
    copyFileSync(RESNET, model);
    const spec = JSON.parse(readFileSync(RESNET.replace(/\.onnx$/, '.spec.json'), 'utf8'));
    const without = await cachet(['cache', 'create', 'own-none', '--model', model, '--layers', 'activation_18', '--url', svc.url]);
    assert.equal(without.code, 2);
    assert.match(without.stderr, /--spec <file>/, 'the error says how to give the spec');
    // shards are for distributed mode: an embedded service says so
    const sharded = await cachet(['cache', 'create', 'own-sharded', '--model', RESNET, '--layers', 'activation_18', '--shards', '2', '--url', svc.url]);
    assert.notEqual(sharded.code, 0);
    assert.match(sharded.stderr, /distributed mode/);
    writeFileSync(path.join(dir, 'classes.txt'), spec.classes.join('\n') + '\n');
    const flags = ['--input', spec.input, '--output', spec.output, '--output-kind', spec.outputKind, '--layout', spec.layout];
    flags.push('--size', `${spec.width}x${spec.height}`, '--classes', path.join(dir, 'classes.txt'));
    if (spec.scale !== undefined) flags.push('--scale', String(spec.scale));
    if (spec.mean) flags.push('--mean', spec.mean.join(','));
    if (spec.std) flags.push('--std', spec.std.join(','));
    const created = await cachet(['cache', 'create', 'own', '--model', model, '--layers', 'activation_18', ...flags, '--url', svc.url]);
    assert.equal(created.code, 0, created.stderr);
    assert.deepEqual(JSON.parse(created.stdout).classes, spec.classes);
    writeFileSync(path.join(dir, 'spec.json'), JSON.stringify(spec));
    const fromFile = await cachet([
      'cache',
      'create',
      'own-file',
      '--model',
      model,
      '--layers',
      'activation_18',
      '--spec',
      path.join(dir, 'spec.json'),
      '--url',
      svc.url,
    ]);
    assert.equal(fromFile.code, 0, fromFile.stderr);
  });

  test('model init writes the spec from the graph and a probe run: NCHW logits, NHWC probabilities', async () => {
    const tiny = writeTinyModel();
    rmSync(tiny.specPath);
    const r = await cachet(['model', 'init', tiny.modelPath, '--classes', 'a,b,c,d', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const spec = JSON.parse(readFileSync(tiny.specPath, 'utf8'));
    assert.deepEqual(
      {
        input: spec.input,
        layout: spec.layout,
        height: spec.height,
        width: spec.width,
        output: spec.output,
        outputKind: spec.outputKind,
        classes: spec.classes,
      },
      { input: 'pixels', layout: 'NCHW', height: 16, width: 16, output: 'logits', outputKind: 'logits', classes: ['a', 'b', 'c', 'd'] },
    );
    assert.equal((await cachet(['model', 'init', tiny.modelPath])).code, 2, 'an existing spec is kept without --force');

    const dir = tempDir('cachet-cli-init-');
    const model = path.join(dir, 'resnet.onnx');
    copyFileSync(RESNET, model);
    const shipped = JSON.parse(readFileSync(RESNET.replace(/\.onnx$/, '.spec.json'), 'utf8'));
    const summary = await cachet(['model', 'init', model, '--classes', shipped.classes.join(',')]);
    assert.equal(summary.code, 0, summary.stderr);
    assert.match(summary.stdout, /outputKind\s+"probabilities"\s+a probe run/);
    assert.match(summary.stdout, /assumed/, 'says what it assumed');
    const written = JSON.parse(readFileSync(path.join(dir, 'resnet.spec.json'), 'utf8'));
    assert.deepEqual(written, shipped, "the paper's ResNet-20: the same spec as the one shipped beside it");
  });

  test('export and import: a cache through a file, verified on receipt', async () => {
    const file = path.join(tempDir('cachet-cli-export-'), 'c.cachet.tar');
    const out = await cachet(['cache', 'export', 'cli', file, '--url', svc.url]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /every checksum verified/);
    const back = await cachet(['cache', 'import', file, '--name', 'cli-copy', '--url', svc.url]);
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /imported cache "cli-copy"/);
    const verify = await cachet(['cache', 'verify', 'cli-copy', '--url', svc.url]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /cli-copy: ok/);
  });
});
