"""`personalize serve --workers 2`: two API processes on one port, distributed mode only.

Both processes answer, each the same, /metrics counts both, and what one process stores (a
recommendation's items, for implicit impressions) or the stream worker applies (a click) is
what the other one serves.
Embedded mode keeps state in its one process, so it refuses, saying why.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Server, Worker, free_port
from test_training import RECIPE, dataset_group, slice_of_ml100k, train

WORKERS = 2
REQUESTS = 400  # each on a new connection: the kernel spreads them over the processes' sockets


def worker_pids(server: Server) -> list[int]:
    """The API processes uvicorn's supervisor (the server's process) started."""
    assert server.proc is not None
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def listening(pid: int, port: int) -> bool:
    """Whether the process has a listening TCP socket on the port: ready to take connections (a
    process only starting is not in the port's SO_REUSEPORT group yet, so it gets none)."""
    try:
        inodes = {os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()}
        rows = [line.split() for table in ("tcp", "tcp6")  # sl local_address rem_address st ... inode
                for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]]
    except OSError:  # gone, or a zombie: nothing of it listens
        return False
    return any(int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A" and f"socket:[{f[9]}]" in inodes
               for f in rows)


def all_listening(server: Server, timeout: float = 120) -> list[int]:
    """The API processes, once every one of them listens (/health answers once the first does)."""
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(server)) != WORKERS or not all(listening(p, server.port) for p in pids):
        assert time.monotonic() < deadline, f"not all of {pids} listen on {server.port}"
        time.sleep(0.1)
    return pids


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recommend(url: str, campaign: str, user: str, filter_arn: str | None = None) -> dict[str, Any]:
    """One GetRecommendations on a connection of its own."""
    filtered = {} if filter_arn is None else {"filterArn": filter_arn}
    r = httpx.post(url + "/recommendations", json={"campaignArn": campaign, "userId": user,
                                                   "numResults": 10, **filtered}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def answered(url: str) -> float:
    """GetRecommendations answered 200, as one scrape of /metrics (on a connection of its own) says."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "opz_api_requests_total" and s.labels == {"operation": "GetRecommendations",
                                                                       "status": "200"})


@pytest.fixture
def two_workers(tmp_path: Path, unique: str, kafka_bootstrap: str, redis_url: str) -> Any:
    env = {"OPZ_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "OPZ_REDIS_URL": redis_url,
           "OPZ_REDIS_PREFIX": unique, "OPZ_STREAM_APP_ID": f"{unique}-stream",
           "OPZ_STREAM_DATASET_GROUPS": unique, "OPZ_WORKERS": str(WORKERS)}
    server = Server(tmp_path / "data", env=env).start()
    pids = all_listening(server)
    stream = Worker(tmp_path, {**env, "OPZ_DATA_DIR": str(server.data_dir), "OPZ_WORKERS": "1"}).start()
    yield server
    pids += worker_pids(server)  # with any started in place of one that died
    stream.stop()
    server.stop()  # SIGTERM to the supervisor, which stops its workers and waits for them
    assert not [p for p in pids if Path(f"/proc/{p}").exists()], "API processes outlived the server"


def test_two_api_processes_answer_alike_and_share_state(two_workers: Server, tmp_path: Path,
                                                        unique: str) -> None:
    server = two_workers
    pids = worker_pids(server)
    assert len(pids) == WORKERS, pids
    control = server.client("personalize")
    group = dataset_group(control, unique, slice_of_ml100k(tmp_path / "ml.csv", 5_000))
    solution = control.create_solution(name=unique, datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")
    campaign = control.create_campaign(name=unique, solutionVersionArn=version["solutionVersionArn"])[
        "campaignArn"]
    tracker = control.create_event_tracker(name=unique, datasetGroupArn=group)["trackingId"]

    before = [cpu_seconds(p) for p in pids]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: recommend(server.url, campaign, "1"), range(REQUESTS)))
    used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
    assert all(u >= 0.1 * sum(used) for u in used), f"CPU seconds per API process: {used}"
    lists = {tuple(i["itemId"] for i in a["itemList"]) for a in answers}
    assert len(lists) == 1, "the two processes answered differently"
    assert len({a["recommendationId"] for a in answers}) == REQUESTS
    row = list(lists.pop())
    # whichever process takes a scrape, it counts the whole server's requests
    assert [answered(server.url) for _ in range(6)] == [REQUESTS] * 6

    # clicks naming recommendations made by either process, sent to either process, reach a
    # filter on clicks (what leaves clicked items out, as on Personalize) in every process
    unclicked = control.create_filter(
        name=unique, datasetGroupArn=group,
        filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')["filterArn"]
    shown = [recommend(server.url, campaign, "1") for _ in range(4)]
    for n, rec in enumerate(shown):
        httpx.post(server.url + "/events", timeout=30, json={
            "trackingId": tracker, "userId": "1", "sessionId": "s", "eventList": [
                {"eventId": f"click{n}", "eventType": "click", "itemId": row[n], "sentAt": time.time(),
                 "recommendationId": rec["recommendationId"]}]}).raise_for_status()
    deadline = time.monotonic() + 60
    while {*row[:4]} & {i["itemId"] for i in recommend(server.url, campaign, "1", unclicked)["itemList"]}:
        assert time.monotonic() < deadline, "the clicks never reached the recommendations"
        time.sleep(0.05)
    with ThreadPoolExecutor(8) as pool:  # and every process serves the new state
        after = list(pool.map(lambda _: recommend(server.url, campaign, "1", unclicked), range(40)))
    assert all(not {*row[:4]} & {i["itemId"] for i in a["itemList"]} for a in after)

    out = subprocess.run(
        [sys.executable, "-m", "serving.cli", "stream", "tail", "--dataset-group", unique,
         "--group", f"{unique}-analytics", "--max-events", "4", "--idle-timeout", "60"],
        capture_output=True, text=True, timeout=120, env={**server.env, "OPZ_WORKERS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    impressions = {r["event_id"]: r["impression"] for r in map(json.loads, out.stdout.splitlines())}
    assert impressions == {f"click{n}": [i["itemId"] for i in rec["itemList"]] for n, rec in enumerate(shown)}


def test_an_api_process_that_dies_is_replaced(two_workers: Server) -> None:
    pids = worker_pids(two_workers)
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while listening(pids[0], two_workers.port):  # gone (what its socket held, lost with it)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(20):  # the other answers meanwhile
        assert httpx.get(two_workers.url + "/health", timeout=30).json()["mode"] == "distributed"
    deadline = time.monotonic() + 120
    while len(now := worker_pids(two_workers)) != WORKERS or pids[0] in now:
        assert time.monotonic() < deadline, f"nothing replaced {pids[0]}: {now}"
        time.sleep(0.2)
    assert pids[1] in all_listening(two_workers)  # and a new one takes its place beside it
    for _ in range(20):  # the server answers on, each connection by either process
        assert httpx.get(two_workers.url + "/health", timeout=30).json()["mode"] == "distributed"


def test_embedded_mode_refuses_several_workers(tmp_path: Path) -> None:
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "serving.cli", "serve", "--data-dir", str(tmp_path / "data"),
                          "--port", str(port), "--workers", "2"], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith("OPZ_")})
    assert out.returncode != 0
    assert "2 API processes (--workers, OPZ_WORKERS) need distributed mode" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    with pytest.raises(httpx.TransportError):  # it never listened
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
