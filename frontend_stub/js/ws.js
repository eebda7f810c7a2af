// A small graphql-transport-ws client (WebSocket /graphql) for live updates.
// One socket for the page; subscriptions survive reconnects and are sent again.

const PROTOCOL = "graphql-transport-ws";
// Close codes of graphql-transport-ws that end the session's socket for good.
const SIGNED_OUT = new Set([4401, 4403]);

export class LiveClient {
  constructor(url = defaultUrl()) {
    this.url = url;
    this.socket = null;
    this.ready = false;
    this.nextId = 1;
    this.subscriptions = new Map(); // id -> { query, variables, onNext }
    this.listeners = { state: new Set(), reconnect: new Set(), signedOut: new Set() };
    this.retries = 0;
    this.closedOnPurpose = false;
    this.everConnected = false;
  }

  /** Subscribes; returns a function that ends the subscription. */
  subscribe(query, variables, onNext) {
    const id = String(this.nextId++);
    this.subscriptions.set(id, { query, variables, onNext });
    this.ensureOpen();
    if (this.ready) this.send({ id, type: "subscribe", payload: { query, variables } });
    return () => {
      if (!this.subscriptions.delete(id)) return;
      if (this.ready) this.send({ id, type: "complete" });
    };
  }

  /** state: "connecting" | "open" | "closed"; reconnect: after a new socket stands;
   * signedOut: the server closed the socket because the session ended (4401) or
   * was never valid (4403): trying again would only be refused again. */
  on(event, callback) {
    this.listeners[event].add(callback);
    return () => this.listeners[event].delete(callback);
  }

  close() {
    this.closedOnPurpose = true;
    this.subscriptions.clear();
    if (this.socket) this.socket.close(1000, "signed out");
    this.socket = null;
    this.ready = false;
  }

  ensureOpen() {
    if (this.socket) return;
    this.closedOnPurpose = false;
    this.emit("state", "connecting");
    const socket = new WebSocket(this.url, PROTOCOL);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "connection_init", payload: {} }));
    socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.ready = false;
      if (SIGNED_OUT.has(event.code)) {
        this.closedOnPurpose = true;
        this.subscriptions.clear();
        this.emit("signedOut");
        return;
      }
      this.emit("state", "closed");
      if (!this.closedOnPurpose && this.subscriptions.size) this.retryLater();
    };
  }

  retryLater() {
    const delay = Math.min(10000, 500 * 2 ** this.retries++);
    setTimeout(() => {
      if (!this.closedOnPurpose) this.ensureOpen();
    }, delay);
  }

  receive(message) {
    switch (message.type) {
      case "connection_ack": {
        this.ready = true;
        this.retries = 0;
        this.emit("state", "open");
        for (const [id, s] of this.subscriptions) {
          this.send({ id, type: "subscribe", payload: { query: s.query, variables: s.variables } });
        }
        // Events may have passed while the socket was down: pages read again.
        if (this.everConnected) this.emit("reconnect");
        this.everConnected = true;
        break;
      }
      case "ping":
        this.send({ type: "pong" });
        break;
      case "next": {
        const s = this.subscriptions.get(message.id);
        if (s && message.payload.data) s.onNext(message.payload.data);
        break;
      }
      case "error":
        console.warn("subscription refused", message.payload);
        this.subscriptions.delete(message.id);
        break;
      default:
        break;
    }
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  emit(event, value) {
    for (const callback of this.listeners[event]) callback(value);
  }
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/graphql`;
}
