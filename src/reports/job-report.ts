// A finished job's report for people: Markdown, and a chart as SVG or PNG (the SVG
// rendered by sharp's librsvg, for tools that show pictures but not SVG).
import sharp from 'sharp';
import { UserError } from '../errors/user-error.js';
import type { JobView } from '../jobs/types.js';
import { evalBySizeSvg, evalMarkdown } from './eval-report.js';
import { tuneHeatmapSvg, tuneMarkdown } from './tune-report.js';
import { layersMarkdown, layersSvg } from './layers-report.js';
import { LayerAdvice } from '../advisor/advice.js';
import { EvalJobResult, TuneResult } from '../jobs/results.js';
import type { RobustnessResult } from '../robustness/result.js';
import { robustnessMarkdown, robustnessSvg } from './robustness-report.js';

export type ReportFormat = 'json' | 'md' | 'svg' | 'png';

/** PNG pixels per SVG unit: 2 keeps text sharp on high-density screens. */
const PNG_SCALE = 2;

export function reportMarkdown(job: JobView): string {
  switch (job.type) {
    case 'eval':
      return evalMarkdown(job.result as EvalJobResult);
    case 'tune':
      return tuneMarkdown(job.result as TuneResult);
    case 'layers':
      return layersMarkdown(job.result as LayerAdvice);
    case 'robustness':
      return robustnessMarkdown(job.result as RobustnessResult);
    default:
      throw new UserError('no_such_report', `an ${job.type} job's report comes as format=json`);
  }
}

/** The job's chart: the tune heatmap, the eval error against cache size, the layers ranking, the robustness curves. */
export function reportSvg(job: JobView): string {
  switch (job.type) {
    case 'tune':
      return tuneHeatmapSvg(job.result as TuneResult);
    case 'layers':
      return layersSvg(job.result as LayerAdvice);
    case 'robustness':
      return robustnessSvg(job.result as RobustnessResult);
    case 'eval': {
      const svg = evalBySizeSvg(job.result as EvalJobResult);
      if (!svg)
        throw new UserError(
          'no_such_report',
          `job ${job.id} did not measure the error against cache size (give cacheSizes): its report comes as format=json or md`,
        );
      return svg;
    }
    default:
      throw new UserError('no_such_report', `an ${job.type} job's report comes as format=json`);
  }
}

export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density: 72 * PNG_SCALE })
    .png()
    .toBuffer();
}
