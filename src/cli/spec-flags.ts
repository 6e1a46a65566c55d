// The model spec as command-line flags (cache create, model init): a file, and fields over it.
import { promises as fs } from 'node:fs';
import { Command, Option } from 'commander';
import { UserError } from '../errors/user-error.js';
import { num } from './args.js';

export function addSpecOptions(command: Command): Command {
  return command
    .option('--spec <file>', 'a model spec file (JSON) to use instead of the one beside the model; the flags below override it')
    .option('--input <name>', 'spec: the graph input that takes the images')
    .option('--output <name>', 'spec: the graph output with the class scores')
    .addOption(new Option('--output-kind <kind>', 'spec: what the output holds').choices(['probabilities', 'logits']))
    .addOption(new Option('--layout <layout>', 'spec: the input layout').choices(['NCHW', 'NHWC']))
    .option('--size <WxH>', 'spec: the input width × height, e.g. 224x224')
    .addOption(new Option('--channel-order <order>', 'spec: channel order').choices(['RGB', 'BGR']))
    .option('--scale <s>', 'spec: value = (pixel·scale − mean) / std, pixel in 0..255 (default 1/255)', num)
    .option('--mean <r,g,b>', 'spec: per-channel mean, e.g. 0.485,0.456,0.406')
    .option('--std <r,g,b>', 'spec: per-channel std, e.g. 0.229,0.224,0.225')
    .option('--classes <names|file>', 'spec: class names, comma-separated, or a file with one per line');
}

/** The model spec given on the command line: a file, then single fields over it (sent as the definition's `spec`). */
export async function specOverrides(o: Record<string, string | number | boolean | undefined>): Promise<Record<string, unknown>> {
  const spec: Record<string, unknown> = {};
  if (o.spec !== undefined) {
    const file = String(o.spec);
    let parsed: unknown;
    try {
      parsed = JSON.parse(await fs.readFile(file, 'utf8'));
    } catch (err) {
      throw new UserError('bad_model_spec', `--spec ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UserError('bad_model_spec', `--spec ${file} must hold a JSON object`);
    Object.assign(spec, parsed);
  }
  const triple = (flag: string, v: unknown) => {
    const values = String(v).split(',').map(Number);
    if (values.length !== 3 || values.some((x) => !Number.isFinite(x)))
      throw new UserError('bad_model_spec', `${flag} takes three numbers, e.g. 0.485,0.456,0.406`);
    return values;
  };
  if (o.input !== undefined) spec.input = o.input;
  if (o.output !== undefined) spec.output = o.output;
  if (o.outputKind !== undefined) spec.outputKind = o.outputKind;
  if (o.layout !== undefined) spec.layout = o.layout;
  if (o.channelOrder !== undefined) spec.channelOrder = o.channelOrder;
  if (o.scale !== undefined) spec.scale = o.scale;
  if (o.mean !== undefined) spec.mean = triple('--mean', o.mean);
  if (o.std !== undefined) spec.std = triple('--std', o.std);
  if (o.size !== undefined) {
    const m = /^(\d+)x(\d+)$/i.exec(String(o.size));
    if (!m) throw new UserError('bad_model_spec', `--size takes WIDTHxHEIGHT, e.g. 224x224 (got ${o.size})`);
    spec.width = Number(m[1]);
    spec.height = Number(m[2]);
  }
  if (o.classes !== undefined) {
    const given = String(o.classes);
    const fromFile = await fs.readFile(given, 'utf8').catch(() => null);
    spec.classes = (fromFile ?? given)
      .split(fromFile === null ? ',' : '\n')
      .map((c) => c.trim())
      .filter(Boolean);
  }
  return spec;
}
