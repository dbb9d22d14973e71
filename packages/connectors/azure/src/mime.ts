/** Content type for uploads that do not name one: the client's when it is well formed, else core's table by extension. */
import { DEFAULT_CONTENT_TYPE, mimeTypeFor } from '@cloudmux/core';

export { DEFAULT_CONTENT_TYPE };

export function contentTypeFor(name: string, given?: string | null): string {
  if (given && /^[\w.+-]+\/[\w.+-]+(\s*;.*)?$/.test(given) && !/[\r\n]/.test(given)) return given;
  return mimeTypeFor(name);
}
