import { describe, expect, it } from 'vitest';
import {
  CloudmuxError,
  hasControlCharacter,
  isBadPathSegment,
  normalizeBasePath,
  pathAncestors,
  pathIds,
} from '../src/index.js';

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

describe('normalizeBasePath', () => {
  it('gives the raw-id form of a configured base path', () => {
    expect(normalizeBasePath('/')).toBe('/');
    expect(normalizeBasePath('//srv///data/')).toBe('/srv/data');
    expect(normalizeBasePath('/a b/ü')).toBe('/a b/ü');
  });

  it('refuses relative paths, dot segments, backslashes and control characters', () => {
    for (const bad of ['', 'srv', '/srv/../etc', '/./x', '/a\\b', '/a\nb', '/a\u0000', '/a\u007f']) {
      expect(() => normalizeBasePath(bad), JSON.stringify(bad)).toThrow(CloudmuxError);
    }
  });

  it('shares its segment rule with the raw ids', () => {
    for (const segment of ['.', '..', 'a\\b', 'a\rb']) expect(isBadPathSegment(segment)).toBe(true);
    for (const segment of ['a', '...', 'a.b', 'ü']) expect(isBadPathSegment(segment)).toBe(false);
    expect(hasControlCharacter('tab\there')).toBe(true);
    expect(hasControlCharacter('plain')).toBe(false);
  });
});

describe('pathAncestors', () => {
  it('lists the base and every folder above the item, outermost first', () => {
    expect(pathAncestors([])).toEqual([]);
    expect(pathAncestors(['top.txt'])).toEqual([{ rawId: '/', name: '' }]);
    expect(pathAncestors(['a', 'b c', 'ü.txt'])).toEqual([
      { rawId: '/', name: '' },
      { rawId: '/a', name: 'a' },
      { rawId: '/a/b c', name: 'b c' },
    ]);
  });
});
