/** `rangeSlice`: a Range answered with the whole file (200) is cut down to the bytes asked for. */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { rangeSlice } from '../src/index.js';

async function sliced(chunks: string[], skip: number, length: number) {
  let done = 0;
  const out: Buffer[] = [];
  const slicer = rangeSlice(skip, length, () => done++);
  Readable.from(chunks.map((c) => Buffer.from(c))).pipe(slicer);
  for await (const chunk of slicer) out.push(chunk as Buffer);
  return { text: Buffer.concat(out).toString(), done };
}

describe('rangeSlice', () => {
  it('passes exactly the asked bytes across chunk boundaries, and calls onDone once', async () => {
    expect(await sliced(['0123', '4567', '89ab'], 3, 6)).toEqual({ text: '345678', done: 1 });
    expect(await sliced(['0123456789'], 0, 1)).toEqual({ text: '0', done: 1 });
    expect(await sliced(['01', '23', '45'], 5, 1)).toEqual({ text: '5', done: 1 });
  });

  it('ends with what there is when the source is shorter (onDone not called)', async () => {
    expect(await sliced(['0123'], 2, 10)).toEqual({ text: '23', done: 0 });
  });
});
