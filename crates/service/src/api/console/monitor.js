// Follows a build over its WebSocket: the backlog first, then live events.
// A dropped connection is reopened (with backoff) until the build ends;
// each event carries a sequence number, so the backlog of a reconnection
// never shows a line twice.
import { getKey, streamUrl } from './api.js';

const FINAL = new Set(['complete', 'error']);

export class BuildMonitor {
  // handlers: { build(view), event(ev), state(text), done() }
  constructor(buildId, handlers) {
    this.buildId = buildId;
    this.handlers = handlers;
    this.lastSeq = 0;
    this.finished = false;
    this.closed = false;
    this.retry = 0;
    this.socket = null;
    this.connect();
  }

  connect() {
    if (this.closed || this.finished) return;
    this.handlers.state(this.retry ? 'reconnecting' : 'connecting');
    const socket = new WebSocket(streamUrl(this.buildId));
    this.socket = socket;
    socket.onopen = () => {
      // Browsers cannot set headers on a WebSocket: the key goes first.
      socket.send(JSON.stringify({ type: 'auth', key: getKey() || '' }));
    };
    socket.onmessage = (message) => {
      let value;
      try {
        value = JSON.parse(message.data);
      } catch {
        return;
      }
      this.receive(value);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closed || this.finished) return;
      this.retry += 1;
      const delay = Math.min(5000, 250 * 2 ** Math.min(this.retry, 5));
      this.handlers.state('reconnecting');
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  receive(value) {
    if (value.type === 'backlog') {
      this.retry = 0;
      this.handlers.state('live');
      this.handlers.build(value.build);
      for (const ev of value.messages || []) this.event(ev);
      return;
    }
    if (value.type === 'error' && value.seq === undefined) {
      // Refused before any event: no key, not the caller's build.
      this.finished = true;
      this.handlers.state('refused');
      this.handlers.event({ type: 'error', status: value.status, error: value.error });
      this.handlers.done();
      return;
    }
    this.event(value);
  }

  event(ev) {
    if (typeof ev.seq === 'number') {
      if (ev.seq <= this.lastSeq) return;
      this.lastSeq = ev.seq;
    }
    this.handlers.event(ev);
    if (FINAL.has(ev.type)) {
      this.finished = true;
      this.handlers.state('ended');
      this.handlers.done();
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close();
  }
}
