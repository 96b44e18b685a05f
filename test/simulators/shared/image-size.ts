/** Width and height of a PNG from its IHDR chunk, or undefined for anything else. */
export function pngSize(data: Buffer): { width: number; height: number } | undefined {
  // PNG signature (8 bytes), then the IHDR chunk: length (4), "IHDR" (4), width (4), height (4).
  const signature = '89504e470d0a1a0a';
  if (data.length < 24 || data.subarray(0, 8).toString('hex') !== signature) return undefined;
  if (data.subarray(12, 16).toString('ascii') !== 'IHDR') return undefined;
  return { width: data.readUInt32BE(16), height: data.readUInt32BE(20) };
}
