// The Streamgate console: a page to try a gateway by hand (connect, subscribe, publish) and watch what
// happens (records with their partition/offset, acks, gaps, reconnects, moves). Served by the gateway
// at / with this file at /console.js; it uses the client the gateway serves at /v1/client.js.

import { Streamgate } from "/v1/client.js";

const MAX_ROWS = 500;
const $ = (selector) => document.querySelector(selector);

const params = new URLSearchParams(location.search);
const pageDefault = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
$("#url").value = params.get("url") || pageDefault;

let client = null;
let acks = 0;
let statsTimer = null;
const positions = new Map(); // channel -> li of #subscriptions

function now() {
    const d = new Date();
    return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function short(value, limit = 240) {
    let text;
    if (value instanceof Uint8Array) {
        const hex = Array.from(value.subarray(0, 24), (b) => b.toString(16).padStart(2, "0"));
        text = `${value.length} bytes: ${hex.join(" ")}`;
    } else {
        text = typeof value === "string" ? value : JSON.stringify(value);
    }
    return text.length > limit ? text.slice(0, limit) + "…" : text;
}

/** One row of the live log; text only (nothing from the wire is parsed as HTML). */
function log(kind, channel, position, detail) {
    const row = document.createElement("tr");
    row.className = `kind-${kind}`;
    for (const [cls, text] of [["time", now()], ["kind", kind], ["channel", channel ?? ""],
                               ["position", position ?? ""], ["detail", detail ?? ""]]) {
        const cell = document.createElement("td");
        cell.className = cls;
        cell.textContent = text;
        row.append(cell);
    }
    const body = $("#log");
    body.prepend(row);
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
    $("#log-empty").hidden = true;
}

function setStatus(state, text) {
    const status = $("#status");
    status.dataset.state = state;
    status.textContent = text ?? state;
}

function refreshStats() {
    if (!client) return;
    const s = client.stats;
    $("#stat-records").textContent = s.records;
    $("#stat-acks").textContent = acks;
    $("#stat-unanswered").textContent = client.unanswered;
    $("#stat-gaps").textContent = s.gaps;
    $("#stat-reconnects").textContent = s.reconnects;
    $("#stat-retried").textContent = s.publishesRetried;
    for (const [channel, li] of positions) {
        const sub = client.subscription(channel);
        const where = sub && sub.partition !== null ? `p${sub.partition} next ${sub.next}` : "waiting";
        li.querySelector("span").textContent = `${channel}  ·  ${where}${sub && sub.affinity ? "  ·  bound" : ""}`;
    }
}

function parseFrom(text) {
    const t = text.trim();
    if (t === "" || t === "latest") return "latest";
    if (t === "earliest") return "earliest";
    if (/^\d+$/.test(t)) return Number(t);
    if (!Number.isNaN(Date.parse(t))) return { time: t };
    throw new Error(`from: "${t}" is not latest, earliest, an offset or an RFC 3339 time`);
}

function parseData(text) {
    try {
        return JSON.parse(text);
    } catch {
        return text; // not JSON: published as a JSON string
    }
}

function describeError(error) {
    if (!error) return "";
    const code = error.code ? `${error.code}: ` : "";
    const persisted = error.persisted ? ` (persisted: ${error.persisted})` : "";
    return `${code}${error.message}${persisted}`;
}

function watch(c) {
    const where = (d) => (d.channel ? `bound ${d.channel}` : "multiplexed");
    c.addEventListener("open", (e) => {
        const d = e.detail;
        if (d.channel === null) setStatus("open", d.reconnected ? "open (reconnected)" : "open");
        log("open", d.channel, "", `${where(d)} ${d.url}${d.reconnected ? " (reconnected)" : ""}`);
    });
    c.addEventListener("close", (e) => {
        const d = e.detail;
        if (d.channel === null && !d.reconnecting) setStatus("closed");
        log("close", d.channel, "", `${where(d)} code ${d.code}${d.reason ? " " + d.reason : ""}`);
    });
    c.addEventListener("reconnecting", (e) => {
        const d = e.detail;
        if (d.channel === null) setStatus("waiting", `reconnecting (attempt ${d.attempt})`);
        log("reconnecting", d.channel, "", `${where(d)} in ${d.delay} ms (attempt ${d.attempt}, after ${d.code})`);
    });
    c.addEventListener("authed", (e) => {
        const d = e.detail;
        log("authed", d.channel, "", `sub ${d.sub}, exp ${new Date(d.exp * 1000).toISOString()}`);
    });
    c.addEventListener("subscribed", (e) => {
        const d = e.detail;
        log("subscribed", d.channel, `${d.partition}/${d.offset}`,
            `head ${d.head}${d.resumed ? ", resumed" : ""}${d.recovered ? "" : ", not recovered"}`);
    });
    c.addEventListener("gap", (e) => {
        const d = e.detail;
        log("gap", d.channel, `${d.partition ?? "?"}/${d.from}→${d.to}`,
            `offsets ${d.from}…${d.to - 1} are gone (${d.reason})`);
    });
    c.addEventListener("moved", (e) => {
        const d = e.detail;
        log("moved", d.channel, d.offset === null ? "" : `next ${d.offset}`, d.url);
    });
    c.addEventListener("error", (e) => log("error", e.detail.channel, "", describeError(e.detail.error)));
    c.addEventListener("record", (e) => {
        const r = e.detail;
        const from = r.sender ? ` · ${r.sender}` : "";
        log("record", r.channel, `${r.partition}/${r.offset}`, short(r.data) + from);
    });
}

function connect() {
    if (client) client.close();
    positions.clear();
    $("#subscriptions").replaceChildren();
    acks = 0;
    const token = $("#token").value.trim();
    const affinity = $("#affinity").value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
        client = new Streamgate($("#url").value.trim(), { token: token || undefined, affinity });
    } catch (error) {
        log("error", null, "", String(error.message || error));
        return;
    }
    watch(client);
    setStatus("connecting");
    $("#connect").disabled = true;
    $("#disconnect").disabled = false;
    client.connect().catch((error) => {
        log("error", null, "", describeError(error));
        setStatus("closed", "refused");
        $("#connect").disabled = false;
    });
    clearInterval(statsTimer);
    statsTimer = setInterval(refreshStats, 500);
}

function disconnect() {
    if (!client) return;
    client.close();
    refreshStats();
    client = null;
    positions.clear();
    $("#subscriptions").replaceChildren();
    setStatus("closed", "disconnected");
    $("#connect").disabled = false;
    $("#disconnect").disabled = true;
}

function subscribe() {
    if (!client) return log("error", null, "", "connect first");
    const channel = $("#sub-channel").value.trim();
    let from;
    try {
        from = parseFrom($("#sub-from").value);
    } catch (error) {
        return log("error", channel, "", error.message);
    }
    const c = client;
    c.subscribe(channel, { from }).then(
        () => refreshStats(),
        (error) => {
            positions.get(channel)?.remove();
            positions.delete(channel);
            log("error", channel, "", describeError(error));
        });
    if (!c.subscription(channel) || positions.has(channel)) return;
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = `${channel}  ·  waiting`;
    const stop = document.createElement("button");
    stop.className = "quiet";
    stop.textContent = "unsubscribe";
    stop.addEventListener("click", () => {
        c.unsubscribe(channel).then(() => log("unsubscribed", channel, "", ""));
        li.remove();
        positions.delete(channel);
    });
    li.append(label, stop);
    $("#subscriptions").append(li);
    positions.set(channel, li);
}

function publish() {
    if (!client) return log("error", null, "", "connect first");
    const channel = $("#pub-channel").value.trim();
    const data = parseData($("#pub-data").value);
    const msgId = $("#pub-msgid").value.trim();
    client.publish(channel, data, msgId ? { msgId } : {}).then(
        (ack) => {
            acks += 1;
            log("ack", ack.channel, `${ack.partition}/${ack.offset}`, `msgId ${ack.msgId}`);
            refreshStats();
        },
        (error) => log(error.frame?.type === "nack" ? "nack" : "error", channel, "", describeError(error)));
    $("#pub-msgid").value = "";
}

$("#connect").addEventListener("click", connect);
$("#disconnect").addEventListener("click", disconnect);
$("#subscribe").addEventListener("click", subscribe);
$("#publish").addEventListener("click", publish);
$("#clear").addEventListener("click", () => {
    $("#log").replaceChildren();
    $("#log-empty").hidden = false;
});
const submits = [["#sub-channel", "#subscribe"], ["#sub-from", "#subscribe"], ["#pub-msgid", "#publish"]];
for (const [input, button] of submits) {
    $(input).addEventListener("keydown", (e) => {
        if (e.key === "Enter") $(button).click();
    });
}
$("#pub-data").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("#publish").click();
});

window.consoleReady = true;
