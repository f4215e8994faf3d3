import { describe, expect, test } from 'vitest';
import { SSEParser, type SSEEvent } from './sse';

function all(chunks: string[]): { events: SSEEvent[]; p: SSEParser } {
  const p = new SSEParser();
  const events = chunks.flatMap((c) => p.push(c));
  return { events, p };
}

describe('SSEParser', () => {
  test.each([
    ['one event', ['data: {"a":1}\n\n'], [{ event: 'message', data: '{"a":1}', id: '' }]],
    ['named event with id', ['event: position\nid: 7\ndata: x\n\n'], [{ event: 'position', data: 'x', id: '7' }]],
    ['multi-line data', ['data: a\ndata: b\n\n'], [{ event: 'message', data: 'a\nb', id: '' }]],
    ['no space after colon', ['data:x\n\n'], [{ event: 'message', data: 'x', id: '' }]],
    ['only first space stripped', ['data:  x\n\n'], [{ event: 'message', data: ' x', id: '' }]],
    ['comments ignored', [': keep-alive\n\n', 'data: y\n\n'], [{ event: 'message', data: 'y', id: '' }]],
    ['CRLF', ['data: a\r\n\r\ndata: b\r\n\r\n'], [{ event: 'message', data: 'a', id: '' }, { event: 'message', data: 'b', id: '' }]],
    ['CR only', ['data: a\r\rdata: b\r\r'], [{ event: 'message', data: 'a', id: '' }, { event: 'message', data: 'b', id: '' }]],
    ['CRLF split across chunks', ['data: a\r', '\n\r', '\n'], [{ event: 'message', data: 'a', id: '' }]],
    ['split mid-field', ['da', 'ta: hel', 'lo\n', '\n'], [{ event: 'message', data: 'hello', id: '' }]],
    ['event without data dispatches nothing', ['event: x\n\n'], []],
    ['incomplete event held back', ['data: a\n'], []],
    ['id persists to later events', ['id: 3\ndata: a\n\ndata: b\n\n'], [{ event: 'message', data: 'a', id: '3' }, { event: 'message', data: 'b', id: '3' }]],
    ['event name resets', ['event: alert\ndata: a\n\ndata: b\n\n'], [{ event: 'alert', data: 'a', id: '' }, { event: 'message', data: 'b', id: '' }]],
    ['unknown fields ignored', ['foo: bar\ndata: a\n\n'], [{ event: 'message', data: 'a', id: '' }]],
    ['empty data line', ['data\n\n'], [{ event: 'message', data: '', id: '' }]],
  ])('%s', (_n, chunks, want) => expect(all(chunks).events).toEqual(want));

  test('retry', () => {
    expect(all(['retry: 1500\n\n']).p.retry).toBe(1500);
    expect(all(['retry: soon\n\n']).p.retry).toBe(0);
  });

  test('any chunking gives the same events (seeded)', () => {
    const stream = 'event: position\ndata: {"id":"t1"}\r\n\r\n: ping\n\ndata: a\rdata: b\r\rid: 9\ndata: z\n\n';
    const want = all([stream]).events;
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 500; trial++) {
      const chunks: string[] = [];
      for (let i = 0; i < stream.length; ) {
        const n = 1 + Math.floor(rnd() * 6);
        chunks.push(stream.slice(i, i + n));
        i += n;
      }
      const got = all(chunks).events;
      if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`seed 42 trial ${trial}: chunks ${JSON.stringify(chunks)}`);
    }
    expect(want).toHaveLength(3);
  });
});
