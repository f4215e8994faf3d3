import { afterEach, expect, test, vi } from 'vitest';
import { Api, HttpError } from './api';

afterEach(() => vi.unstubAllGlobals());

test('login posts the token as JSON, same-origin, and keeps no copy', async () => {
  const calls: { url: string; init?: RequestInit }[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (url: string, init?: RequestInit) => {
      calls.push({ url, init });
      if (url === '/v1/login') {
        const body = JSON.parse(String(init?.body)) as { token: string };
        return body.token === 'good'
          ? new Response('{"auth":true,"session":true}', { status: 200 })
          : new Response('{"error":"unknown token"}', { status: 401 });
      }
      return new Response('{}', { status: 200 });
    }),
  );
  const api = new Api();
  await api.login('good');
  await expect(api.login('bad')).rejects.toEqual(new HttpError(401, 'unknown token'));
  await api.json('/v1/stats');
  const [login, , get] = calls;
  expect(login.init?.method).toBe('POST');
  expect((login.init?.headers as Record<string, string>)['Content-Type']).toBe('application/json');
  expect(login.init?.credentials).toBe('same-origin');
  // No request after the login carries the token: the cookie does the work.
  expect(JSON.stringify(get.init?.headers)).not.toContain('good');
  expect(get.url).not.toContain('good');
  expect(get.init?.credentials).toBe('same-origin');
});

test('a 401 asks for a login', async () => {
  vi.stubGlobal('fetch', vi.fn(async () => new Response('{"error":"missing or invalid bearer token"}', { status: 401 })));
  const api = new Api();
  let asked = 0;
  api.onUnauthorized = () => asked++;
  await expect(api.json('/v1/stats')).rejects.toBeInstanceOf(HttpError);
  expect(asked).toBe(1);
});
