"""The review page in real headless Chromium: queue order, keyboard labeling, progress, escaping."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

import pytest

from guardrail_server.review.records import Pending, to_record
from guardrail_server.review.store import ReviewStore
from guardrail_server.review.web import ReviewWebServer
from tests.review_support import make_case, verdict

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are required: run `make browser-deps`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[ReviewStore, str, dict[str, dict]]]:
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.db'}").open()
    recs = {
        "random": to_record(Pending(str(uuid.uuid4()), 1.7e9, make_case(1), [verdict("entailment", 0.9)], "allow",
                                    ("random",)), None),
        "failure": to_record(Pending(str(uuid.uuid4()), 1.7e9 + 1, make_case(
            2, response="Rent is due on day 9 <script>window.pwned = 1</script> [doc-1]."),
            [verdict("entailment", 0.2)], "flag", ("failure",)), None),
        "disagreement": to_record(Pending(str(uuid.uuid4()), 1.7e9 + 2, make_case(3),
                                          [verdict("entailment", 0.7), verdict("reference_integrity", 0.9)], "allow",
                                          ("disagreement",), ("entailment",)), None),
    }
    store.insert_samples(list(recs.values()))
    server = ReviewWebServer(store, "127.0.0.1", 0)
    server.start()
    try:
        yield store, f"http://127.0.0.1:{server.port}", recs
    finally:
        server.stop()
        store.close()


def test_health_endpoint(site) -> None:  # noqa: ANN001
    _, base, _ = site
    assert urlopen(f"{base}/healthz").read() == b"ok"


def test_page_labels_cases_with_the_keyboard(browser, site) -> None:  # noqa: ANN001
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    store, base, recs = site
    wait = WebDriverWait(browser, 10)
    keys = ActionChains(browser)

    browser.get(base + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tr td:nth-child(2)")
    assert [r.text.strip() for r in rows] == ["disagreement", "failure", "random"]
    assert "0 / 3 labeled" in browser.find_element(By.ID, "progress-text").text

    reviewer = browser.find_element(By.ID, "reviewer")
    reviewer.send_keys("frank")
    browser.find_element(By.TAG_NAME, "body").click()  # commit the change event, leave the input

    keys.send_keys("n").perform()
    wait.until(lambda d: recs["disagreement"]["id"] in d.current_url)
    assert "judges disagree on" in browser.page_source
    keys.send_keys("p").perform()  # entailment: pass (selection moves on)
    keys.send_keys("f").perform()  # reference_integrity: fail
    keys.send_keys("c").perform()
    browser.switch_to.active_element.send_keys("Entailed, but the citation points at the wrong clause.")
    browser.switch_to.active_element.send_keys(Keys.CONTROL, Keys.ENTER)

    wait.until(lambda d: recs["failure"]["id"] in d.current_url)
    assert "1 / 3 labeled" in browser.find_element(By.ID, "progress-text").text
    [a] = store.get_sample(recs["disagreement"]["id"])["annotations"]
    assert a["reviewer"] == "frank"
    assert a["labels"] == {"entailment": "pass", "reference_integrity": "fail"}
    assert a["critique"] == "Entailed, but the citation points at the wrong clause."

    # response text is escaped, never executed
    assert "<script>window.pwned = 1</script>" in browser.find_element(By.ID, "response").text
    assert browser.execute_script("return window.pwned === undefined")

    keys.send_keys("s").perform()  # skip the failure case
    wait.until(lambda d: recs["random"]["id"] in d.current_url)
    keys.send_keys("a").perform()  # agree with every judge
    keys.send_keys(Keys.ENTER).perform()
    wait.until(lambda d: recs["failure"]["id"] in d.current_url)  # only the skipped one is left
    assert store.get_sample(recs["random"]["id"])["annotations"][0]["labels"] == {"entailment": "pass"}
    assert store.get_sample(recs["failure"]["id"])["status"] == "skipped"
    assert store.progress() == {"labeled": 2, "skipped": 1, "pending": 0, "total": 3}


def test_next_hands_two_reviewers_different_cases(site) -> None:  # noqa: ANN001
    import http.client

    _, base, recs = site
    port = int(base.rsplit(":", 1)[1])

    def get(path: str, reviewer: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path, headers={"Cookie": f"reviewer={reviewer}"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.getheader("Location") or str(resp.status)

    first = get("/next", "ann")
    assert first == f"/sample/{recs['disagreement']['id']}"
    assert get(first, "ann") == "200"  # ann opens it: leased to her
    assert get("/next", "ann") == first  # she gets it back
    assert get("/next", "ben") == f"/sample/{recs['failure']['id']}"  # ben gets the next one
