// A model spec says how to feed an ONNX classifier and how to read its output.
// It lives beside the model as `<model>.spec.json` (or `<model>.json`), or is given as flags.
import { z } from 'zod';

export const ModelSpecSchema = z
  .object({
    input: z.string().min(1).describe('name of the graph input that takes the image batch'),
    layout: z.enum(['NCHW', 'NHWC']),
    height: z.number().int().min(1).max(4096),
    width: z.number().int().min(1).max(4096),
    channelOrder: z.enum(['RGB', 'BGR']).default('RGB'),
    /** value = ((pixel * scale) - mean[c]) / std[c], pixel in 0..255 */
    scale: z
      .number()
      .positive()
      .default(1 / 255),
    mean: z.array(z.number()).length(3).default([0, 0, 0]),
    std: z.array(z.number().positive()).length(3).default([1, 1, 1]),
    output: z.string().min(1).describe('name of the graph output holding class scores'),
    outputKind: z.enum(['probabilities', 'logits']),
    classes: z.array(z.string().min(1)).min(2),
  })
  .strict();

export type ModelSpec = z.infer<typeof ModelSpecSchema>;
