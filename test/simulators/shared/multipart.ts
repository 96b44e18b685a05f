/** One file part of a multipart/form-data body. */
export interface UploadedPart {
  /** The form field name, e.g. `files[0]`. */
  field: string;
  filename: string;
  contentType: string | undefined;
  data: Buffer;
}

export interface ParsedForm {
  fields: Map<string, string>;
  files: UploadedPart[];
}

/**
 * Parses multipart/form-data with the platform's own parser (undici's `Response#formData`, the
 * same code `fetch` uses), so the simulators accept exactly what a spec-following client sends.
 */
export async function parseMultipart(body: Buffer, contentType: string): Promise<ParsedForm> {
  const form = await new Response(new Uint8Array(body), {
    headers: { 'content-type': contentType },
  }).formData();
  const fields = new Map<string, string>();
  const files: UploadedPart[] = [];
  // `forEach` rather than iteration: the project's lib settings have DOM but not DOM.Iterable.
  const entries: [string, FormDataEntryValue][] = [];
  form.forEach((value, field) => {
    entries.push([field, value]);
  });
  for (const [field, value] of entries) {
    if (typeof value === 'string') {
      fields.set(field, value);
    } else {
      files.push({
        field,
        filename: value.name,
        contentType: value.type || undefined,
        data: Buffer.from(await value.arrayBuffer()),
      });
    }
  }
  return { fields, files };
}

export function isMultipart(contentType: string | undefined): contentType is string {
  return contentType?.toLowerCase().startsWith('multipart/form-data') ?? false;
}
