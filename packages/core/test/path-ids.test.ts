import { describe, expect, it } from 'vitest';
import { CloudmuxError, pathIds } from '../src/index.js';

const ids = pathIds({
  service: 'test',
  reserved: (s, depth) => depth === 0 && s === '.staging',
  reservedMessage: 'reserved',
});

describe('pathIds', () => {
  it('round-trips paths and walks parents', () => {
    expect(ids.parse('/')).toEqual([]);
    expect(ids.parse('/a/b c/ü.txt')).toEqual(['a', 'b c', 'ü.txt']);
    expect(ids.toRawId(['a', 'b'])).toBe('/a/b');
    expect(ids.child('/a', 'b.txt')).toBe('/a/b.txt');
    expect(ids.parentOf('/a/b.txt')).toBe('/a');
    expect(ids.parentOf('/')).toBeNull();
    expect(ids.nameOf('/a/b.txt')).toBe('b.txt');
    expect(ids.nameOf('/')).toBe('');
  });

  it.each(['', 'relative', '/a/../b', '/./a', '/a\\b', '/a\u0000b', '/a\nb', '/.staging', '/.staging/x'])(
    'raw id %j is not_found',
    (rawId) => {
      expect(() => ids.parse(rawId)).toThrow(CloudmuxError);
      try {
        ids.parse(rawId);
      } catch (err) {
        expect((err as CloudmuxError).code).toBe('not_found');
      }
    },
  );

  it('reserved names are only reserved where the connector says, and new names are checked', () => {
    expect(ids.parse('/sub/.staging')).toEqual(['sub', '.staging']);
    expect(() => ids.child('/', '.staging')).toThrow(/reserved/);
    expect(ids.child('/sub', '.staging')).toBe('/sub/.staging');
    for (const bad of ['..', 'a/b', 'a\\b', '']) expect(() => ids.child('/', bad)).toThrow(CloudmuxError);
  });
});
