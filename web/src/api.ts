// A small client for fleetd's HTTP API: JSON and binary GETs, the
// dashboard's login (a token exchanged for an HttpOnly session cookie that
// no script on the page can read; the token itself is never stored), and
// errors that carry the status and the server's {"error": …} message.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export class Api {
  /** onUnauthorized is called once per 401 so the page can ask for a token. */
  onUnauthorized: (() => void) | null = null;

  constructor(private readonly base = '') {}

  private headers(accept: string): HeadersInit {
    return { Accept: accept };
  }

  /** login exchanges a token for the session cookie; it throws HttpError. */
  async login(token: string): Promise<void> {
    const r = await fetch(this.base + '/v1/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ token }),
      credentials: 'same-origin',
      cache: 'no-store',
    });
    if (!r.ok) throw new HttpError(r.status, await errorMessage(r));
  }

  /** logout ends the session and clears the cookie. */
  async logout(): Promise<void> {
    await fetch(this.base + '/v1/logout', { method: 'POST', credentials: 'same-origin', cache: 'no-store' });
  }

  /** session tells whether the server needs a login and whether this browser has a session. */
  async session(): Promise<{ auth: boolean; session: boolean; name?: string }> {
    return (await this.json('/v1/session')) as { auth: boolean; session: boolean; name?: string };
  }

  /** fetch issues a GET and throws HttpError for a non-2xx answer. */
  async fetch(path: string, accept: string, signal?: AbortSignal): Promise<Response> {
    const r = await fetch(this.base + path, {
      headers: this.headers(accept),
      signal,
      cache: 'no-store',
      credentials: 'same-origin',
    });
    if (r.ok) return r;
    const msg = await errorMessage(r);
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

/** errorMessage is the server's {"error": …} text, or the status line. */
async function errorMessage(r: Response): Promise<string> {
  try {
    const j = (await r.json()) as { error?: unknown };
    if (typeof j.error === 'string') return j.error;
  } catch {
    /* not JSON: keep the status line */
  }
  return `${r.status} ${r.statusText}`;
}

/** isAbort tells an aborted request (a superseded view) from a failure. */
export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === 'AbortError';
}
