"""What a client may send a server on a network: bodies over their cap are refused before they
are read, requests that arrive too slowly or with too large a head are cut off, and the
control plane answers only to the names the server is known by (DNS rebinding)."""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import botocore.exceptions
import httpx
import pytest
from support import Server

MB = 2**20
UPLOAD = 256 * MB  # each of the four: 1 GB in all, far more than the server's memory grows by
CONTROL = {"content-type": "application/x-amz-json-1.1",
           "x-amz-target": "AmazonPersonalize.CreateDatasetGroup"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def upload(port: int, path: str, headers: dict[str, str], *, chunked: bool) -> tuple[int, int, bytes]:
    """POST a 256 MB body as fast as the server takes it, looking for an answer before each
    write. Returns (status, bytes of body sent before the answer came, the answer's body)."""
    framing = {"transfer-encoding": "chunked"} if chunked else {"content-length": str(UPLOAD)}
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in {**headers, **framing}.items()) + "\r\n"
    piece = b"x" * MB
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    sent, answer, closed = 0, b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        pending = memoryview(chunk)
        while True:
            writing = sent < UPLOAD and not closed
            readable, writable, _ = select.select([sock], [sock] if writing else [], [], 30)
            assert readable or writable, "no answer in 30 s"
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                answer += data
                if not data or (b"\r\n\r\n" in answer and answer.endswith(b"}")):
                    break
            elif writable:
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True  # the server closed: read what it said
                    continue
                sent += n
                pending = pending[n:] or memoryview(chunk)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
    return int(status_line.split()[1]), sent, rest.partition(b"\r\n\r\n")[2]


def test_four_256_mb_uploads_are_refused_before_they_are_read(embedded_server: Server) -> None:
    """Two declare their size (refused at once), two are chunked (refused once past the cap):
    each answered 413 in Personalize's shape, memory stays flat, and other callers are served."""
    server, pid = embedded_server, embedded_server.proc.pid
    control = server.client("personalize")
    control.list_dataset_groups()
    before = rss_mb(pid)
    peak, latencies, done = [before], [], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak.append(rss_mb(pid))
            time.sleep(0.005)

    def probe() -> None:  # health and a boto3 control-plane call, back to back, all along
        while not done.is_set():
            t = time.monotonic()
            assert httpx.get(server.url + "/health", timeout=10).status_code == 200
            control.list_dataset_groups()
            latencies.append(time.monotonic() - t)

    uploads = [("/", CONTROL, False), ("/events", {"content-type": "application/json"}, False),
               ("/", CONTROL, True), ("/events", {"content-type": "application/json"}, True)]
    with ThreadPoolExecutor(6) as pool:
        background = [pool.submit(watch), pool.submit(probe)]
        time.sleep(0.1)
        results = list(pool.map(lambda u: upload(server.port, u[0], u[1], chunked=u[2]), uploads))
        time.sleep(0.1)
        done.set()
        for f in background:
            f.result()
    for (path, _, chunked), (status, sent, body) in zip(uploads, results, strict=True):
        error = json.loads(body)
        assert (status, error["__type"]) == (413, "RequestTooLargeException"), (path, chunked, body)
        cap = 10 * MB if path == "/" else MB
        assert str(cap) in error["message"]
        # what was sent before the answer: the cap and what the sockets' buffers hold, not 256 MB
        assert sent < cap + 48 * MB, (path, chunked, sent / MB)
    assert max(peak) - before < 100, f"RSS grew {max(peak) - before:.0f} MB ({before:.0f} MB before)"
    assert len(latencies) >= 3 and max(latencies) < 1.0, latencies
    assert control.list_dataset_groups()["datasetGroups"] == [], "nothing was created"


def exchange(port: int, data: bytes, wait_s: float = 10) -> tuple[float, bytes, bool]:
    """Send `data`, then read until the server closes: (seconds to the end, what it said,
    whether it closed the connection)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start, pending = time.monotonic(), memoryview(data)
        while pending and not select.select([sock], [], [], 0)[0]:  # stop writing once it answers
            try:
                pending = pending[sock.send(pending[:MB]):]
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(wait_s)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            return time.monotonic() - start, answer, False
        except ConnectionResetError:
            pass
        return time.monotonic() - start, answer, True


@pytest.fixture
def impatient_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", env={"OPZ_READ_TIMEOUT_S": "1"}).start()
    yield server
    server.stop()


def test_slow_requests_are_answered_408_and_the_connection_closed(impatient_server: Server) -> None:
    port = impatient_server.port
    stalled_body = b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n" \
                   b"content-length: 100\r\n\r\n{\"trackingId\": "
    stalled_head = b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\nx-amz-target: AmazonPersonalize.List"
    for data in (stalled_body, stalled_head):
        took, answer, closed = exchange(port, data)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["__type"] == "RequestTimeoutException"
        assert closed and 0.9 < took < 3, took
    took, answer, closed = exchange(port, b"")  # connected, said nothing: closed, nothing said
    assert (answer, closed) == (b"", True) and 0.9 < took < 3, took
    # a request that arrives in time is answered as ever, however long the answer takes after
    assert httpx.get(impatient_server.url + "/health").status_code == 200


def test_a_head_over_64_kib_is_refused_at_once(embedded_server: Server) -> None:
    many = b"".join(b"x-pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))  # ~71 KB, one read
    one = b"x-pad: " + b"a" * (8 * MB) + b"\r\n"  # one header, many reads
    for headers in (many, one):
        took, answer, closed = exchange(embedded_server.port,
                                        b"GET /health HTTP/1.1\r\nhost: x\r\n" + headers + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["__type"] == \
            "RequestHeaderFieldsTooLargeException"
        assert closed and took < 2
    fine = b"".join(b"x-pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(60))
    _, answer, _ = exchange(embedded_server.port,
                            b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + fine + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), "a head under the cap is answered"


def control_call(port: int, host: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", headers={
        **CONTROL, "x-amz-target": "AmazonPersonalize.ListDatasetGroups", "host": host})


def test_the_control_plane_answers_only_to_the_servers_own_names(embedded_server: Server,
                                                                  tmp_path: Path) -> None:
    port = embedded_server.port
    for endpoint in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):  # boto3 as users point it
        boto3.client("personalize", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").list_dataset_groups()
    for host in (f"[::1]:{port}", "LOCALHOST", f"127.0.0.1:{port}"):
        assert control_call(port, host).status_code == 200, host
    refused = control_call(port, f"attacker.example:{port}")  # a page that rebound its name to us
    assert refused.status_code == 403
    assert refused.json()["__type"] == "AccessDeniedException"
    assert "OPZ_ALLOWED_HOSTS" in refused.json()["message"]
    rebound = embedded_server.client("personalize")
    rebound.meta.events.register("before-send.*.*", lambda request, **_: request.headers.__setitem__(
        "Host", "attacker.example"))
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDeniedException"):
        rebound.list_dataset_groups()
    # the data plane is reached through load balancers by other names: not checked
    assert httpx.get(embedded_server.url + "/health", headers={"host": "api.shop.example"}).status_code == 200
    events = httpx.post(embedded_server.url + "/events", json={"trackingId": "nope", "eventList": []},
                        headers={"host": "api.shop.example"})
    assert events.json()["__type"] != "AccessDeniedException", events.text
    named = Server(tmp_path / "named", env={"OPZ_ALLOWED_HOSTS": "opz-api, opz-api.shop.svc"}).start()
    try:
        assert control_call(named.port, f"opz-api.shop.svc:{named.port}").status_code == 200
        assert control_call(named.port, "localhost").status_code == 200
        assert control_call(named.port, "attacker.example").status_code == 403
    finally:
        named.stop()
    anyone = Server(tmp_path / "any", env={"OPZ_ALLOWED_HOSTS": "*"}).start()
    try:
        assert control_call(anyone.port, "attacker.example").status_code == 200
    finally:
        anyone.stop()
