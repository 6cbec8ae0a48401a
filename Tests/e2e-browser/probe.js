// The browser side of Tests/e2e-browser/run.py: Streamgate clients in a page, with every frame they
// send and receive on record. run.py drives it over DevTools (Runtime.evaluate on `window.probe`) and
// reads what it recorded; the checks themselves are in run.py.

let mod = null;
const clients = new Map(); // name -> {client, records: {channel: [...]}, events: [...]}
const wire = []; // {socket, dir: "open" | "out" | "in" | "close", t, url?, text?, code?}
const floods = new Map(); // name -> {timer, pubs: [...]}
let sockets = 0;

/** A WebSocket that logs what crosses it; given to the client through its `WebSocket` option. */
class RecordingSocket extends WebSocket {
    constructor(url, protocols, client) {
        super(url, protocols);
        const socket = ++sockets;
        this.socketNumber = socket;
        wire.push({ socket, client, dir: "open", t: Date.now(), url: String(url) });
        this.addEventListener("message", (e) => {
            wire.push({ socket, dir: "in", t: Date.now(), text: typeof e.data === "string" ? e.data : "(binary)" });
        });
        this.addEventListener("close", (e) => {
            wire.push({ socket, dir: "close", t: Date.now(), code: e.code, reason: e.reason });
        });
    }

    send(text) {
        wire.push({ socket: this.socketNumber, dir: "out", t: Date.now(), text });
        super.send(text);
    }
}

function plain(value) {
    if (value instanceof Error) {
        return { name: value.name, code: value.code ?? null, message: value.message, persisted: value.persisted ?? null,
                 closeCode: value.closeCode ?? null, msgId: value.msgId ?? null };
    }
    if (value instanceof Uint8Array) return { bytes: Array.from(value) };
    if (value && typeof value === "object") {
        const out = Array.isArray(value) ? [] : {};
        for (const [k, v] of Object.entries(value)) out[k] = plain(v);
        return out;
    }
    return value;
}

export async function load(url) {
    mod = await import(url);
    return Object.keys(mod).sort();
}

/** A client named `name`; `options.tokens` (a list) makes the token option a function that hands them out in turn. */
export function open(name, url, options = {}) {
    const Socket = class extends RecordingSocket {
        constructor(url, protocols) {
            super(url, protocols, name);
        }
    };
    const opts = { ...options, WebSocket: Socket };
    const entry = { client: null, records: {}, events: [], tokenCalls: 0 };
    if (Array.isArray(options.tokens)) {
        const tokens = options.tokens;
        delete opts.tokens;
        opts.token = async () => tokens[Math.min(entry.tokenCalls++, tokens.length - 1)];
    }
    entry.client = new mod.Streamgate(url, opts);
    for (const type of ["open", "close", "reconnecting", "subscribed", "gap", "moved", "error", "authed"]) {
        entry.client.addEventListener(type, (e) => entry.events.push({ type, t: Date.now(), detail: plain(e.detail) }));
    }
    clients.set(name, entry);
    return true;
}

function entryOf(name) {
    const e = clients.get(name);
    if (!e) throw new Error(`no client ${name}`);
    return e;
}

export async function connect(name) {
    await entryOf(name).client.connect();
    return entryOf(name).client.state;
}

export async function subscribe(name, channel, from) {
    const e = entryOf(name);
    const list = (e.records[channel] = e.records[channel] || []);
    const opts = from === undefined ? {} : { from };
    const info = await e.client.subscribe(channel, opts, (r) => {
        list.push({
            offset: r.offset, partition: r.partition, ts: r.ts, binary: r.binary, msgId: r.msgId, sender: r.sender,
            data: r.binary ? { bytes: Array.from(r.data) } : r.data,
        });
    });
    return plain(info);
}

export async function unsubscribe(name, channel) {
    await entryOf(name).client.unsubscribe(channel);
    return true;
}

/** Publishes `items` ([{data, msgId?, binary?}]) all at once; the answers in order ({ack} or {error}). */
export async function publishAll(name, channel, items) {
    const c = entryOf(name).client;
    const promises = items.map((it) => {
        const data = it.binary ? new Uint8Array(it.binary) : it.data;
        return c.publish(channel, data, it.msgId ? { msgId: it.msgId } : {}).then(
            (ack) => ({ ack }), (error) => ({ error: plain(error) }));
    });
    return Promise.all(promises);
}

/** Publishes `perTick` records every `everyMs` until stopFlood; each remembers its answer. */
export function startFlood(name, channel, everyMs, perTick) {
    const c = entryOf(name).client;
    const flood = { pubs: [], timer: null, n: 0 };
    const tick = () => {
        for (let i = 0; i < perTick; i++) {
            const n = flood.n++;
            const p = { n, t: Date.now(), msgId: null, ack: null, error: null, settled: false };
            flood.pubs.push(p);
            const data = { n, flood: name };
            const msgId = `${name}-${n}-${Math.random().toString(36).slice(2, 10)}`;
            p.msgId = msgId;
            c.publish(channel, data, { msgId }).then(
                (ack) => { p.ack = ack; p.settled = true; },
                (error) => { p.error = plain(error); p.settled = true; });
        }
    };
    flood.timer = setInterval(tick, everyMs);
    tick();
    floods.set(name, flood);
    return true;
}

export function stopFlood(name) {
    const f = floods.get(name);
    clearInterval(f.timer);
    return f.pubs.length;
}

export function flood(name) {
    const f = floods.get(name);
    return { total: f.pubs.length, settled: f.pubs.filter((p) => p.settled).length, pubs: f.pubs };
}

export function records(name, channel) {
    return entryOf(name).records[channel] || [];
}

export function count(name, channel) {
    return (entryOf(name).records[channel] || []).length;
}

export function events(name) {
    return entryOf(name).events;
}

export function info(name) {
    const e = entryOf(name);
    const c = e.client;
    return {
        state: c.state, stats: { ...c.stats }, unanswered: c.unanswered, channels: c.channels, affinity: c.affinity,
        tokenCalls: e.tokenCalls, subscriptions: Object.fromEntries(c.channels.map((ch) => [ch, c.subscription(ch)])),
    };
}

export function wireLog(since = 0) {
    return wire.slice(since);
}

export function close(name) {
    entryOf(name).client.close();
    return true;
}
