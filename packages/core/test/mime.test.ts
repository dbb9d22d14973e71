import { describe, expect, it } from 'vitest';
import { DEFAULT_CONTENT_TYPE, mimeTypeFor } from '../src/index.js';

describe('mimeTypeFor', () => {
  it.each([
    ['report.PDF', 'application/pdf'],
    ['photo.jpeg', 'image/jpeg'],
    ['notes.txt', 'text/plain'],
    ['sheet.xlsx', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'],
    ['archive.tar.gz', 'application/gzip'],
    ['README', DEFAULT_CONTENT_TYPE],
    ['.bashrc', DEFAULT_CONTENT_TYPE],
    ['trailing.', DEFAULT_CONTENT_TYPE],
    ['unknown.zzz', DEFAULT_CONTENT_TYPE],
  ])('%s → %s', (name, type) => {
    expect(mimeTypeFor(name)).toBe(type);
  });
});
