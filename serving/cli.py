"""`personalize`: the composition root. Builds Settings once and hands it to each part."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.settings import Settings
from serving.processes import configure_logging

if TYPE_CHECKING:
    from fastapi import FastAPI


class UserError(Exception):
    """A mistake of the person at the keyboard: `main` prints it as one line and exits 1."""


EXAMPLES = {
    "serve": ["personalize serve", "personalize serve --data-dir /var/lib/opz --port 8080",
              "OPZ_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 OPZ_REDIS_URL=redis://redis:6379 personalize serve"],
    "console": ["personalize console", "personalize console --data-dir .cache/demo --no-browser"],
    "trainer": ["personalize trainer --schedule"],
    "stream worker": ["personalize stream worker --data-dir /var/lib/opz-worker"],
    "stream tail": ["personalize stream tail --dataset-group movies --max-events 10",
                    "personalize stream tail --dataset-group 123456789012.shop --group analytics"],
    "stream dead-letters": ["personalize stream dead-letters --dataset-group movies --limit 20"],
    "import": ["personalize import movies --interactions ratings.csv --items movies.csv",
               "personalize import shop --interactions clicks/ --mode INCREMENTAL "
               "--endpoint-url http://opz:8080",
               "personalize import shop --interactions clicks.csv --upload-to s3://bucket/imports"],
    "solution-version report": ["personalize solution-version report "
                                "arn:aws:personalize:us-east-1:000000000000:solution/movies/1a2b3c4d "
                                "--out report.html"],
    "solution-version wait": ["personalize solution-version wait "
                              "arn:aws:personalize:us-east-1:000000000000:solution/movies/1a2b3c4d"],
    "metric-attribution report": ["personalize metric-attribution report "
                                  "arn:aws:personalize:us-east-1:000000000000:metric-attribution/impact "
                                  "--out impact.html"],
    "keys create": ["personalize keys create --account 123456789012",
                    "personalize keys create --account 123456789012 --json >> keys.json"],
    "keys list": ["personalize keys list"],
    "keys delete": ["personalize keys delete AKIA...", "personalize keys delete AKIA... --last"],
    "api coverage": ["personalize api coverage", "personalize api coverage --json"],
}


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
                  ) -> dict[str, argparse.ArgumentParser]:
    """Every runnable command of `parser` by its words after `personalize` ("keys create")."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {" ".join(path): parser}
    return {k: v for sub in subs for name, child in sub.choices.items()
            for k, v in leaf_commands(child, (*path, name)).items()}


def _settings(args: argparse.Namespace) -> Settings:
    from pydantic import ValidationError

    overrides = {k: v for k, v in (("data_dir", getattr(args, "data_dir", None)),
                                   ("host", getattr(args, "host", None)),
                                   ("port", getattr(args, "port", None)),
                                   ("workers", getattr(args, "workers", None))) if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:  # a start-up refusal reads as one line, not a traceback
        raise SystemExit("personalize: " + "; ".join(
            ".".join(map(str, e["loc"])) + ": " + e["msg"] if e["loc"] else e["msg"]
            for e in exc.errors()).replace("Value error, ", "")) from None
    configure_logging(settings)
    return settings


def api_app(settings: Settings) -> FastAPI:
    """The app of one API process; with --workers, each worker process builds its own."""
    from serving.app import create_app
    from training.importer import DatasetFiles
    from training.isolated import IsolatedTrainer
    from training.trainer import Trainer

    configure_logging(settings)  # a worker process starts with nothing configured
    trainer: Trainer | IsolatedTrainer | None = None
    if settings.train_in_server:
        trainer = IsolatedTrainer.of(settings) if settings.training_process else Trainer.of(settings)
    return create_app(settings, DatasetFiles.of(settings), trainer)


def refusal_to_start(settings: Settings) -> str | None:
    """Why this server must not start: a keys file it cannot use, or reachable beyond
    loopback with nobody signing calls."""
    from serving.access_keys import AccessKeys, KeysFileError, keys_from_file
    from serving.auth import is_loopback
    from serving.control.store import open_control_store

    if settings.keys_file is not None:
        try:
            keys_from_file(settings.keys_file)
        except KeysFileError as exc:
            return str(exc)
    if settings.auth == "off" or is_loopback(settings.host):
        return None
    store = open_control_store(settings)
    try:
        if AccessKeys(store, settings.keys_file).required():
            return None
    finally:
        store.close()
    return (f"{settings.host} is not a loopback address and there are no access keys: create one with "
            f"`personalize keys create --data-dir {settings.data_dir} --account ID` (or set "
            "OPZ_KEYS_FILE), or set OPZ_AUTH=off to serve unsigned calls anyway")


def cmd_serve(args: argparse.Namespace) -> int:
    from serving.processes import STARTUP_FAILURE, run_workers, server

    settings = _settings(args)
    if reason := refusal_to_start(settings):
        print(f"personalize: {reason}", file=sys.stderr)  # noqa: T201
        return STARTUP_FAILURE
    if settings.workers > 1:
        return run_workers(settings, api_app)
    one = server(settings, api_app)
    try:
        one.run()
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly; no traceback
        pass
    return 0 if one.started else STARTUP_FAILURE


def console_url(host: str, port: int) -> str:
    """Where a person on this machine opens the console of a server bound to `host`: a wildcard
    address is reached on loopback."""
    name = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{name}]' if ':' in name else name}:{port}/console"


def open_when_up(url: str, browser: bool, timeout_s: float = 120.0) -> None:
    """Print the console's URL once the server answers /health, and open it in the browser."""
    import urllib.error
    import urllib.request
    import webbrowser

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url.removesuffix("/console") + "/health", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    else:
        return  # the server did not start: serve says why
    print(f"console: {url}", flush=True)  # noqa: T201
    if browser:
        webbrowser.open(url)


def cmd_console(args: argparse.Namespace) -> int:
    """`serve`, with the console opened in a browser once the server answers."""
    import threading

    settings = _settings(args)
    url = console_url(settings.host, settings.port)
    threading.Thread(target=open_when_up, args=(url, not args.no_browser), daemon=True).start()
    return cmd_serve(args)


def cmd_trainer(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from serving.app import run_trainer
    from stream.shutdown import exit_within
    from training.importer import DatasetFiles
    from training.trainer import Trainer

    settings = _settings(args)

    async def main() -> None:
        stop = asyncio.Event()

        def stopping() -> None:  # the job's grace (serving/jobs.py) comes first, then a deadline
            stop.set()
            exit_within()

        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stopping)
        trainer = Trainer.of(settings)
        await run_trainer(settings, DatasetFiles.of(settings), trainer, args.schedule, stop)

    asyncio.run(main())
    # a training step that outlasted the shutdown grace still runs in its daemon thread; the
    # interpreter's teardown under it aborts the process in torch's destructors (SIGABRT, a
    # core file). Its job is back to pending and the control database closed: leave at once.
    logging.shutdown()
    os._exit(0)


def cmd_stream_worker(args: argparse.Namespace) -> int:
    import asyncio

    from stream.worker import run_worker

    settings = _settings(args)

    def restart() -> None:  # a fresh process is the only clean restart of a crashed Faust app
        logging.getLogger(__name__).error("restarting the stream worker in 1 s (same PID)")
        time.sleep(1.0)
        os.execv(sys.executable, [sys.executable, "-m", "serving.cli", *sys.argv[1:]])

    asyncio.new_event_loop().run_until_complete(run_worker(settings, on_crash=restart))
    # not asyncio.run(): its teardown waits on tasks that Faust's consumer thread keeps alive
    # when the broker is gone (seen: a stopped worker spinning at 80% CPU). All state is
    # written by now, so leave at once.
    logging.shutdown()
    os._exit(0)


def unknown_dataset_group(settings: Settings, name: str) -> str | None:
    """Why `name` names no dataset group to read (None: it does). Names are as topics and dead
    letters know them: `<name>`, or `<account>.<name>` outside the open server's account. With
    Kafka, the groups whose events topic exists (a consumer elsewhere knows only the brokers);
    embedded, the control plane's groups in the data dir."""
    import asyncio

    from kernel.contract import dataset_group_name
    from serving.control.store import open_control_store
    from stream.tail import groups_with_events

    if settings.kafka_bootstrap_servers:
        known = asyncio.run(groups_with_events(settings.kafka_bootstrap_servers))
        where = "with events in Kafka"
    else:
        store = open_control_store(settings)
        try:
            known = sorted(dataset_group_name(g["datasetGroupArn"]) for g in store.list("dataset-group"))
        finally:
            store.close()
        where = f"in {settings.data_dir}"
    if name in known:
        return None
    shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
    return f"no dataset group named {name!r} {where} (there are: {shown or 'none'})"


def cmd_stream_tail(args: argparse.Namespace) -> int:
    import asyncio

    from stream.tail import tail

    settings = _settings(args)
    if (why := unknown_dataset_group(settings, args.dataset_group)) is not None:
        raise UserError(why)
    asyncio.run(tail(settings, dataset_group=args.dataset_group, group=args.group,
                     max_events=args.max_events, idle_timeout_s=args.idle_timeout))
    return 0


def cmd_stream_dead_letters(args: argparse.Namespace) -> int:
    import asyncio

    from stream.dead_letters import open_dead_letters

    settings = _settings(args)
    if (why := unknown_dataset_group(settings, args.dataset_group)) is not None:
        raise UserError(why)

    async def listed() -> list[str]:
        letters = open_dead_letters(settings)
        await letters.start()
        try:
            return [x.model_dump_json() for x in await letters.list(args.dataset_group, args.limit)]
        finally:
            await letters.close()

    lines = asyncio.run(listed())
    for line in lines:
        print(line)  # noqa: T201
    print(f"{len(lines)} dead letter(s) of {args.dataset_group}", file=sys.stderr)  # noqa: T201
    return 0


def _s3_url(value: str) -> str:
    from kernel.locations import LocationRefused, s3_location
    try:
        return str(s3_location(value))
    except LocationRefused as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def endpoint_of(given: str | None, env: Mapping[str, str], settings: Settings) -> str:
    """The server a client command talks to: --endpoint-url, else the AWS CLI's environment
    (AWS_ENDPOINT_URL_PERSONALIZE, then AWS_ENDPOINT_URL), else this machine's OPZ_HOST:OPZ_PORT."""
    return (given or env.get("AWS_ENDPOINT_URL_PERSONALIZE") or env.get("AWS_ENDPOINT_URL")
            or f"http://{settings.host}:{settings.port}")


def cmd_import(args: argparse.Namespace) -> int:
    from training.import_client import run

    settings = _settings(args)
    files = {kind: path for kind, path in (("INTERACTIONS", args.interactions), ("ITEMS", args.items),
                                            ("USERS", args.users)) if path is not None}
    if not files:
        print("personalize import: give at least one of --interactions, --items, --users",  # noqa: T201
              file=sys.stderr)
        return 2
    return run(endpoint_of(args.endpoint, os.environ, settings), args.dataset_group, files,
               args.mode, upload_to=args.upload_to)


def cmd_version_report(args: argparse.Namespace) -> int:
    from training.report import run

    settings = _settings(args)
    parts = args.solution_version_arn.split(":solution/", 1)[-1].split("/")
    if ":solution/" not in args.solution_version_arn or len(parts) != 2 or not all(parts):
        print(f"personalize solution-version report: {args.solution_version_arn!r} is not a solution "  # noqa: T201
              "version ARN (arn:aws:personalize:REGION:ACCOUNT:solution/NAME/ID)", file=sys.stderr)
        return 2
    out = args.out or Path(f"{parts[0]}-{parts[1]}.html")
    return run(endpoint_of(args.endpoint, os.environ, settings), args.solution_version_arn, out)


def cmd_version_wait(args: argparse.Namespace) -> int:
    from training.report import watch

    settings = _settings(args)
    return watch(endpoint_of(args.endpoint, os.environ, settings), args.solution_version_arn)


def cmd_attribution_report(args: argparse.Namespace) -> int:
    import urllib.error

    from serving.attribution_page import lines, render
    from training.import_client import ApiError, Control, no_server

    control = Control(endpoint_of(args.endpoint, os.environ, _settings(args)))
    try:
        report = control.get("/console/api/attribution", metricAttributionArn=args.metric_attribution_arn)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 1
    except urllib.error.URLError as exc:
        print(no_server(control.endpoint.rstrip("/"), exc), end="", file=sys.stderr)  # noqa: T201
        return 1
    out = args.out or Path(f"{report['name']}.html")
    out.write_text(render(report))
    print("\n".join([*lines(report), f"wrote {out}"]))  # noqa: T201
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """`personalize keys create|list|delete`: the access keys signed calls are checked against."""
    import json

    from serving.access_keys import AccessKeys
    from serving.control.store import open_control_store

    settings = _settings(args)
    store = open_control_store(settings)  # OPZ_DATABASE_URL's, where the servers share their keys
    keys = AccessKeys(store)
    try:
        if args.keys_cmd == "create":
            try:
                key = keys.create(args.account)
            except ValueError as exc:
                print(f"personalize keys create: {exc}", file=sys.stderr)  # noqa: T201
                return 2
            out = {"accessKeyId": key.access_key_id, "secretAccessKey": key.secret, "account": key.account}
            print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))  # noqa: T201
        elif args.keys_cmd == "list":
            for key in keys.stored():
                print(f"{key.access_key_id}  {key.account}")  # noqa: T201
        elif [k.access_key_id for k in keys.stored()] == [args.access_key_id] and not args.last:
            print("personalize keys delete: this is the last key, and without keys the server takes "  # noqa: T201
                  "unsigned calls; create its successor first, or pass --last", file=sys.stderr)
            return 2
        elif not keys.delete(args.access_key_id):
            print(f"personalize keys delete: no key {args.access_key_id}", file=sys.stderr)  # noqa: T201
            return 1
    finally:
        store.close()
    return 0


def cmd_api_coverage(args: argparse.Namespace) -> int:
    import json

    from serving.coverage import coverage, summary

    cov = coverage()
    print(json.dumps(cov, indent=2) if args.json else summary(cov))  # noqa: T201 - CLI output
    return 0


ENDPOINT_HELP = ("server URL (default: AWS_ENDPOINT_URL_PERSONALIZE, AWS_ENDPOINT_URL, else "
                 "http://OPZ_HOST:OPZ_PORT)")


def build_parser() -> argparse.ArgumentParser:
    """The `personalize` command line (also what the deployment tests parse commands with)."""
    ap = argparse.ArgumentParser(prog="personalize",
                                 description="openpersonalize: Amazon Personalize's API, self-hosted.")
    from stream.metrics import release  # the version opz_build_info reports

    ap.add_argument("--version", action="version", version=f"%(prog)s {release()}")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="<command>")
    serve = sub.add_parser("serve", help="run the API server (embedded unless Kafka/Redis are set)")
    serve.set_defaults(fn=cmd_serve)
    console = sub.add_parser("console", help="run the server (as `serve` does) and open its web console "
                             "(/console) in a browser")
    console.add_argument("--no-browser", action="store_true", help="only print the console's URL")
    console.set_defaults(fn=cmd_console)
    for server in (serve, console):
        server.add_argument("--data-dir", type=Path, help="data directory (OPZ_DATA_DIR)")
        server.add_argument("--host", help="bind address (OPZ_HOST, default 127.0.0.1)")
        server.add_argument("--port", type=int, help="port (OPZ_PORT, default 8080)")
        server.add_argument("--workers", type=int, help="API processes on that port, to use more cores "
                            "(OPZ_WORKERS, default 1; distributed mode only)")
    trainer = sub.add_parser("trainer", help="train pending solution versions (distributed mode: run it "
                             "next to API processes started with OPZ_TRAIN_IN_SERVER=false)")
    trainer.add_argument("--data-dir", type=Path, help="shared data directory (OPZ_DATA_DIR)")
    trainer.add_argument("--schedule", action="store_true",
                         help="also start automatic training: FULL per schedulingExpression, UPDATE every "
                              "OPZ_AUTO_UPDATE_SECONDS (default 2 hours)")
    trainer.set_defaults(fn=cmd_trainer)
    stream = sub.add_parser("stream", help="Kafka stream processing (distributed mode)")
    stream_sub = stream.add_subparsers(dest="stream_cmd", required=True, metavar="<command>")
    worker = stream_sub.add_parser("worker", help="run a Faust worker: events -> session state in Redis")
    worker.add_argument("--data-dir", type=Path, help="archive and Faust data (OPZ_DATA_DIR)")
    worker.set_defaults(fn=cmd_stream_worker)
    tail = stream_sub.add_parser("tail", help="print a dataset group's events as JSON lines "
                                 "(a downstream consumer in its own consumer group)")
    tail.add_argument("--dataset-group", required=True, help="dataset group name")
    tail.add_argument("--group", default="opz-tail", help="consumer group id (default opz-tail)")
    tail.add_argument("--max-events", type=int, help="stop after printing this many")
    tail.add_argument("--idle-timeout", type=float, help="stop after this many idle seconds")
    tail.add_argument("--data-dir", type=Path, help="embedded mode's data directory")
    tail.set_defaults(fn=cmd_stream_tail)
    dead = stream_sub.add_parser("dead-letters", help="print a dataset group's dead letters as JSON lines "
                                 "(records a consumer could not handle, with why)")
    dead.add_argument("--dataset-group", required=True,
                      help="dataset group name (<account>.<name> outside the open server's account)")
    dead.add_argument("--limit", type=int, default=1000, help="print at most this many (default 1000)")
    dead.add_argument("--data-dir", type=Path, help="embedded mode's data directory")
    dead.set_defaults(fn=cmd_stream_dead_letters)
    imp = sub.add_parser("import", help="load CSV files into a dataset group of a running server "
                         "(creates the group, inferred schemas and datasets if missing)")
    imp.add_argument("dataset_group", metavar="DATASET_GROUP", help="dataset group name")
    imp.add_argument("--interactions", type=Path, help="INTERACTIONS CSV file or folder")
    imp.add_argument("--items", type=Path, help="ITEMS CSV file or folder")
    imp.add_argument("--users", type=Path, help="USERS CSV file or folder")
    imp.add_argument("--mode", choices=("FULL", "INCREMENTAL"), default="FULL",
                     help="FULL replaces the dataset's rows, INCREMENTAL adds to them (default FULL)")
    imp.add_argument("--endpoint-url", "--endpoint", dest="endpoint", help=ENDPOINT_HELP)
    imp.add_argument("--upload-to", metavar="S3_URL", type=_s3_url,
                     help="upload the files to s3://bucket/prefix first and import them from there "
                     "(needed for a server on another machine; AWS_ENDPOINT_URL_S3 names an "
                     "S3-compatible store)")
    imp.set_defaults(fn=cmd_import)
    version = sub.add_parser("solution-version", help="solution versions")
    version_sub = version.add_subparsers(dest="version_cmd", required=True, metavar="<command>")
    report = version_sub.add_parser("report", help="an HTML page comparing a version's metrics with "
                                    "Popularity-Count and with its parent")
    report.add_argument("solution_version_arn", metavar="ARN")
    report.add_argument("--out", type=Path, help="HTML file to write (default <solution>-<version>.html)")
    report.add_argument("--endpoint-url", "--endpoint", dest="endpoint", help=ENDPOINT_HELP)
    report.set_defaults(fn=cmd_version_report)
    wait = version_sub.add_parser("wait", help="print a version's training progress (epochs, loss, ETA) "
                                  "until it is ACTIVE or failed")
    wait.add_argument("solution_version_arn", metavar="ARN")
    wait.add_argument("--endpoint-url", "--endpoint", dest="endpoint", help=ENDPOINT_HELP)
    wait.set_defaults(fn=cmd_version_wait)
    attribution = sub.add_parser("metric-attribution", help="metric attributions")
    attribution_sub = attribution.add_subparsers(dest="attribution_cmd", required=True, metavar="<command>")
    impact = attribution_sub.add_parser("report", help="an HTML page of each metric per source and, for "
                                        "campaigns split A/B, the lift of arm B with its 95% interval")
    impact.add_argument("metric_attribution_arn", metavar="ARN")
    impact.add_argument("--out", type=Path, help="HTML file to write (default <name>.html)")
    impact.add_argument("--endpoint-url", "--endpoint", dest="endpoint", help=ENDPOINT_HELP)
    impact.set_defaults(fn=cmd_attribution_report)
    keys = sub.add_parser("keys", help="access keys: once one exists, every call must be signed with one")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True, metavar="<command>")
    create = keys_sub.add_parser("create", help="make an access key for an account and print it")
    create.add_argument("--account", required=True, help="the 12-digit account the key acts for")
    create.add_argument("--json", action="store_true",
                        help='print {"accessKeyId", "secretAccessKey", "account"} (an OPZ_KEYS_FILE entry)')
    keys_sub.add_parser("list", help="access key ids and their accounts (never the secrets)")
    delete = keys_sub.add_parser("delete", help="delete an access key")
    delete.add_argument("access_key_id", metavar="ACCESS_KEY_ID")
    delete.add_argument("--last", action="store_true", help="delete it even if it is the last key")
    for p in keys_sub.choices.values():
        p.add_argument("--data-dir", type=Path, help="the server's data directory (OPZ_DATA_DIR)")
        p.set_defaults(fn=cmd_keys)
    api = sub.add_parser("api", help="facts about the API we serve")
    api_sub = api.add_subparsers(dest="api_cmd", required=True, metavar="<command>")
    cov = api_sub.add_parser("coverage", help="implemented vs. all operations of boto3's "
                             "personalize, personalize-events and personalize-runtime")
    cov.add_argument("--json", action="store_true", help="machine-readable output")
    cov.set_defaults(fn=cmd_api_coverage)
    for name, command in leaf_commands(ap).items():
        if name in EXAMPLES:
            command.formatter_class = argparse.RawDescriptionHelpFormatter
            command.epilog = "examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES[name])
    return ap


def command_words(args: argparse.Namespace) -> str:
    """"personalize stream tail": how an error names the command that failed."""
    words = (getattr(args, k, None) for k in ("cmd", "stream_cmd", "version_cmd", "keys_cmd", "api_cmd"))
    return " ".join(["personalize", *(w for w in words if w)])


def main(argv: list[str] | None = None) -> int:
    # numpy/onnxruntime thread pools oversubscribe small machines under a threaded server;
    # this must happen before either is imported (docs/architecture.md, "Threads").
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"{command_words(args)}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a person reads one line; --debug shows the rest
        if args.debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"{command_words(args)}: {type(exc).__name__}: {first} "  # noqa: T201
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
