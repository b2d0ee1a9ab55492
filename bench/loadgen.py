#!/usr/bin/env python3
"""bench/loadgen: HTTP POST load from its own process, open loop at a fixed rate or closed loop.

    python bench/loadgen.py SPEC.json

SPEC: {"url": "http://127.0.0.1:8080/recommendations", "bodies": [{...}, ...], "rate": 1000,
"duration": 10, "connections": 64, "mode": "open" | "closed", "method": "POST" | "GET",
"sign": {"accessKeyId": ..., "secretAccessKey": ...}}: with "sign", every body is signed (SigV4,
as botocore signs it) before the clock starts; a signature stays valid for 15 minutes.
Prints one JSON object:
latencies (ms, sorted), statuses, achieved rate, the client's own CPU seconds.

Open loop: request i is due at t0 + i / rate whether or not earlier ones have answered, and its
latency counts from when it was due, so a server that falls behind shows it in the tail
(no coordinated omission, as wrk2 does it). Requests go out on keep-alive HTTP/1.1
connections, at most `connections` at once; a request with none free waits, and that wait
counts. Closed loop: `connections` clients, each sending its next request when the last one
answers: the most the server does; with "count", until that many requests have answered.
Raw asyncio streams + uvloop so that the client costs tens of microseconds per request on
the cores it shares with the server.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


def requests(url: str, bodies: list[dict], method: str = "POST",  # type: ignore[type-arg]
             sign: dict[str, str] | None = None) -> list[bytes]:
    u = urlsplit(url)
    if method == "GET":
        return [f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\n\r\n".encode()]
    out = []
    for body in bodies:
        data = json.dumps(body).encode()
        extra = signature(url, data, sign) if sign else ""
        out.append(f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
                   f"{extra}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return out


def signature(url: str, data: bytes, key: dict[str, str]) -> str:
    """The X-Amz-Date and Authorization header lines botocore would add to this request."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest("POST", url, data=data, headers={"Content-Type": "application/json"})
    credentials = Credentials(key["accessKeyId"], key["secretAccessKey"])
    SigV4Auth(credentials, "personalize", "us-east-1").add_auth(req)
    return "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "content-type")


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, request: bytes) -> int:
        """Send one request, read its response; the HTTP status."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


async def connect(host: str, port: int) -> Connection:
    return Connection(*await asyncio.open_connection(host, port))


async def open_loop(spec: dict, reqs: list[bytes]) -> dict:  # type: ignore[type-arg]
    u = urlsplit(spec["url"])
    rate, n = float(spec["rate"]), int(spec["rate"] * spec["duration"])
    idle: list[Connection] = []
    opened = 0
    free = asyncio.Condition()
    latencies: list[float] = []
    statuses: Counter[int | str] = Counter()

    async def one(i: int, due: float) -> None:
        nonlocal opened
        async with free:
            while not idle and opened >= spec["connections"]:
                await free.wait()
            if idle:
                conn = idle.pop()
            else:
                opened += 1
                conn = None
        try:
            if conn is None:
                conn = await connect(u.hostname or "127.0.0.1", u.port or 80)
                status = await conn.call(reqs[i % len(reqs)])
            else:
                try:
                    status = await conn.call(reqs[i % len(reqs)])
                except (OSError, asyncio.IncompleteReadError):  # the server closed it while idle
                    conn = await connect(u.hostname or "127.0.0.1", u.port or 80)  # (uvicorn: after 5 s)
                    status = await conn.call(reqs[i % len(reqs)])
            latencies.append((time.perf_counter() - due) * 1000)
            statuses[status] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            statuses[type(exc).__name__] += 1
            conn = None
            opened -= 1
        async with free:
            if conn is not None:
                idle.append(conn)
            free.notify()

    tasks = []
    t0 = time.perf_counter() + 0.05
    i = 0
    while i < n:
        now = time.perf_counter()
        while i < n and t0 + i / rate <= now:  # everything due by now goes out, even after a late wake
            tasks.append(asyncio.ensure_future(one(i, t0 + i / rate)))
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
    sent_s = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    return {"latencies_ms": latencies, "statuses": statuses, "sent": n, "send_seconds": sent_s,
            "seconds": time.perf_counter() - t0, "connections_opened": opened}


async def closed_loop(spec: dict, reqs: list[bytes]) -> dict:  # type: ignore[type-arg]
    u = urlsplit(spec["url"])
    latencies: list[float] = []
    statuses: Counter[int | str] = Counter()
    conns = [await connect(u.hostname or "127.0.0.1", u.port or 80) for _ in range(spec["connections"])]
    t0 = time.perf_counter()
    stop = t0 + spec["duration"]
    count = spec.get("count")  # each request once, however long it takes (a pass over every user)
    sent = 0

    async def client(conn: Connection) -> None:
        nonlocal sent
        while (sent < count) if count else (time.perf_counter() < stop):
            i, sent = sent, sent + 1
            start = time.perf_counter()
            status = await conn.call(reqs[i % len(reqs)])
            latencies.append((time.perf_counter() - start) * 1000)
            statuses[status] += 1

    await asyncio.gather(*(client(conn) for conn in conns))
    return {"latencies_ms": latencies, "statuses": statuses, "sent": len(latencies),
            "seconds": time.perf_counter() - t0, "connections_opened": len(conns)}


def main() -> int:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    reqs = requests(spec["url"], spec["bodies"], spec.get("method", "POST"), spec.get("sign"))
    cpu0 = os.times()
    run = open_loop if spec.get("mode", "open") == "open" else closed_loop
    out = asyncio.run(run(spec, reqs))
    cpu1 = os.times()
    out["latencies_ms"] = sorted(out["latencies_ms"])
    out["statuses"] = {str(k): v for k, v in out["statuses"].items()}
    out["client_cpu_s"] = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
