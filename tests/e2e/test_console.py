"""The web console in a real browser (Debian's chromium through Playwright), through the story a
person follows: the dataset group and its datasets, the import job, the trained version's
metrics against popularity and its parent, the campaign, a filter tried, an event arriving,
and recommendations that change when an item is clicked. Then a server with access keys:
the page signs in, a wrong secret is refused, and one account never sees another's group.

Each step leaves a screenshot in $OPZ_SCREENSHOTS (default .cache/console-screenshots/).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from playwright.sync_api import Browser, Page, expect, sync_playwright
from support import ROOT, Server, free_port
from test_training import INTERACTIONS, RECIPE, import_dataset, train, wait

BUNDLED = ROOT / "training" / "datasets" / "ml-latest-small"
ITEMS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"}, {"name": "TITLE", "type": "string"},
    {"name": "GENRES", "type": ["null", "string"], "categorical": True},
    {"name": "YEAR", "type": ["null", "int"]}]})
SMALL = {"epochs": "2", "hidden_dimension": "32"}  # the console is under test, not the model
WAIT_MS = 60_000  # a busy 2-core machine: generous, and only ever waited out on a failure
ITEM_IDS = "els => els.map(e => e.dataset.item)"
expect.set_options(timeout=WAIT_MS)
SHOTS = Path(os.environ.get("OPZ_SCREENSHOTS", ROOT / ".cache" / "console-screenshots"))


def oldest_ratings(to: Path, rows: int) -> Path:
    """The first `rows` ratings of the bundled ml-latest-small (the oldest: the file is by time)."""
    with open(BUNDLED / "interactions.csv") as f:
        to.write_text("".join(next(f) for _ in range(rows + 1)))
    return to


def titles() -> dict[str, tuple[str, str]]:
    import csv
    with open(BUNDLED / "items.csv") as f:
        return {r["ITEM_ID"]: (r["TITLE"], r["GENRES"]) for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=os.environ.get("OPZ_CHROMIUM", "/usr/bin/chromium"),
                                     headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"the page threw: {errors}"


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def story(server: Server, tmp_path: Path) -> dict[str, Any]:
    """What a person has made with boto3 before opening the console: a dataset group with
    interactions and items, an HRNN solution with a FULL and an UPDATE version, a campaign,
    an event tracker and a filter with a placeholder."""
    control = server.client("personalize")
    group = control.create_dataset_group(name="movies")["datasetGroupArn"]
    import_dataset(control, group, "movies-interactions", "INTERACTIONS", INTERACTIONS,
                   oldest_ratings(tmp_path / "ratings.csv", 6_000))
    (tmp_path / "items.csv").write_bytes((BUNDLED / "items.csv").read_bytes())  # under the file roots
    import_dataset(control, group, "movies-items", "ITEMS", ITEMS, tmp_path / "items.csv")
    solution = control.create_solution(name="movies-hrnn", datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-hrnn",
                                       solutionConfig={"algorithmHyperParameters": SMALL})["solutionArn"]
    full = train(control, solution)
    assert full["status"] == "ACTIVE", full.get("failureReason")
    update = train(control, solution, "UPDATE")
    assert update["status"] == "ACTIVE", update.get("failureReason")
    campaign = control.create_campaign(name="movies-live", solutionVersionArn=full["solutionVersionArn"])
    wait(lambda: control.describe_campaign(campaignArn=campaign["campaignArn"])["campaign"])
    tracker = control.create_event_tracker(name="web", datasetGroupArn=group)["trackingId"]
    control.create_filter(name="no-genre", datasetGroupArn=group,
                          filterExpression="EXCLUDE ItemID WHERE Items.GENRES IN ($GENRE)")
    return {"group": group, "full": full, "update": update, "tracker": tracker,
            "campaign": campaign["campaignArn"]}


def test_a_person_follows_the_whole_story_in_the_console(embedded_server: Server, tmp_path: Path,
                                                         page: Page) -> None:
    made = story(embedded_server, tmp_path)
    catalogue = titles()
    page.goto(embedded_server.url + "/console")

    # the dataset group, its datasets with row counts, schema, last import and a sample
    expect(page.locator("#groups button", has_text="movies")).to_be_visible()
    expect(page.locator("#group-name")).to_have_text("movies")
    interactions = page.locator("article.dataset[data-type=INTERACTIONS]")
    expect(interactions.locator(".rows")).to_have_text("6,000")
    expect(interactions.locator(".last-import")).to_contain_text("movies-interactions")
    expect(interactions.locator(".last-import")).to_contain_text("ACTIVE")
    expect(interactions.locator("table.sample tbody tr")).to_have_count(10)
    items = page.locator("article.dataset[data-type=ITEMS]")
    expect(items.locator(".rows")).to_have_text(f"{len(catalogue):,}")
    expect(items.locator("table.sample")).to_contain_text("Toy Story (1995)")
    items.locator("details.schema summary").click()
    expect(items.locator("details.schema")).to_contain_text("GENRES")
    shot(page, "01-datasets")

    # the import jobs, done
    page.get_by_role("tab", name="Jobs").click()
    jobs = page.locator("table.jobs tbody tr")
    expect(jobs).to_have_count(2)
    expect(page.locator("table.jobs")).to_contain_text("6,000 rows")
    shot(page, "02-jobs")

    # the newest version (the UPDATE) against popularity and its parent, and its training curve
    page.get_by_role("tab", name="Solutions").click()
    update_id = made["update"]["solutionVersionArn"].split("/", 1)[1]
    expect(page.locator(".version-detail h3")).to_contain_text(update_id)
    legend = page.locator(".metrics-chart .legend button")
    expect(legend).to_have_count(3)
    expect(legend).to_have_text(["this version", "popularity (same split)", "parent version"])
    bars = page.locator(".metrics-chart rect.bar")
    expect(bars).to_have_count(3 * 6)
    update = described(embedded_server, made["update"]["solutionVersionArn"])
    ndcg, margin = (update[k]["normalized_discounted_cumulative_gain_at_10"]
                    for k in ("metrics", "metricIntervals"))
    bars.first.hover()
    expect(page.locator("#tooltip")).to_have_text(
        f"this version: normalized_discounted_cumulative_gain_at_10 = {ndcg:.4f} ± {margin:.4f}")
    legend.filter(has_text="popularity").click()  # a series hidden, then shown again
    expect(bars).to_have_count(2 * 6)
    expect(page.locator(".metrics-chart rect.bar[data-series^=popularity]")).to_have_count(0)
    legend.filter(has_text="popularity").click()
    expect(bars).to_have_count(3 * 6)
    shot(page, "03-metrics-against-popularity-and-parent")
    full_id = made["full"]["solutionVersionArn"].split("/", 1)[1]
    page.locator(f"button.show-version[data-arn$='{full_id}']").click()
    expect(page.locator(".version-detail h3")).to_contain_text(full_id)
    curve = described(embedded_server, made["full"]["solutionVersionArn"])["trainingCurve"]
    assert len(curve) == int(SMALL["epochs"])
    expect(page.locator(".curve-chart circle.point")).to_have_count(len(curve))
    expect(page.locator(".metrics-chart .legend button")).to_have_count(2)  # no parent: FULL
    page.locator(".curve-chart circle.point").last.hover()
    expect(page.locator("#tooltip")).to_have_text(f"epoch {len(curve)}: loss {curve[-1]:.4f}")
    shot(page, "04-training-curve")

    # the campaign and the version it serves
    page.get_by_role("tab", name="Campaigns").click()
    expect(page.locator("table.campaigns")).to_contain_text("movies-live")
    expect(page.locator("table.campaigns .served-version")).to_have_text(full_id)
    shot(page, "05-campaigns")

    # the filter, tried: Dramas left out for a user from the import
    page.get_by_role("tab", name="Filters").click()
    expect(page.locator("table.filters")).to_contain_text("EXCLUDE ItemID WHERE Items.GENRES IN ($GENRE)")
    form = page.locator("form.try-filter")
    user = next(iter(oldest_users(tmp_path / "ratings.csv")))
    form.locator("input[name=userId]").fill(user)
    form.locator("input[data-name=GENRE]").fill('"Drama"')
    form.get_by_role("button", name="Try it").click()
    filtered = page.locator("ol.filtered li")
    expect(filtered).to_have_count(10)
    expect(page.locator("ol.unfiltered li")).to_have_count(10)
    shown = [t.split(" (", 1)[0] for t in filtered.locator(".title").all_inner_texts()]
    by_title = {title.split(" (", 1)[0]: genres for title, genres in catalogue.values()}
    assert all("Drama" not in by_title[t].split("|") for t in shown), shown
    shot(page, "06-filter")

    # an event sent with boto3 arrives in the live view, with its item's title
    page.get_by_role("tab", name="Live events").click()
    expect(page.locator(".live")).to_contain_text("listening")
    embedded_server.client("personalize-events").put_events(
        trackingId=made["tracker"], userId="console-watcher", sessionId="s-1",
        eventList=[{"eventType": "watch", "itemId": "1", "sentAt": time.time()}])
    arrived = page.locator("table.events tr.event", has_text="console-watcher")
    expect(arrived).to_have_count(1)
    expect(arrived).to_contain_text("Toy Story (1995)")
    expect(arrived).to_contain_text("watch")
    shot(page, "07-live-events")

    # try recommendations: a user's history and titled recommendations; a click changes them
    page.get_by_role("tab", name="Try recommendations").click()
    offered = page.locator("#known-users option")
    expect(offered.first).to_be_attached()
    someone = offered.first.get_attribute("value")
    assert someone
    try_form = page.locator("form.try-user")
    try_form.locator("input[name=userId]").fill(someone)
    try_form.get_by_role("button", name="Show").click()
    expect(page.locator("ol.history-list li").first).to_be_visible()
    recommended = page.locator("ol.recommendation-list li")
    expect(recommended).to_have_count(10)
    first_titles = recommended.locator(".title").all_inner_texts()
    assert all(not t.startswith("item ") for t in first_titles), first_titles  # every one has a title
    before = recommended.locator("button.item").evaluate_all(ITEM_IDS)
    clicked = before[0]
    shot(page, "08-try-before-click")
    recommended.locator("button.item").first.click()
    note = page.locator(".panel:not([hidden]) p.hint")
    expect(note).to_have_text(f"the click on {clicked} changed the list")
    after = page.locator("ol.recommendation-list button.item").evaluate_all(ITEM_IDS)
    assert after != before
    expect(page.locator("ol.recommendation-list .new").first).to_be_visible()
    expect(page.locator("ol.history-list li.streamed").first).to_contain_text(f"({clicked})")
    shot(page, "09-try-after-click")


def described(server: Server, arn: str) -> dict[str, Any]:
    """DescribeSolutionVersion as the page reads it: all of it (boto3 drops the members its model
    lacks: the metrics, the baseline's, the training curve)."""
    answer = httpx.post(server.url + "/", json={"solutionVersionArn": arn},
                        headers={"X-Amz-Target": "AmazonPersonalize.DescribeSolutionVersion",
                                 "Content-Type": "application/x-amz-json-1.1"})
    return answer.raise_for_status().json()["solutionVersion"]


def oldest_users(csv: Path) -> list[str]:
    """The users of an imported ratings file, most ratings first."""
    counts: dict[str, int] = {}
    for line in csv.read_text().splitlines()[1:]:
        counts[line.split(",", 1)[0]] = counts.get(line.split(",", 1)[0], 0) + 1
    return sorted(counts, key=lambda u: -counts[u])


def signed_get(server: Server, key: dict[str, str], path: str, query: str) -> httpx.Response:
    """A GET signed as botocore signs, with `key`."""
    request = AWSRequest(method="GET", url=f"{server.url}{path}?{query}")
    credentials = Credentials(key["accessKeyId"], key["secretAccessKey"])
    SigV4Auth(credentials, "personalize", "us-east-1").add_auth(request)
    return httpx.get(request.url, headers=dict(request.headers.items()))


def test_a_signed_server_asks_for_a_key_and_shows_only_its_account(tmp_path: Path, page: Page) -> None:
    server = Server(tmp_path / "data")
    mine, theirs = server.create_key("111111111111"), server.create_key("222222222222")  # before it starts
    server.start()
    try:
        ours = server.client("personalize", mine).create_dataset_group(name="ours")["datasetGroupArn"]
        other = server.client("personalize", theirs).create_dataset_group(name="theirs")["datasetGroupArn"]

        page.goto(server.url + "/console")
        form = page.locator("form#sign-in")
        expect(form).to_be_visible()
        shot(page, "10-sign-in")
        form.locator("input[name=accessKeyId]").fill(mine["accessKeyId"])
        form.locator("input[name=secret]").fill("not-the-secret")
        form.get_by_role("button", name="Sign in").click()
        expect(page.locator("#sign-in-error")).to_contain_text("signature we calculated does not match")
        expect(page.locator("#console-root")).to_be_hidden()

        form.locator("input[name=secret]").fill(mine["secretAccessKey"])
        form.get_by_role("button", name="Sign in").click()
        expect(page.locator("#groups button")).to_have_text(["ours"])
        expect(page.locator("#group-arn")).to_have_text(ours)
        expect(page.locator("#who")).to_contain_text(mine["accessKeyId"])
        shot(page, "11-signed-in")

        # the page's signer against the server's verifier, on a query with characters to encode
        odd = "a b*(!)'~é/+"
        status = page.evaluate("""async ([group, item]) => {
            const m = await import('/console/console.js');
            const creds = JSON.parse(sessionStorage.getItem('opz-console-credentials'));
            const query = m.queryString([['datasetGroupArn', group], ['itemId', item], ['itemId', '1']]);
            const headers = await m.sign({method: 'GET', host: location.host, query,
                path: '/console/api/titles', region: creds.region, accessKeyId: creds.accessKeyId,
                secret: creds.secret});
            return (await fetch('/console/api/titles?' + query, {headers})).status;
        }""", [ours, odd])
        assert status == 200

        # the console's reads are signed as the API is, and see one account only
        query = f"datasetGroupArn={quote(other, safe='')}"
        assert httpx.get(f"{server.url}/console/api/events?{query}").status_code == 403
        refused = signed_get(server, mine, "/console/api/events", query)
        assert refused.status_code == 404 and refused.json()["__type"] == "ResourceNotFoundException"
        assert signed_get(server, theirs, "/console/api/events", query).status_code == 200
    finally:
        server.stop()



def test_the_live_view_follows_a_kafka_topic_too(tmp_path: Path, kafka_bootstrap: str, redis_url: str,
                                                 unique: str) -> None:
    """Distributed, the events are in Kafka: the feed reads the group's topic, newest first, then
    only what came after the cursor it gave."""
    server = Server(tmp_path / "data", env={"OPZ_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                                            "OPZ_REDIS_URL": redis_url, "OPZ_REDIS_PREFIX": unique}).start()
    try:
        control, events = server.client("personalize"), server.client("personalize-events")
        group = control.create_dataset_group(name=unique)["datasetGroupArn"]
        tracker = control.create_event_tracker(name="web", datasetGroupArn=group)["trackingId"]

        def feed(after: str | None = None) -> dict[str, Any]:
            params = {"datasetGroupArn": group, **({"after": after} if after is not None else {})}
            answer = httpx.get(server.url + "/console/api/events", params=params, timeout=30)
            return answer.raise_for_status().json()

        def click(user: str, item: str) -> None:
            events.put_events(trackingId=tracker, userId=user, sessionId=f"s-{user}",
                              eventList=[{"eventType": "click", "itemId": item, "sentAt": time.time()}])

        assert feed()["events"] == []  # no event yet: the topic does not even exist
        for n in range(5):
            click(f"u{n}", f"i{n}")
        first = feed()
        assert sorted(e["itemId"] for e in first["events"]) == [f"i{n}" for n in range(5)]
        click("u9", "later")
        assert [(e["userId"], e["itemId"]) for e in feed(first["cursor"])["events"]] == [("u9", "later")]
    finally:
        server.stop()


def test_personalize_console_serves_and_opens_the_page_in_a_browser(tmp_path: Path) -> None:
    """`personalize console` is `serve` plus the browser: $BROWSER (what Python's webbrowser runs)
    is a command here that writes down the URL it was given."""
    opened, port = tmp_path / "opened.txt", free_port()
    browser = f"{sys.executable} -c \"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\" %s"
    command = [sys.executable, "-m", "serving.cli", "console", "--data-dir", str(tmp_path / "data"),
               "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "BROWSER": browser})
    try:
        url = f"http://127.0.0.1:{port}/console"
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("console: "):
                assert line.strip() == f"console: {url}"
                break
        deadline = time.monotonic() + 60
        while not (opened.exists() and opened.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None, "no browser was opened"
            time.sleep(0.1)
        assert opened.read_text() == url
        page = httpx.get(url)
        assert page.status_code == 200 and "openpersonalize console" in page.text
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_pages_helpers_read_what_the_server_sends(embedded_server: Server, page: Page) -> None:
    """The page's pure helpers, run in the browser: a training's progress line as a curve point,
    the version a syncing campaign serves, a filter's placeholders, a lift, the query's order."""
    page.goto(embedded_server.url + "/console")
    got = page.evaluate("""async () => {
        const m = await import('/console/console.js');
        const versions = [{solutionVersionArn: 'v1', status: 'ACTIVE', creationDateTime: 1},
                          {solutionVersionArn: 'v2', status: 'ACTIVE', creationDateTime: 2},
                          {solutionVersionArn: 'v3', status: 'CREATE IN_PROGRESS', creationDateTime: 3}];
        return {
            point: m.curvePoint('FULL epoch 2/5 loss 6.1234 12.3s ETA 45s'),
            within: m.curvePoint('FULL epoch 2/5 40% loss 6.1234 12.3s ETA 45s'),
            synced: m.servedVersion({solutionVersionArn: 'v1',
                                     campaignConfig: {syncWithLatestSolutionVersion: true}}, versions),
            pinned: m.servedVersion({solutionVersionArn: 'v1'}, versions),
            names: m.placeholders('INCLUDE ItemID WHERE Items.A IN ($X) AND Items.B = $Y OR Items.C IN ($X)'),
            lifts: [m.lift(0.12, 0.1), m.lift(0.09, 0.1), m.lift(0.1, 0)],
            query: m.queryString([['b', 'x y'], ['a', "it's*"], ['a', '1']]),
        };
    }""")
    assert got == {"point": [2, 6.1234], "within": None, "synced": "v2", "pinned": "v1", "names": ["X", "Y"],
                   "lifts": ["+20.0%", "-10.0%", ""], "query": "a=1&a=it%27s%2A&b=x%20y"}
