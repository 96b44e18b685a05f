/**
 * Images: PNGs with embedded generation parameters, grids, progress previews and platform size
 * limits. Everything works on `RawImage` (8-bit RGB, HWC) from the pipeline.
 */
export { InvalidImageError } from './errors.js';
export { readExifUserComment } from './exif.js';
export { type FitOptions, type FittedImage, fitUploadLimit, type UploadFormat } from './fit.js';
export { type GridLayout, type GridOptions, gridLayout, makeGrid } from './grid.js';
export { formatParameters, type ParsedParameters, parseParameters } from './parameters.js';
export { encodePng, PARAMETERS_KEYWORD, type PngOptions, readPngText } from './png.js';
export { encodePreview, type PreviewOptions, previewMimeType } from './preview.js';
export { readImageParameters } from './read.js';
