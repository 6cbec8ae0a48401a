// Types of the Streamgate browser client (streamgate.js, served by the gateway at /v1/client.js).
// Wire contract: streamgate.v1 (the JSON Schemas of every frame are in schemas/).

/** Where a subscription starts. */
export type From =
    | "latest"
    | "earliest"
    /** An offset in the channel's partition. */
    | number
    /** An offset; `partition` says which partition it was read in (a repartitioned topic answers a gap). */
    | { offset: number; partition?: number }
    /** The first record whose timestamp is at or after the time (RFC 3339 text, a Date or epoch ms). */
    | { time: string | Date | number }
    | Date;

export type Token = string | (() => string | Promise<string>);

export interface StreamgateOptions {
    /**
     * A JWT sent in an `auth` frame after each connection opens. A function is called at every
     * connection and again before the token's `exp` (the refresh keeps the connection open).
     */
    token?: Token;
    /** WebSocket subprotocols to offer. Default `["streamgate.v1"]`. */
    protocols?: string[];
    /** Reconnect delays in milliseconds: jittered, doubling from `min` up to `max`. Default 250 … 30000. */
    backoff?: { min?: number; max?: number };
    /** Place affinity channels with `GET /v1/locate/{channel}` before connecting. Default true. */
    locate?: boolean;
    /** Namespaces configured `mode: affinity` (learnt from `moved` answers as well). */
    affinity?: string[];
    /** The fetch used for `/v1/locate`. Default `globalThis.fetch`. */
    fetch?: typeof fetch;
    /** The WebSocket constructor. Default `globalThis.WebSocket`. */
    WebSocket?: typeof WebSocket;
    /** Milliseconds until a connection attempt that has not opened (and authenticated) is abandoned. Default 10000. */
    connectTimeout?: number;
    /** Consecutive 4001 refusals of a token function's tokens before the client gives up. Default 3. */
    maxAuthFailures?: number;
    /** Refresh a token this many ms before `exp` (or at half its lifetime when that is shorter). Default 30000. */
    refreshAhead?: number;
    /** A connection that stayed open this many ms resets the backoff. Default 5000. */
    stableAfter?: number;
}

/** One record of a subscribed channel. */
export interface StreamRecord {
    channel: string;
    partition: number;
    offset: number;
    /** Kafka timestamp, ms since 1970. */
    ts: number;
    /** The JSON value, or the bytes of a binary record (`binary: true`). */
    data: unknown;
    binary: boolean;
    msgId: string | null;
    /** The publisher's authenticated subject (`anonymous` without authentication), or null. */
    sender: string | null;
}

export interface Ack {
    channel: string;
    partition: number;
    /** Null only when Kafka reported success without an offset (a deduplicated retry). */
    offset: number | null;
    msgId: string;
}

export interface Gap {
    from: number;
    to: number;
    reason: "retention" | "repartitioned" | "beyond_head" | "truncated" | string;
}

export interface Subscribed {
    channel: string;
    partition: number;
    /** The first offset that may be delivered. */
    offset: number;
    /** The partition's end offset when the subscription started. */
    head: number;
    recovered: boolean;
    gap?: Gap;
}

export interface SubscriptionState {
    channel: string;
    partition: number | null;
    /** The offset after the last record delivered (where a resume starts), null before the first answer. */
    next: number | null;
    confirmed: boolean;
    affinity: boolean;
    head: number | null;
}

export interface PublishOptions {
    /** Idempotency key stored as the record header `sg-msg-id`. Default: a random UUID. */
    msgId?: string;
    /** W3C trace context (`00-<32 hex>-<16 hex>-<2 hex>`). */
    traceparent?: string;
}

export interface SubscribeOptions {
    from?: From;
}

export interface Stats {
    /** Connections that opened (and authenticated). */
    connects: number;
    /** Reconnection attempts scheduled. */
    reconnects: number;
    /** Publishes sent a second time after their connection dropped. */
    publishesRetried: number;
    /** Records below a subscription's position that were not handed to the application. */
    duplicatesDropped: number;
    /** Gaps announced (recovered:false and gap frames). */
    gaps: number;
    /** Records delivered. */
    records: number;
}

export interface StreamgateEventMap {
    /** A connection opened (and authenticated). `channel` is null for the multiplexed connection. */
    open: { channel: string | null; url: string; reconnected: boolean };
    /** A connection closed (or an attempt failed); `reconnecting` tells whether another follows. */
    close: { channel: string | null; code: number; reason: string; reconnecting: boolean };
    /** A reconnection is scheduled in `delay` ms. */
    reconnecting: { channel: string | null; code: number; reason: string; attempt: number; delay: number };
    /** The gateway accepted a token. */
    authed: { channel: string | null; sub: string; exp: number };
    /** A subscription started or resumed (`resumed`: after a reconnect). */
    subscribed: Subscribed & { resumed: boolean };
    /** Records `from` … `to - 1` of the partition are gone; delivery continues at `to`. */
    gap: Gap & { channel: string; partition: number | null };
    /** An affinity channel lives elsewhere; the client follows. `offset`: the next record (a hand-off). */
    moved: { channel: string; url: string; offset: number | null };
    /** Something failed that no promise reports (a refused resubscription, a handler that threw, …). */
    error: { error: Error; channel: string | null };
    /** A record of any subscription. */
    record: StreamRecord;
}

export class StreamgateEvent<T = unknown> extends Event {
    readonly detail: T;
}

export class StreamgateError extends Error {
    /** An error code of PROTOCOL §7, or `closed`, `unsubscribed`, `auth_failed`, `locate_failed`. */
    readonly code: string;
    /** The `error` / `nack` frame, when the gateway sent one. */
    readonly frame: Record<string, unknown> | null;
    readonly channel: string | null;
    readonly msgId: string | null;
    /** For publishes: "no" (not stored) or "unknown" (retry with the same msgId). */
    readonly persisted: "no" | "unknown" | null;
    readonly closeCode: number | null;
    /** Asking again will not help (a `locate` refused the channel name or its namespace). */
    readonly fatal: boolean;
}

export declare const CloseCode: Readonly<{
    normal: 1000;
    goingAway: 1001;
    protocolError: 1002;
    abnormal: 1006;
    invalidUTF8: 1007;
    policy: 1008;
    tooBig: 1009;
    internal: 1011;
    tryAgainLater: 1013;
    pingTimeout: 4000;
    unauthorized: 4001;
    forbidden: 4003;
    slowConsumer: 4008;
    moved: 4302;
}>;

export class Streamgate extends EventTarget {
    /**
     * @param url the gateway: `wss://host`, `wss://host/v1/ws`, `https://host/prefix`, or (in a page) `/v1/ws`
     */
    constructor(url: string | URL, options?: StreamgateOptions);

    readonly url: string | URL;
    /** Of the multiplexed connection. */
    readonly state: "idle" | "connecting" | "open" | "waiting" | "closed";
    /** Namespaces known to be affinity. */
    readonly affinity: string[];
    /** Channels subscribed now. */
    readonly channels: string[];
    /** Publishes without an answer yet (queued or sent). */
    readonly unanswered: number;
    readonly stats: Readonly<Stats>;

    /** Opens the multiplexed connection; resolves once it is open. Rejects only for a refused token or close(). */
    connect(): Promise<this>;

    subscribe(channel: string, onRecord?: (record: StreamRecord) => void): Promise<Subscribed>;
    subscribe(channel: string, options: SubscribeOptions, onRecord?: (record: StreamRecord) => void): Promise<Subscribed>;

    unsubscribe(channel: string): Promise<void>;

    /**
     * Resolves with the ack once Kafka stored the record; rejects with a StreamgateError. `data` is any
     * JSON value; bytes (Uint8Array, ArrayBuffer, typed arrays) are sent as `data_b64`.
     */
    publish(channel: string, data: unknown, options?: PublishOptions): Promise<Ack>;

    subscription(channel: string): SubscriptionState | null;

    /** Listens to `type`; returns the function that stops listening. */
    on<K extends keyof StreamgateEventMap>(type: K, listener: (detail: StreamgateEventMap[K], event: StreamgateEvent<StreamgateEventMap[K]>) => void): () => void;

    addEventListener<K extends keyof StreamgateEventMap>(type: K, listener: (event: StreamgateEvent<StreamgateEventMap[K]>) => void, options?: boolean | AddEventListenerOptions): void;
    addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
    removeEventListener<K extends keyof StreamgateEventMap>(type: K, listener: (event: StreamgateEvent<StreamgateEventMap[K]>) => void, options?: boolean | EventListenerOptions): void;
    removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;

    /** Closes every connection; unanswered publishes are rejected with `closed`. */
    close(code?: number, reason?: string): void;
}

/** `new Streamgate(url, options).connect()`. */
export function connect(url: string | URL, options?: StreamgateOptions): Promise<Streamgate>;

/** The namespace of a channel: before the first ":" ("" without one). */
export function namespaceOf(channel: string): string;

export default Streamgate;
