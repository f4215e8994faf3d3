// The live feed for the trucks in view. With the server's stream
// (GET /v1/stream, SSE, filtered to the region and rate-limited per truck
// with max_hz; see internal/feed) the page gets each move as it happens,
// and re-reads the region when the server reports dropped events (lag); without it, or while
// the stream is down, it polls GET /v1/within for the region. Either way a
// /v1/within snapshot fills the map first.

import { Api, HttpError, isAbort } from './api';
import { parseFeedEvent, type Alert } from './events';
import { bboxParam, type BBox } from './geo';
import { SSEParser } from './sse';
import { parseTruck, type Truck } from './trucks';

export type FeedStatus = 'off' | 'live' | 'polling' | 'reconnecting' | 'error';

export interface FeedHandlers {
  /** snapshot is the complete set of trucks in region (at most limit: truncated then). */
  snapshot(list: Truck[], region: BBox, truncated: boolean): void;
  position(t: Truck): void;
  remove(id: string): void;
  alert(a: Alert): void;
  status(s: FeedStatus, detail: string): void;
}

export interface FeedOptions {
  /** at most this many trucks per snapshot */
  limit: number;
  /** polling period without the stream, ms */
  pollMs: number;
  /** per-truck update rate asked of the stream */
  maxHz: number;
}

/** parseWithin reads a /v1/within answer: {"results": [truck, …], "count": n}. */
export function parseWithin(j: unknown): Truck[] {
  const r = (j as { results?: unknown })?.results;
  if (!Array.isArray(r)) throw new Error('within: answer has no results array');
  const out: Truck[] = [];
  for (const o of r) {
    const t = parseTruck(o);
    if (t) out.push(t);
  }
  return out;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new DOMException('aborted', 'AbortError'));
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new DOMException('aborted', 'AbortError'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export class LiveFeed {
  private ctl: AbortController | null = null;
  private region: BBox | null = null;
  private streamOK: boolean;

  constructor(
    private readonly api: Api,
    stream: boolean,
    private readonly h: FeedHandlers,
    private readonly opts: FeedOptions,
  ) {
    this.streamOK = stream;
  }

  /** setRegion follows a new region (null: stop). The same region again is
   * a no-op, so callers may call it on every view change. */
  setRegion(r: BBox | null): void {
    const same = r && this.region && bboxParam(r) === bboxParam(this.region);
    if (same || (!r && !this.region)) return;
    this.ctl?.abort();
    this.ctl = null;
    this.region = r;
    if (!r) {
      this.h.status('off', '');
      return;
    }
    const ctl = new AbortController();
    this.ctl = ctl;
    this.run(r, ctl.signal).catch((e) => {
      if (!isAbort(e)) this.h.status('error', String(e));
    });
  }

  close(): void {
    this.setRegion(null);
  }

  private async snapshot(r: BBox, signal: AbortSignal): Promise<void> {
    const j = await this.api.json(`/v1/within?bbox=${bboxParam(r)}&limit=${this.opts.limit}`, signal);
    const list = parseWithin(j);
    this.h.snapshot(list, r, list.length >= this.opts.limit);
  }

  private async run(r: BBox, signal: AbortSignal): Promise<void> {
    let backoff = 1000;
    for (;;) {
      try {
        await this.snapshot(r, signal);
        if (this.streamOK) {
          this.h.status('live', '');
          await this.stream(r, signal); // returns when the server ends the stream
          this.h.status('reconnecting', 'stream ended');
          await sleep(backoff, signal);
        } else {
          this.h.status('polling', `every ${this.opts.pollMs / 1000} s`);
          await sleep(this.opts.pollMs, signal);
        }
        backoff = 1000;
      } catch (e) {
        if (isAbort(e)) throw e;
        if (e instanceof HttpError && e.status === 404 && this.streamOK) {
          this.streamOK = false; // no stream on this server: poll from now on
          continue;
        }
        this.h.status('reconnecting', e instanceof Error ? e.message : String(e));
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 15000);
      }
    }
  }

  private async stream(r: BBox, signal: AbortSignal): Promise<void> {
    const q = `bbox=${bboxParam(r)}&max_hz=${this.opts.maxHz}&types=position,expired,alert,lag`;
    const res = await this.api.fetch(`/v1/stream?${q}`, 'text/event-stream', signal);
    if (!res.body) throw new Error('stream: no body');
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const p = new SSEParser();
    let resyncing = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        for (const ev of p.push(value)) {
          const fe = parseFeedEvent(ev);
          if (!fe) continue;
          if (fe.kind === 'position') this.h.position(fe.truck);
          else if (fe.kind === 'delete') this.h.remove(fe.id);
          else if (fe.kind === 'alert') this.h.alert(fe.alert);
          else if (!resyncing) {
            // Events were dropped: re-read the region, once at a time.
            resyncing = true;
            this.snapshot(r, signal)
              .catch(() => {})
              .finally(() => (resyncing = false));
          }
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }
}
