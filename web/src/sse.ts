// A Server-Sent Events parser (the WHATWG "event stream" format) for the
// live feed. The page reads GET /v1/stream with fetch rather than
// EventSource so that it can send the session cookie and stop cleanly; this
// parser turns the decoded text chunks into events. Unit-tested.

export interface SSEEvent {
  /** the event field; "message" when the server named none */
  event: string;
  /** the data lines joined with "\n" */
  data: string;
  /** the last event ID seen so far */
  id: string;
}

/** SSEParser accepts text in arbitrary chunks (a line, an event or a field
 * may be split anywhere, CR LF pairs included) and returns the events each
 * chunk completes. */
export class SSEParser {
  private buf = '';
  private data: string[] = [];
  private event = '';
  private lastID = '';
  private sawCR = false;
  /** retry is the reconnection delay the server asked for, in ms (0: none). */
  retry = 0;

  push(chunk: string): SSEEvent[] {
    const out: SSEEvent[] = [];
    let s = chunk;
    if (this.sawCR && s.startsWith('\n')) s = s.slice(1); // the LF of a CR LF split across chunks
    this.sawCR = false;
    let start = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(this.buf + s.slice(start, i), out);
      this.buf = '';
      if (c === 13) {
        if (i + 1 < s.length) {
          if (s.charCodeAt(i + 1) === 10) i++;
        } else {
          this.sawCR = true;
        }
      }
      start = i + 1;
    }
    this.buf += s.slice(start);
    if (this.buf.length > 1 << 20) {
      // A line over 1 MiB is not a feed this page understands; drop it
      // rather than grow without bound.
      this.buf = '';
    }
    return out;
  }

  private line(l: string, out: SSEEvent[]) {
    if (l === '') {
      if (this.data.length > 0) {
        out.push({ event: this.event || 'message', data: this.data.join('\n'), id: this.lastID });
      }
      this.data = [];
      this.event = '';
      return;
    }
    if (l.charCodeAt(0) === 58) return; // ":" comment (keep-alive)
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastID = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
    }
  }
}
