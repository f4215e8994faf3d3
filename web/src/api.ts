// A small client for fleetd's HTTP API: JSON and binary GETs, the bearer
// token when the server wants one, and errors that carry the status and
// the server's {"error": …} message.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

const TOKEN_KEY = 'fleetd-token';

export class Api {
  /** onUnauthorized is called once per 401 so the page can ask for a token. */
  onUnauthorized: (() => void) | null = null;
  private token: string | null = null;

  constructor(private readonly base = '') {
    try {
      this.token = sessionStorage.getItem(TOKEN_KEY);
    } catch {
      this.token = null;
    }
  }

  setToken(t: string): void {
    this.token = t || null;
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* storage disabled: keep the token for this page only */
    }
  }

  private headers(accept: string): HeadersInit {
    const h: Record<string, string> = { Accept: accept };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  /** fetch issues a GET and throws HttpError for a non-2xx answer. */
  async fetch(path: string, accept: string, signal?: AbortSignal): Promise<Response> {
    const r = await fetch(this.base + path, { headers: this.headers(accept), signal, cache: 'no-store' });
    if (r.ok) return r;
    let msg = `${r.status} ${r.statusText}`;
    try {
      const j = (await r.json()) as { error?: unknown };
      if (typeof j.error === 'string') msg = j.error;
    } catch {
      /* not JSON: keep the status line */
    }
    if (r.status === 401) this.onUnauthorized?.();
    throw new HttpError(r.status, msg);
  }

  async json(path: string, signal?: AbortSignal): Promise<unknown> {
    return (await this.fetch(path, 'application/json', signal)).json();
  }

  async bytes(path: string, signal?: AbortSignal): Promise<ArrayBuffer> {
    return (await this.fetch(path, 'application/octet-stream', signal)).arrayBuffer();
  }
}

/** isAbort tells an aborted request (a superseded view) from a failure. */
export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === 'AbortError';
}
