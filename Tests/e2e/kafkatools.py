"""Kafka-side helpers: read and write the gateway's topics with independent clients
(confluent-kafka and the kcat binary). Everything here is blocking and bounded by
timeouts; async callers run it in a thread (asyncio.to_thread)."""
from __future__ import annotations

import ctypes
import dataclasses
import signal
import subprocess
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

DEFAULT_TOPIC = "streamgate.events"


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# --- Kafka's default partitioner (murmur2, as in the Java client) --------------

def murmur2(data: bytes) -> int:
    """32-bit murmur2 as used by Kafka's DefaultPartitioner (unsigned result)."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & 3
    idx = length - rest
    if rest == 3:
        h ^= data[idx + 2] << 16
    if rest >= 2:
        h ^= data[idx + 1] << 8
    if rest >= 1:
        h ^= data[idx]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


# --- records ---------------------------------------------------------------------

@dataclasses.dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list  # [(name, bytes|None)]
    ts: int
    ts_type: int  # 1 = CreateTime, 2 = LogAppendTime, 0 = none

    def header_map(self) -> dict:
        out = {}
        for k, v in self.headers:
            out[k] = None if v is None else v.decode("utf-8", "replace")
        return out

    def duplicate_headers(self) -> list:
        names = [k for k, _ in self.headers]
        return sorted({n for n in names if names.count(n) > 1})


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "e2e-reader-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "socket.timeout.ms": 10000,
        "log_level": 3,
    })


def watermarks(bootstrap: str, topic: str, partition: int, timeout: float = 10.0) -> tuple[int, int]:
    c = _consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
    finally:
        c.close()


def partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    c = _consumer(bootstrap)
    try:
        md = c.list_topics(topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            raise RuntimeError(f"topic {topic} metadata: {None if t is None else t.error}")
        return len(t.partitions)
    finally:
        c.close()


def read_range(bootstrap: str, topic: str, partition: int, start: int, end: int | None = None,
               timeout: float = 30.0) -> list[Rec]:
    """Records of one partition with start <= offset < end (end = high watermark now
    when None). Raises on timeout."""
    c = _consumer(bootstrap)
    out: list[Rec] = []
    try:
        if end is None:
            _, end = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
        if end <= start:
            return out
        c.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        last = start - 1
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if msg.offset() >= end:
                        return out
                    continue
                raise RuntimeError(f"consume {topic}/{partition}: {msg.error()}")
            if msg.offset() >= end:
                return out
            if msg.offset() <= last:
                continue
            last = msg.offset()
            ts_type, ts = msg.timestamp()
            out.append(Rec(topic, partition, msg.offset(), msg.key(), msg.value(),
                           list(msg.headers() or []), ts, ts_type))
            if last >= end - 1:
                return out
        raise TimeoutError(f"reading {topic}/{partition} [{start},{end}) stopped at {last}")
    finally:
        c.close()


def produce(bootstrap: str, topic: str, records: list[dict], timeout: float = 60.0,
            extra_conf: dict | None = None) -> list[tuple[int, int]]:
    """records: dicts with key (str), value (bytes), optional headers, timestamp.
    Returns [(partition, offset)] in input order. Uses the murmur2 partitioner so the
    partition matches Kafka's default (and the gateway's)."""
    conf = {
        "bootstrap.servers": bootstrap,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "log_level": 3,
    }
    conf.update(extra_conf or {})
    p = Producer(conf)
    results: list = [None] * len(records)
    errors: list = []

    def make_cb(i):
        def cb(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                results[i] = (msg.partition(), msg.offset())
        return cb

    deadline = time.monotonic() + timeout
    for i, r in enumerate(records):
        kw = {"key": r["key"].encode() if isinstance(r["key"], str) else r["key"],
              "value": r["value"], "on_delivery": make_cb(i)}
        if r.get("headers") is not None:
            kw["headers"] = r["headers"]
        if r.get("timestamp") is not None:
            kw["timestamp"] = r["timestamp"]
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
                if time.monotonic() > deadline:
                    raise TimeoutError("producer queue full")
        p.poll(0)
    left = p.flush(max(1.0, deadline - time.monotonic()))
    if left:
        raise TimeoutError(f"{left} records not delivered")
    if errors:
        raise RuntimeError(f"{len(errors)} delivery errors, first: {errors[0]}")
    return results


# --- kcat --------------------------------------------------------------------------

KCAT_FORMAT = "#%p %o %T %K %S %h\n%k%s\n"


def kcat_read(bootstrap: str, topic: str, partition: int, start: int, timeout: float = 30.0,
              kcat: str = "kcat") -> list[Rec]:
    """Reads partition from offset start to its end with kcat (-e), byte-exact."""
    proc = subprocess.run(
        [kcat, "-C", "-q", "-b", bootstrap, "-t", topic, "-p", str(partition), "-o", str(start),
         "-e", "-f", KCAT_FORMAT],
        capture_output=True, timeout=timeout, preexec_fn=_die_with_parent)
    if proc.returncode != 0:
        raise RuntimeError(f"kcat exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    return parse_kcat(proc.stdout, topic)


def parse_kcat(buf: bytes, topic: str) -> list[Rec]:
    out = []
    pos = 0
    while pos < len(buf):
        if buf[pos:pos + 1] != b"#":
            raise ValueError(f"kcat output out of sync at {pos}: {buf[pos:pos + 60]!r}")
        nl = buf.index(b"\n", pos)
        head = buf[pos + 1:nl].decode()
        parts = head.split(" ", 5)
        p, o, ts, klen, vlen = (int(x) for x in parts[:5])
        hdr_text = parts[5] if len(parts) > 5 else ""
        pos = nl + 1
        key = None if klen < 0 else buf[pos:pos + klen]
        pos += max(klen, 0)
        value = None if vlen < 0 else buf[pos:pos + vlen]
        pos += max(vlen, 0)
        if buf[pos:pos + 1] != b"\n":
            raise ValueError(f"kcat record at offset {o} not terminated")
        pos += 1
        headers = []
        if hdr_text:
            for item in hdr_text.split(","):
                name, _, val = item.partition("=")
                headers.append((name, val.encode()))
        out.append(Rec(topic, p, o, key, value, headers, ts, 1))
    return out


def kcat_produce(bootstrap: str, topic: str, key: str, lines: list[bytes], timeout: float = 30.0,
                 kcat: str = "kcat") -> None:
    """Writes one record per line with key=key, murmur2 partitioner (Kafka's default)."""
    data = b"".join(l + b"\n" for l in lines)
    proc = subprocess.run(
        [kcat, "-P", "-q", "-b", bootstrap, "-t", topic, "-k", key,
         "-X", "partitioner=murmur2_random", "-X", "enable.idempotence=true"],
        input=data, capture_output=True, timeout=timeout, preexec_fn=_die_with_parent)
    if proc.returncode != 0:
        raise RuntimeError(f"kcat -P exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
