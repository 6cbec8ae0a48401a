// Streamgate browser client (wire contract v1, subprotocol "streamgate.v1").
//
// A dependency-free ES module. The gateway serves this file at /v1/client.js; its types are
// clients/js/streamgate.d.ts and its guide clients/js/README.md.
//
//   import { connect } from "/v1/client.js";
//   const sg = await connect("wss://example.com/v1/ws", { token: () => fetchToken() });
//   await sg.subscribe("doc:42", { from: "earliest" }, (record) => console.log(record.offset, record.data));
//   const ack = await sg.publish("doc:42", { text: "hello" });   // { partition, offset, msgId, channel }
//
// What the client does for its user:
// - one multiplexed connection (/v1/ws) for fanout channels, opened when first needed, and one bound
//   connection (/v1/ws/{channel}) per affinity channel, placed through GET /v1/locate/{channel};
// - authentication with an `auth` frame (browsers cannot set headers), refreshed before `exp` when the
//   token option is a function;
// - reconnection with jittered exponential backoff; every subscription resumes at the offset after the
//   last record it delivered (in the same partition), so no record is repeated or skipped unannounced;
// - every publish carries a msgId; a publish that was not answered when its connection dropped is sent
//   again, with the same msgId, once the connection is back;
// - `gap`, `moved`, `reconnecting`, … as events (an EventTarget).

const SUBPROTOCOL = "streamgate.v1";
const CHANNEL_PATTERN = /^[A-Za-z0-9._~:@/-]{1,200}$/;

/** Close codes of the contract (PROTOCOL §7). */
export const CloseCode = Object.freeze({
    normal: 1000,
    goingAway: 1001, // the node drains: reconnect (elsewhere)
    protocolError: 1002,
    abnormal: 1006, // no close frame (network, process killed, refused handshake)
    invalidUTF8: 1007,
    policy: 1008,
    tooBig: 1009,
    internal: 1011,
    tryAgainLater: 1013,
    pingTimeout: 4000,
    unauthorized: 4001,
    forbidden: 4003,
    slowConsumer: 4008,
    moved: 4302,
});

const DEFAULTS = Object.freeze({
    backoff: { min: 250, max: 30000 },
    // A connection that stays up this long is healthy: the next failure starts the backoff over.
    stableAfter: 5000,
    connectTimeout: 10000,
    // Consecutive connections refused for their token (4001) before the client gives up. A static
    // token is never tried twice: the same token would be refused again.
    maxAuthFailures: 3,
    // Refresh a token this long before it expires (half its lifetime when that is shorter).
    refreshAhead: 30000,
});

/** An error the gateway answered (`error`, `nack`, close codes) or the client raised. */
export class StreamgateError extends Error {
    /**
     * @param {string} code an error code of PROTOCOL §7 (`forbidden`, `kafka_unavailable`, …) or one of
     *   the client's own: `closed`, `unsubscribed`, `auth_failed`, `locate_failed`, `bad_request`.
     * @param {string} message
     * @param {object} [extra] frame, channel, msgId, persisted ("no" | "unknown"), closeCode, fatal
     */
    constructor(code, message, extra = {}) {
        super(message);
        this.name = "StreamgateError";
        this.code = code;
        this.frame = extra.frame ?? null;
        this.channel = extra.channel ?? null;
        this.msgId = extra.msgId ?? null;
        this.persisted = extra.persisted ?? null;
        this.closeCode = extra.closeCode ?? null;
        /** Asking again will not help (a refused name, an unknown namespace). */
        this.fatal = extra.fatal ?? false;
    }
}

/** The events of a Streamgate client carry their data in `detail`. */
export class StreamgateEvent extends Event {
    constructor(type, detail) {
        super(type);
        this.detail = detail;
    }
}

/** The namespace of a channel: the part before the first ":" ("" for channels without one). */
export function namespaceOf(channel) {
    const i = channel.indexOf(":");
    return i < 0 ? "" : channel.slice(0, i);
}

function checkChannel(channel) {
    if (typeof channel !== "string" || !CHANNEL_PATTERN.test(channel)) {
        throw new TypeError(`invalid channel ${JSON.stringify(channel)}: 1 to 200 characters of [A-Za-z0-9._~:@/-]`);
    }
}

/** A random msgId: crypto.randomUUID where the page is a secure context, else a v4 UUID by hand. */
function newMsgId() {
    const c = globalThis.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    const b = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function") c.getRandomValues(b);
    else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function toBase64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
}

function fromBase64(text) {
    const s = atob(text);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
}

function asBytes(data) {
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return null;
}

function timeText(t) {
    if (t instanceof Date) return t.toISOString();
    if (typeof t === "number") return new Date(t).toISOString();
    if (typeof t === "string") return t;
    throw new TypeError("from.time must be an RFC 3339 string, a Date or milliseconds since 1970");
}

/**
 * Normalises a `from` option. Accepted: "latest" | "earliest" | an offset (number) | {offset, partition?}
 * | {time} (RFC 3339 string, Date or epoch milliseconds) | a Date.
 * Returns {wire: the subscribe frame's value, query: the ?from= value of a bound connection}.
 */
function startPosition(from) {
    if (from === undefined || from === null || from === "latest") return { wire: "latest", query: "latest" };
    if (from === "earliest") return { wire: "earliest", query: "earliest" };
    if (typeof from === "number" || typeof from === "bigint") {
        const n = Number(from);
        if (!Number.isSafeInteger(n) || n < 0) throw new TypeError("an offset must be an integer ≥ 0");
        return { wire: { offset: n }, query: String(n) };
    }
    if (from instanceof Date) return startPosition({ time: from });
    if (typeof from === "object") {
        if ("time" in from) {
            const t = timeText(from.time);
            return { wire: { time: t }, query: t };
        }
        if ("offset" in from) {
            const n = Number(from.offset);
            if (!Number.isSafeInteger(n) || n < 0) throw new TypeError("an offset must be an integer ≥ 0");
            const wire = { offset: n };
            if (from.partition !== undefined && from.partition !== null) wire.partition = Number(from.partition);
            return { wire, query: String(n) };
        }
    }
    throw new TypeError('from must be "latest", "earliest", an offset, {offset[, partition]} or {time}');
}

/**
 * The endpoints of a gateway URL. "wss://host/v1/ws", "wss://host", "https://host/prefix" and (in a
 * page) "/v1/ws" all name the same gateway; a path before /v1/ws is kept (a reverse proxy's prefix).
 */
function endpoints(url) {
    const base = globalThis.location ? globalThis.location.href : undefined;
    const u = new URL(String(url), base);
    let scheme = u.protocol;
    if (scheme === "http:") scheme = "ws:";
    else if (scheme === "https:") scheme = "wss:";
    if (scheme !== "ws:" && scheme !== "wss:") throw new TypeError(`not a WebSocket URL: ${url}`);
    let path = u.pathname.replace(/\/+$/, "");
    if (path.endsWith("/v1/ws")) path = path.slice(0, -"/v1/ws".length);
    const ws = `${scheme}//${u.host}${path}`;
    const http = `${scheme === "wss:" ? "https:" : "http:"}//${u.host}${path}`;
    return { ws, http, multiplexed: `${ws}/v1/ws` };
}

/** `url` with its `from` query parameter set to `from` (other parameters kept). */
function withFrom(url, from) {
    const u = new URL(url);
    u.searchParams.set("from", from);
    return u.toString();
}

// --- one WebSocket, reconnected -----------------------------------------------------------------

/**
 * A connection to the gateway that reconnects itself: the multiplexed one (channel null) or the bound
 * connection of one affinity channel. It knows sockets, authentication and backoff; what to send once
 * it is ready is the client's business (`_linkReady`), as is every frame it receives (`_frame`).
 */
class Link {
    constructor(client, channel) {
        this.client = client;
        this.channel = channel; // null: the multiplexed connection
        this.ws = null;
        this.state = "idle"; // idle | connecting | open | waiting | closed
        this.ready = false; // open and authenticated: requests may be sent
        this.generation = 0; // bumped per socket: callbacks of an old socket are ignored
        this.attempt = 0; // failures since the last stable connection
        this.authFailures = 0;
        this.everReady = false;
        this.readyAt = 0;
        this.timer = null;
        this.refreshTimer = null;
        this.connectTimer = null;
        this.pending = new Map(); // request id -> {kind, sub?, pub?, resolve?}
        this.hint = null; // a URL to use once (from a moved frame) instead of locating
        this.url = null; // the URL of the current socket
        this.authed = null; // the last authed frame
        this.retireWhenIdle = false; // a bound link kept only for its unanswered publishes
        this.openedFor = null; // the subscription whose start the bound URL carried
        this.reopenWhenIdle = false; // reconnect (for a new start) once its publishes are answered
    }

    /** Connects unless already connected, connecting or waiting out a backoff delay. */
    start() {
        if (this.state === "idle") this._connect();
    }

    async _connect() {
        const gen = ++this.generation;
        this.state = "connecting";
        const c = this.client;
        let url;
        let token = null;
        try {
            url = await c._urlFor(this);
            if (c._tokenOption !== undefined && c._tokenOption !== null) token = await c._token();
        } catch (err) {
            if (gen !== this.generation || this.state === "closed") return;
            c._emit("error", { error: err, channel: this.channel });
            if (err instanceof StreamgateError && err.code === "locate_failed" && err.fatal) {
                this._fail(err);
                return;
            }
            this._scheduleReconnect(CloseCode.abnormal, String(err && err.message));
            return;
        }
        if (gen !== this.generation || this.state === "closed") return;
        this.url = url;
        let ws;
        try {
            ws = new c._WebSocket(url, c._protocols);
        } catch (err) {
            c._emit("error", { error: err, channel: this.channel });
            this._scheduleReconnect(CloseCode.abnormal, String(err && err.message));
            return;
        }
        this.ws = ws;
        this.connectTimer = setTimeout(() => {
            if (gen === this.generation && !this.ready) ws.close();
        }, c._options.connectTimeout);
        ws.onopen = () => {
            if (gen !== this.generation) return;
            if (token !== null) {
                const id = c._nextId();
                this.pending.set(id, { kind: "auth" });
                ws.send(JSON.stringify({ type: "auth", id, token }));
            } else {
                this._becomeReady();
            }
        };
        ws.onmessage = (ev) => {
            if (gen !== this.generation || typeof ev.data !== "string") return;
            let frame;
            try {
                frame = JSON.parse(ev.data);
            } catch {
                return;
            }
            if (frame && typeof frame === "object") c._frame(this, frame);
        };
        ws.onclose = (ev) => {
            if (gen !== this.generation) return;
            this._closed(ev.code, ev.reason);
        };
        ws.onerror = () => {}; // a close event follows, with the code
    }

    _becomeReady() {
        clearTimeout(this.connectTimer);
        const again = this.everReady;
        this.ready = true;
        this.everReady = true;
        this.readyAt = Date.now();
        this.state = "open";
        this.client._emit("open", { channel: this.channel, url: this.url, reconnected: again });
        this.client._linkReady(this);
    }

    send(text) {
        if (!this.ready || !this.ws || this.ws.readyState !== 1) return false;
        this.ws.send(text);
        return true;
    }

    /** A request with an id; the reply is routed by `_frame` through `pending`. */
    request(kind, frame, extra = {}) {
        const id = this.client._nextId();
        const entry = { kind, ...extra };
        this.pending.set(id, entry);
        if (!this.send(JSON.stringify({ ...frame, id }))) {
            this.pending.delete(id);
            return null;
        }
        return id;
    }

    authenticated(frame) {
        this.authed = frame;
        this.authFailures = 0;
        if (!this.ready) this._becomeReady();
        this._scheduleRefresh(frame.exp);
    }

    _scheduleRefresh(exp) {
        clearTimeout(this.refreshTimer);
        this.refreshTimer = null;
        if (typeof this.client._tokenOption !== "function" || typeof exp !== "number") return;
        const left = exp * 1000 - Date.now();
        const ahead = this.client._options.refreshAhead;
        const delay = Math.max(1000, left > 2 * ahead ? left - ahead : left / 2);
        const gen = this.generation;
        this.refreshTimer = setTimeout(async () => {
            if (gen !== this.generation || !this.ready) return;
            try {
                const token = await this.client._token();
                if (gen !== this.generation || !this.ready) return;
                const id = this.client._nextId();
                this.pending.set(id, { kind: "auth" });
                this.ws.send(JSON.stringify({ type: "auth", id, token }));
            } catch (err) {
                this.client._emit("error", { error: err, channel: this.channel });
                this._scheduleRefresh(exp); // try again (half of what is left)
            }
        }, delay);
    }

    _closed(code, reason) {
        clearTimeout(this.connectTimer);
        clearTimeout(this.refreshTimer);
        const wasReady = this.ready;
        const stable = wasReady && Date.now() - this.readyAt >= this.client._options.stableAfter;
        this.ready = false;
        this.ws = null;
        const requests = [...this.pending.values()];
        this.pending.clear();
        const c = this.client;
        if (this.state === "closed") {
            c._emit("close", { channel: this.channel, code, reason, reconnecting: false });
            return;
        }
        if (stable) this.attempt = 0;
        c._linkLost(this, requests);
        // What the close code asks for (PROTOCOL §7).
        let fatal = null;
        if (code === CloseCode.unauthorized) {
            this.authFailures += 1;
            const refreshable = typeof c._tokenOption === "function";
            if (!refreshable || this.authFailures >= c._options.maxAuthFailures) {
                fatal = new StreamgateError("auth_failed",
                    `the gateway refused the token (${code} ${reason || "unauthorized"})`,
                    { closeCode: code, channel: this.channel });
            }
        } else if (code === CloseCode.forbidden) {
            fatal = new StreamgateError("forbidden",
                `the gateway refused this connection (${code} ${reason || "forbidden"})`,
                { closeCode: code, channel: this.channel });
        }
        if (fatal) {
            c._emit("close", { channel: this.channel, code, reason, reconnecting: false });
            this._fail(fatal);
            return;
        }
        if (this.retireWhenIdle && !c._hasWork(this)) {
            this.state = "closed";
            c._emit("close", { channel: this.channel, code, reason, reconnecting: false });
            c._retire(this);
            return;
        }
        c._emit("close", { channel: this.channel, code, reason, reconnecting: true });
        if (code === CloseCode.moved && this.hint) {
            this._scheduleReconnect(code, reason, 0);
        } else if (code === CloseCode.goingAway || code === CloseCode.slowConsumer || code === CloseCode.moved) {
            // drain, slow consumer, hand-off: reconnect soon, resuming where the stream stopped
            this._scheduleReconnect(code, reason, Math.random() * this.client._options.backoff.min);
        } else {
            this._scheduleReconnect(code, reason);
        }
    }

    _scheduleReconnect(code, reason, delay) {
        if (this.state === "closed") return;
        const { min, max } = this.client._options.backoff;
        if (delay === undefined) {
            const ceiling = Math.min(max, min * 2 ** Math.min(this.attempt, 30));
            delay = ceiling / 2 + Math.random() * (ceiling / 2); // "equal jitter"
        }
        this.attempt += 1;
        this.state = "waiting";
        this.client.stats.reconnects += 1;
        this.client._emit("reconnecting",
            { channel: this.channel, code, reason, attempt: this.attempt, delay: Math.round(delay) });
        clearTimeout(this.timer);
        this.timer = setTimeout(() => {
            this.timer = null;
            if (this.state === "waiting") this._connect();
        }, delay);
    }

    _fail(error) {
        this.state = "closed";
        this.generation += 1;
        clearTimeout(this.timer);
        this.client._linkFailed(this, error);
    }

    close(code = CloseCode.normal, reason = "") {
        const ws = this.ws;
        this.state = "closed";
        this.ready = false;
        clearTimeout(this.timer);
        clearTimeout(this.connectTimer);
        clearTimeout(this.refreshTimer);
        if (ws && ws.readyState <= 1) {
            ws.close(code, reason);
        } else {
            this.generation += 1;
        }
    }
}

// --- the client ------------------------------------------------------------------------------------

/**
 * A Streamgate client. Create it, then `connect()` (or let the first `subscribe` / `publish` open what
 * it needs). See clients/js/README.md.
 */
export class Streamgate extends EventTarget {
    /**
     * @param {string} url the gateway, e.g. "wss://example.com" or "wss://example.com/v1/ws"
     * @param {object} [options]
     * @param {string | (() => string | Promise<string>)} [options.token] a JWT, or a function called at
     *   every connection (and before `exp` to refresh) that returns one
     * @param {string[]} [options.protocols] WebSocket subprotocols (default ["streamgate.v1"])
     * @param {{min?: number, max?: number}} [options.backoff] reconnect delays in ms (default 250 … 30000)
     * @param {boolean} [options.locate] place affinity channels with GET /v1/locate/{channel} (default true)
     * @param {string[]} [options.affinity] namespaces configured `mode: affinity` (also learnt from `moved`)
     * @param {typeof fetch} [options.fetch] the fetch used for /v1/locate
     * @param {typeof WebSocket} [options.WebSocket] the WebSocket constructor (default globalThis.WebSocket)
     * @param {number} [options.connectTimeout] ms until an unanswered connection attempt is abandoned
     * @param {number} [options.maxAuthFailures] consecutive 4001 refusals before giving up (token function)
     * @param {number} [options.refreshAhead] ms before `exp` to refresh a token function's token
     * @param {number} [options.stableAfter] ms a connection must stay open to reset the backoff
     */
    constructor(url, options = {}) {
        super();
        this.url = url;
        this._endpoints = endpoints(url);
        const backoff = { ...DEFAULTS.backoff, ...(options.backoff || {}) };
        if (!(backoff.min > 0) || !(backoff.max >= backoff.min)) throw new TypeError("backoff needs 0 < min ≤ max");
        this._options = {
            backoff,
            stableAfter: options.stableAfter ?? DEFAULTS.stableAfter,
            connectTimeout: options.connectTimeout ?? DEFAULTS.connectTimeout,
            maxAuthFailures: options.maxAuthFailures ?? DEFAULTS.maxAuthFailures,
            refreshAhead: options.refreshAhead ?? DEFAULTS.refreshAhead,
            locate: options.locate !== false,
        };
        this._tokenOption = options.token;
        this._protocols = options.protocols ?? [SUBPROTOCOL];
        this._fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
        this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
        if (typeof this._WebSocket !== "function") {
            throw new TypeError("no WebSocket implementation: pass options.WebSocket");
        }
        this._affinity = new Set(options.affinity ?? []);
        this._ids = 0;
        this._main = null; // the multiplexed Link, created when first needed
        this._bound = new Map(); // channel -> Link
        this._subs = new Map(); // channel -> subscription state
        this._pubs = new Map(); // msgId -> publish state, in publish order
        this._readyWaiters = [];
        this._closed = false;
        /** Counters, for dashboards and tests. */
        this.stats = { connects: 0, reconnects: 0, publishesRetried: 0, duplicatesDropped: 0, gaps: 0, records: 0 };
    }

    /** "idle" | "connecting" | "open" | "waiting" (to reconnect) | "closed", of the multiplexed connection. */
    get state() {
        if (this._closed) return "closed";
        return this._main ? this._main.state : "idle";
    }

    /** Namespaces known to be `mode: affinity` (given as an option or learnt from `moved`). */
    get affinity() {
        return [...this._affinity];
    }

    /**
     * Opens the multiplexed connection; resolves once it is open (and authenticated). It keeps
     * reconnecting after failures; it rejects only when the gateway refuses the token or on `close()`.
     */
    connect() {
        if (this._closed) return Promise.reject(new StreamgateError("closed", "the client was closed"));
        const link = this._mainLink();
        if (link.ready) return Promise.resolve(this);
        return new Promise((resolve, reject) => {
            this._readyWaiters.push({ resolve: () => resolve(this), reject });
            if (link.state === "closed") this._restart(link);
            link.start();
        });
    }

    /**
     * Subscribes to a channel. Resolves with the first `subscribed` answer ({channel, partition, offset,
     * head, recovered, gap?}); rejects with a StreamgateError (`forbidden`, `unknown_namespace`, …).
     * After a reconnect the subscription resumes at the offset after the last record delivered.
     * @param {string} channel
     * @param {{from?: any} | ((record: object) => void)} [options] `from`: "latest" (default) | "earliest" |
     *   offset | {offset, partition?} | {time}; or the record handler itself
     * @param {(record: object) => void} [onRecord] called for each record, in offset order
     */
    subscribe(channel, options = {}, onRecord = undefined) {
        if (typeof options === "function") {
            onRecord = options;
            options = {};
        }
        options = options || {};
        try {
            checkChannel(channel);
        } catch (err) {
            return Promise.reject(err);
        }
        if (this._closed) return Promise.reject(new StreamgateError("closed", "the client was closed", { channel }));
        if (this._subs.has(channel)) {
            return Promise.reject(
                new StreamgateError("already_subscribed", `already subscribed to ${channel}`, { channel }));
        }
        let start;
        try {
            start = startPosition(options.from);
        } catch (err) {
            return Promise.reject(err);
        }
        return new Promise((resolve, reject) => {
            const sub = {
                channel,
                start,
                onRecord: typeof onRecord === "function" ? onRecord : null,
                affinity: this._isAffinity(channel),
                link: null,
                partition: null,
                next: null, // the offset after the last record delivered (or the first one that may come)
                confirmed: false,
                head: null,
                waiter: { resolve, reject },
            };
            this._subs.set(channel, sub);
            this._route(sub);
        });
    }

    /** Stops a subscription; resolves once the gateway confirmed (or at once when offline). */
    unsubscribe(channel) {
        const sub = this._subs.get(channel);
        if (!sub) return Promise.resolve();
        this._subs.delete(channel);
        if (sub.waiter) {
            const why = `unsubscribed from ${channel} before it was confirmed`;
            sub.waiter.reject(new StreamgateError("unsubscribed", why, { channel }));
            sub.waiter = null;
        }
        const link = sub.link;
        if (!link) return Promise.resolve();
        if (link.channel !== null) {
            this._retireIfIdle(link);
            return Promise.resolve();
        }
        return new Promise((resolve) => {
            const id = link.request("unsubscribe", { type: "unsubscribe", channel }, { resolve });
            if (id === null) resolve();
        });
    }

    /**
     * Publishes one record. Resolves with the ack ({channel, partition, offset, msgId}) once Kafka stored
     * it; rejects with a StreamgateError carrying the `nack`/`error` frame. Sent again with the same
     * msgId when its connection drops before the answer.
     * @param {string} channel
     * @param {any} data any JSON value; a Uint8Array / ArrayBuffer / typed array is sent as binary
     * @param {{msgId?: string, traceparent?: string}} [options]
     */
    publish(channel, data, options = {}) {
        options = options || {};
        try {
            checkChannel(channel);
        } catch (err) {
            return Promise.reject(err);
        }
        if (this._closed) return Promise.reject(new StreamgateError("closed", "the client was closed", { channel }));
        const msgId = options.msgId ?? newMsgId();
        if (typeof msgId !== "string" || msgId.length === 0) {
            return Promise.reject(new TypeError("msgId must be a non-empty string"));
        }
        if (this._pubs.has(msgId)) {
            return Promise.reject(new StreamgateError("bad_request",
                `a publish with msgId ${msgId} is still unanswered`, { channel, msgId }));
        }
        // The frame is encoded now: later changes to `data` do not change what is stored.
        let body = `"type":"publish","channel":${JSON.stringify(channel)},"msgId":${JSON.stringify(msgId)}`;
        if (options.traceparent) body += `,"traceparent":${JSON.stringify(options.traceparent)}`;
        const bytes = asBytes(data);
        if (bytes) {
            body += `,"data_b64":"${toBase64(bytes)}"`;
        } else {
            const json = JSON.stringify(data);
            if (json === undefined) return Promise.reject(new TypeError("data must be a JSON value or bytes"));
            body += `,"data":${json}`;
        }
        return new Promise((resolve, reject) => {
            const pub = { channel, msgId, body, link: null, id: null, sends: 0, resolve, reject };
            this._pubs.set(msgId, pub);
            this._routePublish(pub);
        });
    }

    /** What the client knows of a subscription: {channel, partition, next, confirmed, affinity} or null. */
    subscription(channel) {
        const s = this._subs.get(channel);
        if (!s) return null;
        return {
            channel, partition: s.partition, next: s.next, confirmed: s.confirmed, affinity: s.affinity, head: s.head,
        };
    }

    /** Channels subscribed now. */
    get channels() {
        return [...this._subs.keys()];
    }

    /** Publishes sent or queued that have no answer yet. */
    get unanswered() {
        return this._pubs.size;
    }

    /** `addEventListener(type, e => listener(e.detail))`; returns a function that removes it. */
    on(type, listener) {
        const wrapped = (e) => listener(e.detail, e);
        this.addEventListener(type, wrapped);
        return () => this.removeEventListener(type, wrapped);
    }

    /**
     * Closes every connection and stops reconnecting. Unanswered publishes are rejected with `closed`
     * (`persisted: "unknown"` when they were sent: retry them elsewhere with the same msgId).
     * @param {number} [code] 1000 (default) or 3000–4999, as WebSocket.close allows
     */
    close(code = CloseCode.normal, reason = "") {
        if (this._closed) return;
        this._closed = true;
        // WebSocket.close accepts 1000 and 3000-4999 only
        if (code !== CloseCode.normal && !(code >= 3000 && code <= 4999)) code = CloseCode.normal;
        const links = [this._main, ...this._bound.values()].filter(Boolean);
        for (const pub of this._pubs.values()) {
            pub.reject(new StreamgateError("closed", "the client was closed before an answer",
                { channel: pub.channel, msgId: pub.msgId, persisted: pub.sends > 0 ? "unknown" : "no" }));
        }
        this._pubs.clear();
        for (const sub of this._subs.values()) {
            if (sub.waiter) {
                sub.waiter.reject(new StreamgateError("closed", "the client was closed", { channel: sub.channel }));
            }
        }
        this._subs.clear();
        for (const w of this._readyWaiters.splice(0)) w.reject(new StreamgateError("closed", "the client was closed"));
        for (const link of links) link.close(code, reason);
    }

    // --- internals --------------------------------------------------------------------------------

    _emit(type, detail) {
        this.dispatchEvent(new StreamgateEvent(type, detail));
    }

    _nextId() {
        this._ids += 1;
        return this._ids;
    }

    async _token() {
        const t = this._tokenOption;
        const token = typeof t === "function" ? await t() : t;
        if (typeof token !== "string" || token === "") {
            throw new StreamgateError("auth_failed", "the token option gave no token");
        }
        return token;
    }

    _isAffinity(channel) {
        return this._affinity.has(namespaceOf(channel));
    }

    _mainLink() {
        if (!this._main) this._main = new Link(this, null);
        return this._main;
    }

    _boundLink(channel) {
        let link = this._bound.get(channel);
        if (!link) {
            link = new Link(this, channel);
            this._bound.set(channel, link);
        }
        link.retireWhenIdle = false;
        return link;
    }

    /** A link that failed for good is started afresh when the user asks for it again. */
    _restart(link) {
        link.state = "idle";
        link.attempt = 0;
        link.authFailures = 0;
    }

    _route(sub) {
        const link = sub.affinity ? this._boundLink(sub.channel) : this._mainLink();
        sub.link = link;
        if (link.state === "closed") this._restart(link);
        if (link.ready) {
            if (link.channel === null) this._sendSubscribe(link, sub);
            else this._reopen(link); // a bound connection starts where its URL says: open one for this start
        } else {
            link.start(); // (one already connecting is reopened when its `subscribed` is not this one's)
        }
    }

    /** Reconnects a bound link, for a subscription its URL did not carry, once its publishes are answered. */
    _reopen(link) {
        for (const entry of link.pending.values()) {
            if (entry.kind === "publish") {
                link.reopenWhenIdle = true; // no publish is sent twice for this
                return;
            }
        }
        link.reopenWhenIdle = false;
        if (link.ws) link.ws.close(CloseCode.normal, "resubscribing");
    }

    _routePublish(pub) {
        const link = this._isAffinity(pub.channel) ? this._boundLink(pub.channel) : this._mainLink();
        pub.link = link;
        if (link.state === "closed") this._restart(link);
        if (link.ready && !link.reopenWhenIdle) this._sendPublish(link, pub);
        else link.start();
    }

    _sendSubscribe(link, sub) {
        let from = sub.start.wire;
        if (sub.next !== null) {
            from = { offset: sub.next };
            if (sub.partition !== null) from.partition = sub.partition;
        }
        link.request("subscribe", { type: "subscribe", channel: sub.channel, from }, { sub });
    }

    _sendPublish(link, pub) {
        const id = this._nextId();
        link.pending.set(id, { kind: "publish", pub });
        if (!link.send(`{${pub.body},"id":${id}}`)) {
            link.pending.delete(id);
            return;
        }
        pub.id = id;
        pub.sends += 1;
        if (pub.sends === 2) this.stats.publishesRetried += 1;
    }

    /** The URL the next socket of `link` connects to. */
    async _urlFor(link) {
        if (link.channel === null) return this._endpoints.multiplexed;
        const sub = this._subs.get(link.channel);
        const mine = sub && sub.link === link ? sub : null;
        link.openedFor = mine;
        const from = mine ? (mine.next !== null ? String(mine.next) : mine.start.query) : "latest";
        if (link.hint) {
            const hint = link.hint;
            link.hint = null;
            return withFrom(hint, from);
        }
        if (!this._options.locate) return withFrom(`${this._endpoints.ws}/v1/ws/${link.channel}`, from);
        return withFrom(await this._locate(link.channel), from);
    }

    async _locate(channel) {
        if (typeof this._fetch !== "function") {
            throw new StreamgateError("locate_failed", "no fetch to call /v1/locate with");
        }
        const res = await this._fetch(`${this._endpoints.http}/v1/locate/${channel}`, { cache: "no-store" });
        if (!res.ok) {
            const text = (await res.text().catch(() => "")).trim();
            // 400 (bad name) and 404 (unknown namespace) will not change; 503 (no owner yet) will.
            throw new StreamgateError("locate_failed", `GET /v1/locate/${channel}: ${res.status} ${text}`,
                { channel, fatal: res.status === 400 || res.status === 404 });
        }
        const answer = await res.json();
        if (!answer || typeof answer.url !== "string") {
            throw new StreamgateError("locate_failed", `GET /v1/locate/${channel}: no url`, { channel });
        }
        return answer.url;
    }

    _linkReady(link) {
        this.stats.connects += 1;
        if (link.channel === null) {
            for (const w of this._readyWaiters.splice(0)) w.resolve();
            for (const sub of this._subs.values()) if (sub.link === link) this._sendSubscribe(link, sub);
        }
        // Publishes in the order they were made: the retried ones first, with their msgId.
        for (const pub of this._pubs.values()) if (pub.link === link && pub.id === null) this._sendPublish(link, pub);
    }

    /** The socket of `link` closed: its requests will be sent again once it is back. */
    _linkLost(link, requests) {
        for (const r of requests) {
            if (r.kind === "publish") r.pub.id = null;
            else if (r.kind === "unsubscribe") r.resolve(); // nothing left on the gateway to stop
        }
    }

    /** `link` gave up (auth refused, forbidden, unknown channel): what depends on it fails. */
    _linkFailed(link, error) {
        this._emit("error", { error, channel: link.channel });
        for (const [msgId, pub] of this._pubs) {
            if (pub.link !== link) continue;
            this._pubs.delete(msgId);
            const persisted = pub.sends > 0 ? "unknown" : "no";
            pub.reject(new StreamgateError(error.code, error.message,
                { channel: pub.channel, msgId, persisted, closeCode: error.closeCode }));
        }
        for (const [channel, sub] of this._subs) {
            if (sub.link !== link) continue;
            this._subs.delete(channel);
            if (sub.waiter) {
                const closeCode = error.closeCode;
                sub.waiter.reject(new StreamgateError(error.code, error.message, { channel, closeCode }));
            }
        }
        if (link.channel === null) {
            for (const w of this._readyWaiters.splice(0)) w.reject(error);
        } else {
            this._bound.delete(link.channel);
        }
    }

    _hasWork(link) {
        for (const sub of this._subs.values()) if (sub.link === link) return true;
        for (const pub of this._pubs.values()) if (pub.link === link) return true;
        return false;
    }

    _retireIfIdle(link) {
        if (link.channel === null) return;
        if (this._hasWork(link)) {
            link.retireWhenIdle = true;
            return;
        }
        this._retire(link);
        link.close(CloseCode.normal, "");
    }

    _retire(link) {
        if (this._bound.get(link.channel) === link) this._bound.delete(link.channel);
    }

    /** The namespace of `channel` is affinity (a `moved` said so): move what it has to its bound link. */
    _learnAffinity(channel, url) {
        this._affinity.add(namespaceOf(channel));
        const link = this._boundLink(channel);
        if (url && !link.ready) link.hint = url;
        for (const pub of this._pubs.values()) {
            if (pub.channel === channel && pub.link !== link) {
                pub.link = link;
                pub.id = null;
            }
        }
        const sub = this._subs.get(channel);
        if (sub && !sub.affinity) {
            sub.affinity = true;
            this._route(sub);
        } else {
            if (link.state === "closed") this._restart(link);
            link.start();
        }
        if (link.ready && !link.reopenWhenIdle) {
            for (const pub of this._pubs.values()) {
                if (pub.link === link && pub.id === null) this._sendPublish(link, pub);
            }
        }
    }

    _settle(pub) {
        this._pubs.delete(pub.msgId);
        const link = pub.link;
        if (!link || link.channel === null) return;
        if (link.retireWhenIdle) this._retireIfIdle(link);
        else if (link.reopenWhenIdle) this._reopen(link);
    }

    /** One frame from the gateway on `link`. */
    _frame(link, f) {
        const entry = f.id !== undefined && f.id !== null ? link.pending.get(f.id) : undefined;
        if (entry) link.pending.delete(f.id);
        switch (f.type) {
            case "message":
                return this._message(link, f);
            case "subscribed":
                return this._subscribed(link, f, entry);
            case "gap": {
                const sub = this._subs.get(f.channel);
                if (!sub || sub.link !== link) return;
                sub.next = f.to;
                this.stats.gaps += 1;
                this._emit("gap",
                    { channel: f.channel, partition: sub.partition, from: f.from, to: f.to, reason: f.reason });
                return;
            }
            case "ack": {
                if (!entry || entry.kind !== "publish") return;
                const pub = entry.pub;
                this._settle(pub);
                pub.resolve({ channel: f.channel, partition: f.partition, offset: f.offset, msgId: pub.msgId });
                return;
            }
            case "nack": {
                if (!entry || entry.kind !== "publish") return;
                const pub = entry.pub;
                this._settle(pub);
                pub.reject(new StreamgateError(f.code, f.message,
                    { frame: f, channel: pub.channel, msgId: pub.msgId, persisted: f.persisted }));
                return;
            }
            case "error":
                return this._error(link, f, entry);
            case "authed":
                link.authenticated(f);
                this._emit("authed", { channel: link.channel, sub: f.sub, exp: f.exp });
                return;
            case "unsubscribed":
                if (entry && entry.kind === "unsubscribe") {
                    entry.resolve();
                } else if (!entry) {
                    // The gateway ended it (a refreshed token no longer covers the channel).
                    const sub = this._subs.get(f.channel);
                    if (sub && sub.link === link) {
                        this._subs.delete(f.channel);
                        const error = new StreamgateError("forbidden",
                            `the gateway ended the subscription to ${f.channel}`, { frame: f, channel: f.channel });
                        this._emit("error", { channel: f.channel, error });
                    }
                }
                return;
            case "moved":
                this._emit("moved", { channel: f.channel, url: f.url, offset: f.offset ?? null });
                // Nothing was published: the publish goes again, to where the channel lives now.
                if (entry && entry.kind === "publish" && entry.pub.id === f.id) entry.pub.id = null;
                if (link.channel === null) {
                    // the answer to a request on the multiplexed connection: the channel is affinity
                    this._learnAffinity(f.channel, f.url);
                } else {
                    link.hint = f.url; // a hand-off: 4302 follows, and the link reconnects there
                }
                return;
            default:
                return;
        }
    }

    _subscribed(link, f, entry) {
        const sub = this._subs.get(f.channel);
        if (!sub || sub.link !== link) return;
        if (entry && entry.sub !== sub) return; // the answer to an earlier subscription of the channel
        if (link.channel !== null && link.openedFor !== sub) {
            this._reopen(link); // opened before this subscription existed: not its start
            return;
        }
        const resumed = sub.confirmed;
        sub.confirmed = true;
        sub.partition = f.partition;
        sub.next = f.offset;
        sub.head = f.head;
        const info = {
            channel: f.channel, partition: f.partition, offset: f.offset, head: f.head, recovered: f.recovered,
        };
        if (f.gap) info.gap = f.gap;
        this._emit("subscribed", { ...info, resumed });
        if (f.recovered === false && f.gap) {
            this.stats.gaps += 1;
            this._emit("gap",
                { channel: f.channel, partition: f.partition, from: f.gap.from, to: f.gap.to, reason: f.gap.reason });
        }
        if (sub.waiter) {
            sub.waiter.resolve(info);
            sub.waiter = null;
        }
    }

    _message(link, f) {
        const sub = this._subs.get(f.channel);
        if (!sub || sub.link !== link || !sub.confirmed) return;
        if (sub.next !== null && f.offset < sub.next) {
            this.stats.duplicatesDropped += 1; // never handed to the application twice
            return;
        }
        sub.next = f.offset + 1;
        this.stats.records += 1;
        const binary = typeof f.data_b64 === "string";
        const record = {
            channel: f.channel,
            partition: sub.partition,
            offset: f.offset,
            ts: f.ts,
            data: binary ? fromBase64(f.data_b64) : f.data,
            binary,
            msgId: f.msgId ?? null,
            sender: f.sender ?? null,
        };
        if (sub.onRecord) {
            try {
                sub.onRecord(record);
            } catch (error) {
                this._emit("error", { error, channel: f.channel });
            }
        }
        this._emit("record", record);
    }

    _error(link, f, entry) {
        const error = new StreamgateError(f.code, f.message, { frame: f });
        if (!entry) {
            this._emit("error", { error, channel: link.channel });
            return;
        }
        switch (entry.kind) {
            case "publish": {
                const pub = entry.pub;
                error.channel = pub.channel;
                error.msgId = pub.msgId;
                error.persisted = "no"; // refused before it was produced
                this._settle(pub);
                pub.reject(error);
                return;
            }
            case "subscribe": {
                const sub = entry.sub;
                error.channel = sub.channel;
                if (this._subs.get(sub.channel) === sub) this._subs.delete(sub.channel);
                if (sub.waiter) {
                    sub.waiter.reject(error);
                    sub.waiter = null;
                } else {
                    this._emit("error", { error, channel: sub.channel }); // a resubscription was refused
                }
                return;
            }
            case "auth":
                if (f.code === "bad_request" && !link.ready) {
                    // this gateway does not authenticate: carry on anonymously
                    this._emit("error", { error, channel: link.channel });
                    link._becomeReady();
                    return;
                }
                // unauthorized: the gateway closes with 4001 next
                this._emit("error", { error, channel: link.channel });
                return;
            case "unsubscribe":
                entry.resolve();
                return;
            default:
                this._emit("error", { error, channel: link.channel });
        }
    }
}

/** `new Streamgate(url, options)` and `connect()`: resolves with the client once it is open. */
export function connect(url, options = {}) {
    const client = new Streamgate(url, options);
    return client.connect();
}

export default Streamgate;
