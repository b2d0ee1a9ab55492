#!/usr/bin/env python3
"""Health checks for openpersonalize's containers (standard library only).

docker-compose.yml and k8s/ run these inside the containers (the images carry this file
as /usr/local/bin/opz-healthcheck). Exit 0 = healthy, 1 = not, with one line saying why.

  opz-healthcheck http URL       GET URL answers 2xx within 3 s (the API's /health)
  opz-healthcheck worker         a `personalize stream worker` process is alive and holds an
                                 established TCP connection to a port of
                                 OPZ_KAFKA_BOOTSTRAP_SERVERS (it consumes)
  opz-healthcheck worker --alive the worker process is alive (not a zombie, not stopped)
  opz-healthcheck trainer        a `personalize trainer` process is alive and has the shared
                                 control database open: <data dir>/control.db, or with
                                 OPZ_DATABASE_URL an established TCP connection to its port

The stream worker and the trainer serve no health endpoint (Faust's web server is off in
stream/app.py; the worker's optional /metrics port says nothing about Kafka), so their
checks look at the process through /proc: its command line, its state, its open files and
sockets.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ESTABLISHED = "01"
SOCKET = re.compile(r"socket:\[(\d+)\]")


def check_http(url: str, timeout_s: float = 3.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own URL
            return None if 200 <= response.status < 300 else f"{url} answered {response.status}"
    except OSError as exc:
        return f"{url}: {exc}"


def personalize_pids(proc: Path, command: list[str]) -> Iterator[int]:
    """Processes running `personalize <command...>` (console script or `python -m serving.cli`)."""
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for i, arg in enumerate(argv):
            if (os.path.basename(arg) == "personalize" or arg == "serving.cli") and \
                    argv[i + 1:i + 1 + len(command)] == command:
                yield int(entry.name)
                break


def alive(proc: Path, pid: int) -> bool:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X", "x", "T", "t")


def open_files(proc: Path, pid: int) -> list[str]:
    try:
        fds = list((proc / str(pid) / "fd").iterdir())
    except OSError:  # gone, or another user's process
        return []
    targets = []
    for fd in fds:
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue
    return targets


def established_ports(proc: Path, pid: int) -> set[int]:
    """Remote ports of this process's established TCP connections (IPv4 and IPv6)."""
    inodes = {m.group(1) for t in open_files(proc, pid) if (m := SOCKET.fullmatch(t))}
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / str(pid) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode
            if len(fields) > 9 and fields[3] == ESTABLISHED and fields[9] in inodes:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def bootstrap_ports(servers: str) -> set[int]:
    return {int(s.strip().rsplit(":", 1)[1]) for s in servers.split(",") if ":" in s}


def check_worker(proc: Path, env: dict[str, str], only_alive: bool = False) -> str | None:
    pids = [pid for pid in personalize_pids(proc, ["stream", "worker"]) if alive(proc, pid)]
    if not pids:
        return "no live `personalize stream worker` process"
    if only_alive:
        return None
    ports = bootstrap_ports(env.get("OPZ_KAFKA_BOOTSTRAP_SERVERS", ""))
    if not ports:
        return "OPZ_KAFKA_BOOTSTRAP_SERVERS names no host:port"
    if not any(established_ports(proc, pid) & ports for pid in pids):
        return f"the stream worker holds no connection to Kafka (ports {sorted(ports)})"
    return None


def database_ports(url: str) -> set[int]:
    """The ports of a postgresql:// URL's hosts (postgresql://u:p@h1:5432,h2/db); 5432 where
    a host names none."""
    hosts = urllib.parse.urlsplit(url).netloc.rpartition("@")[2].split(",")
    ports = {h.rpartition(":")[2] if ":" in h else "" for h in hosts}
    return {int(p) if p.isdigit() else 5432 for p in ports}


def check_trainer(proc: Path, env: dict[str, str] | None = None) -> str | None:
    pids = [pid for pid in personalize_pids(proc, ["trainer"]) if alive(proc, pid)]
    if not pids:
        return "no live `personalize trainer` process"
    if url := (env or {}).get("OPZ_DATABASE_URL"):  # the control plane in PostgreSQL
        ports = database_ports(url)
        if not any(established_ports(proc, pid) & ports for pid in pids):
            return f"the trainer holds no connection to the control database (ports {sorted(ports)})"
        return None
    if not any(t.endswith("/control.db") for pid in pids for t in open_files(proc, pid)):
        return "the trainer has no control.db open (not started, or stopping)"
    return None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="opz-healthcheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("--proc", type=Path, default=Path("/proc"), help=argparse.SUPPRESS)
    sub = ap.add_subparsers(dest="check", required=True)
    http = sub.add_parser("http", help="GET URL answers 2xx")
    http.add_argument("url")
    worker = sub.add_parser("worker", help="the stream worker is alive and connected to Kafka")
    worker.add_argument("--alive", action="store_true", help="only check that the process is alive")
    sub.add_parser("trainer", help="the trainer is alive and has the control database open")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check == "http":
        problem = check_http(args.url)
    elif args.check == "worker":
        problem = check_worker(args.proc, dict(os.environ), args.alive)
    else:
        problem = check_trainer(args.proc, dict(os.environ))
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
