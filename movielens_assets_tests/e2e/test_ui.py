"""The Dagster UI in a real browser: what a person sees after the sample lands and after a bad
file.

`movielens dev` runs with a scratch ``MOVIELENS_HOME`` and the landing sensor stopped; the four
sample files are landed with `movielens land`, then the sensor is started, so its first tick
sees all of them and one run builds everything. Headless Chromium (Debian's ``chromium``, driven
by Playwright's Python package; nothing is downloaded) then reads the rendered pages. Expected
values come from the sample files (Python's csv module), the dbt manifest and the code
location's asset list over GraphQL, never from the pages themselves.

Each run rewrites the screenshots in ``docs/screenshots/`` that the README shows.
"""

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from movielens_assets.defs.raw.checks import NO_REJECTED_FILES, ROWS_MATCH_LEDGER
from movielens_assets.defs.raw.source_freshness import CHECK_NAME as SOURCE_FRESHNESS
from movielens_assets.project import movielens_project
from movielens_assets_tests.conftest import SAMPLE, csv_rows
from movielens_assets_tests.e2e.test_dev_stack import Stack, running_stack

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# What works on these machines (FIELD-NOTES): no sandbox as root, no GPU, and no background
# connections, which this machine's closed network refuses. Playwright adds a fresh profile.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
UI_TIMEOUT_MS = 60_000
"""How long a page may take to show what is asserted: the UI shares two cores with the runs."""

GROUPS = ("landing", "raw", "staging", "dimensions", "facts", "marts", "seeds", "snapshots")
SAMPLE_DATASETS = ("movies", "ratings", "tags", "links")
MODEL = "fct_ratings"
MODEL_UID = f"model.movielens_dbt.{MODEL}"
BAD_CHECK = "relationships_fct_ratings_movie_id__movie_id__ref_dim_movies_"
UNKNOWN_MOVIE_ID = 999_999_999

ASSET_NODES_QUERY = "{ assetNodes { assetKey { path } groupName } }"
CHECKS_QUERY = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name } } } }
  }
}
"""
START_SENSOR = """
mutation {
  startSensor(sensorSelector: {
    repositoryLocationName: "movielens", repositoryName: "__repository__",
    sensorName: "s3_landing_sensor"
  }) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""


def dbt_tests_of(unique_id: str) -> set[str]:
    """Names of the dbt tests the manifest attaches to a node: Dagster's check names."""
    manifest = json.loads(movielens_project.manifest_path.read_text())
    attached = set()
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test":
            continue
        parents = node["depends_on"]["nodes"]
        # A singular test attaches only when it refs exactly one node (dagster-dbt's rule).
        if (node.get("attached_node") or (parents[0] if len(parents) == 1 else None)) == unique_id:
            attached.add(node["name"])
    return attached


def dbt_test_description(name: str) -> str:
    """The description the dbt project gives a test, as the manifest has it."""
    manifest = json.loads(movielens_project.manifest_path.read_text())
    (node,) = [
        node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test" and node["name"] == name
    ]
    return node["description"].strip()


def dbt_columns_of(unique_id: str) -> list[str]:
    """Column names the dbt project documents for a model."""
    manifest = json.loads(movielens_project.manifest_path.read_text())
    return list(manifest["nodes"][unique_id]["columns"])


def shown_as(name: str, texts: list[str]) -> bool:
    """Whether ``name`` is among ``texts`` as the graph draws it: whole, or middle-truncated
    to fit its node (``mart_mov…_releases``)."""
    for text in texts:
        head, ellipsis, tail = text.partition("…")
        if text == name or (ellipsis and name.startswith(head) and name.endswith(tail)):
            return True
    return False


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Debian Chromium under Playwright. Missing pieces fail the test, never skip it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the UI test needs Debian's chromium. "
            "Install it with .ci/install-browser (as root; it runs apt-get install chromium).",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(
            f"Playwright is not installed ({error}): pip install -e '.[test]'. Never run "
            "`playwright install`; the test drives the system's Chromium.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (own storage) with a desktop-sized window."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    context.set_default_timeout(UI_TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="module")
def stack(browser, tmp_path_factory) -> Iterator[Stack]:
    """`movielens dev` with a scratch home and the landing sensor stopped until the sample has
    landed. Requests ``browser`` first, so a missing browser fails before the slow start."""
    home = tmp_path_factory.mktemp("ui-home")
    settings = {"MOVIELENS_SENSOR_INTERVAL": "5", "MOVIELENS_SENSOR_DEFAULT": "stopped"}
    with running_stack(home, settings, ready_timeout=180) as running:
        # The "Join the Dagster community" modal would cover every page.
        assert running.graphql("mutation { setNuxSeen }") == {"setNuxSeen": True}
        yield running


@pytest.fixture(scope="module")
def sample_built(stack) -> Stack:
    """The four sample files landed, then one sensor run of RAW and everything downstream."""
    for dataset in SAMPLE_DATASETS:
        stack.land(SAMPLE / f"{dataset}.csv", dataset)
    started = stack.graphql(START_SENSOR)["startSensor"]
    assert started.get("sensorState", {}).get("status") == "RUNNING", started
    runs = stack.wait_until_caught_up(since=time.time())
    assert len(runs) == 1, f"expected one run for the four files, got {runs}"
    assert runs[0]["status"] == "SUCCESS", stack.failures(runs)
    return stack


def open_page(page, stack: Stack, path: str, ready_text: str) -> None:
    """Load a UI page and wait until the app has rendered ``ready_text``."""
    page.goto(f"http://127.0.0.1:{stack.port}{path}", wait_until="networkidle")
    page.get_by_text(ready_text).first.wait_for(state="visible")


def screenshot(page, name: str, clip: dict | None = None) -> None:
    """Write ``docs/screenshots/<name>.png`` once the page has settled (icons load late)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(path), animations="disabled", clip=clip)
    assert path.stat().st_size < 400_000, f"{path} is {path.stat().st_size} bytes"


def drawn_extent(graph, labels: list[str]) -> dict:
    """The page area holding every drawn label of ``graph``, with a margin for the boxes."""
    box = graph.evaluate(
        """(root, labels) => {
            const rects = [...root.querySelectorAll("*")]
                .filter((el) => el.children.length === 0 && labels.includes(el.textContent.trim()))
                .map((el) => el.getBoundingClientRect());
            return {
                left: Math.min(...rects.map((r) => r.left)),
                top: Math.min(...rects.map((r) => r.top)),
                right: Math.max(...rects.map((r) => r.right)),
                bottom: Math.max(...rects.map((r) => r.bottom)),
            };
        }""",
        labels,
    )
    margin = 60
    return {
        "x": max(box["left"] - margin, 0),
        "y": max(box["top"] - margin, 0),
        "width": box["right"] - box["left"] + 2 * margin,
        "height": box["bottom"] - box["top"] + 2 * margin,
    }


def check_statuses(page, names: set[str]) -> dict[str, str]:
    """What an asset's check list says of each check: ``{name: "Succeeded" | "Failed" | ...}``.

    Each entry is a name (carried whole in a ``title``, as it is middle-truncated on screen)
    above its status.
    """
    statuses = {}
    for name in sorted(names):
        entry = page.locator("span").filter(has=page.get_by_title(name, exact=True))
        entry.first.wait_for(state="visible")
        statuses[name] = entry.first.inner_text().splitlines()[-1].strip()
    return statuses


@pytest.fixture(autouse=True)
def _patient_assertions(browser) -> None:
    """Playwright's ``expect`` waits as long as page actions do (its default is 5 s).

    Requests ``browser`` so that a missing browser or Playwright fails with its own message."""
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)


def test_the_asset_graph_shows_every_group_and_every_asset(sample_built, browser):
    from playwright.sync_api import expect

    nodes = sample_built.graphql(ASSET_NODES_QUERY)["assetNodes"]
    assert {node["groupName"] for node in nodes} == set(GROUPS)
    names = sorted(node["assetKey"]["path"][-1] for node in nodes)
    assert {MODEL, "raw_ratings", "snap_tags", "seed_movie_release_dates"} <= set(names)

    # Tall enough that the expanded graph fits at the viewer's smallest zoom.
    context = browser.new_context(viewport={"width": 1600, "height": 1500}, locale="en-US")
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        open_page(page, sample_built, "/asset-groups", "Global asset lineage")
        graph = page.locator("[data-svg-viewport]")
        for group in GROUPS:
            expect(graph.get_by_text(group, exact=True).first).to_be_visible()
        expect(page.get_by_text("Join the Dagster community")).to_have_count(0)

        page.keyboard.press("Alt+KeyE")  # the graph's "Expand all groups"
        expect(graph.get_by_text("snap_tags", exact=True)).to_be_visible()
        # Reloading keeps the groups expanded and zooms the whole graph to fit.
        page.reload(wait_until="networkidle")
        expect(graph.get_by_text("snap_tags", exact=True)).to_be_visible()
        page.wait_for_timeout(1000)  # the zoom-to-fit transition
        texts = [line.strip() for line in graph.inner_text().splitlines() if line.strip()]
        missing = [name for name in names if not shown_as(name, texts)]
        assert not missing, f"assets not drawn in the graph: {missing}; drawn: {texts}"
        drawn = [text for text in texts if any(shown_as(name, [text]) for name in names)]
        screenshot(page, "asset-graph", clip=drawn_extent(graph, [*GROUPS, *drawn]))
    finally:
        context.close()


def test_the_raw_asset_page_shows_the_tables_row_count(sample_built, page):
    from playwright.sync_api import expect

    rows = len(csv_rows(SAMPLE / "ratings.csv"))
    open_page(page, sample_built, "/assets/raw/raw_ratings", "Row count")
    expect(page.get_by_text(f"{rows:,}", exact=True).first).to_be_visible()
    expect(page.get_by_text("s3://movielens/landing/ratings/").first).to_be_visible()
    screenshot(page, "asset-page-raw-ratings")


def test_the_raw_assets_checks_tab_shows_its_python_checks_passed(sample_built, page):
    node = sample_built.graphql(CHECKS_QUERY, {"path": ["raw", "raw_ratings"]})["assetNodeOrError"]
    checks = {check["name"] for check in node["assetChecksOrError"]["checks"]}
    assert {SOURCE_FRESHNESS, NO_REJECTED_FILES, ROWS_MATCH_LEDGER} <= checks
    open_page(page, sample_built, "/assets/raw/raw_ratings?view=checks", f"Checks ({len(checks)})")
    assert check_statuses(page, checks) == dict.fromkeys(checks, "Succeeded")


def test_a_dbt_model_page_shows_its_row_count_and_documented_columns(sample_built, page):
    from playwright.sync_api import expect

    distinct_pairs = {(user, movie) for user, movie, _, _ in csv_rows(SAMPLE / "ratings.csv")}
    columns = dbt_columns_of(MODEL_UID)
    assert columns, f"the manifest documents no columns of {MODEL}"
    page.set_viewport_size({"width": 1440, "height": 1400})  # row count and columns in one shot
    open_page(page, sample_built, f"/assets/facts/{MODEL}", "Row count")
    expect(page.get_by_text(f"{len(distinct_pairs):,}", exact=True).first).to_be_visible()
    expect(page.get_by_text("Columns", exact=True).first).to_be_visible()
    for column in columns:
        expect(page.get_by_role("cell", name=column, exact=True).first).to_be_visible()
    screenshot(page, "asset-page-fct-ratings")


def test_the_checks_tab_shows_every_dbt_test_of_the_model_passed(sample_built, page):
    tests = dbt_tests_of(MODEL_UID)
    assert BAD_CHECK in tests and len(tests) >= 5, tests
    open_page(page, sample_built, f"/assets/facts/{MODEL}?view=checks", f"Checks ({len(tests)})")
    assert check_statuses(page, tests) == dict.fromkeys(tests, "Succeeded")
    screenshot(page, "checks-passed")


def test_a_rating_of_an_unknown_movie_shows_its_dbt_test_failed(sample_built, page, tmp_path):
    from playwright.sync_api import expect

    runs_before = len(sample_built.runs())
    bad = tmp_path / "ratings-unknown-movie.csv"
    bad.write_text(f"userId,movieId,rating,timestamp\n611,{UNKNOWN_MOVIE_ID},4.0,1537799250\n")
    sample_built.land(bad, "ratings")
    runs = sample_built.wait_until_caught_up(since=time.time())
    assert len(runs) == runs_before + 1, runs
    assert runs[0]["status"] == "FAILURE", "a failing blocking dbt test must fail the run"
    assert BAD_CHECK in sample_built.failures(runs[:1])

    tests = dbt_tests_of(MODEL_UID)
    open_page(page, sample_built, f"/assets/facts/{MODEL}?view=checks", f"Checks ({len(tests)})")
    expected = {**dict.fromkeys(tests, "Succeeded"), BAD_CHECK: "Failed"}
    assert check_statuses(page, tests) == expected

    # Its latest execution: failed, on the one row of the bad file.
    page.get_by_title(BAD_CHECK, exact=True).first.click()
    unique_id = re.compile(rf"^test\.movielens_dbt\.{BAD_CHECK}\.\w+$")
    expect(page.get_by_role("cell", name=unique_id)).to_be_visible()
    expect(page.get_by_text("Evaluation result").locator("xpath=..")).to_contain_text("Failed")
    expect(page.get_by_text(dbt_test_description(BAD_CHECK), exact=True)).to_be_visible()
    failed_rows = page.get_by_role("row").filter(has_text="dagster_dbt/failed_row_count")
    expect(failed_rows.get_by_role("cell").last).to_have_text("1")
    screenshot(page, "checks-failed")
    # and a sample of them, behind "[Show Markdown]": the bad file's row, its unknown movie
    sample = page.get_by_role("row").filter(has_text="failing_rows_sample")
    sample.get_by_text("[Show Markdown]").click()
    expect(
        page.get_by_role("dialog").get_by_role("cell", name=str(UNKNOWN_MOVIE_ID))
    ).to_be_visible()
