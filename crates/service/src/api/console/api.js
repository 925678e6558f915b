// The API client: the key lives in session storage (gone when the tab
// closes) and travels only in the Authorization header.
const KEY = 'hoist-api-key';

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message, problems) {
    super(message);
    this.status = status;
    this.code = code;
    this.problems = problems || [];
  }
}

// Calls the API; JSON in and out. Raw bodies (uploads) go as they are.
// A refused key signs the user out (`hoist-unauthorized`), except when it
// is the key being tried.
export async function api(method, path, body, { raw = false, contentType, trying = false } = {}) {
  const headers = { Authorization: `Bearer ${getKey() || ''}` };
  let payload;
  if (body !== undefined) {
    if (raw) {
      payload = body;
      headers['Content-Type'] = contentType || 'application/octet-stream';
    } else {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, 'network', `the server did not answer (${e.message})`);
  }
  const text = await response.text();
  let value = null;
  if (text) {
    try {
      value = JSON.parse(text);
    } catch {
      value = text;
    }
  }
  if (!response.ok) {
    const err = (value && value.error) || {};
    if (response.status === 401 && !trying) {
      window.dispatchEvent(new CustomEvent('hoist-unauthorized'));
    }
    throw new ApiError(response.status, err.code || String(response.status),
      err.message || `${method} ${path}: ${response.status}`, err.problems);
  }
  return { status: response.status, body: value };
}

// The WebSocket URL of a build's stream, on the page's own origin.
export function streamUrl(buildId) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/v1/builds/${encodeURIComponent(buildId)}/stream`;
}
