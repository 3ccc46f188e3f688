"""The review page in real headless Chromium: sign-in, CSRF, queue order, keyboard labeling, progress, escaping,
sampled responses and earlier labels on the page, blind review, raw text for signed-in reviewers."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

import pytest

from guardrail_server.review.auth import hash_password
from guardrail_server.review.records import Pending, RecordOptions, to_record
from guardrail_server.review.store import ReviewStore
from guardrail_server.review.web import ReviewWebServer
from guardrail_invariants.types import Case, Passage
from tests.review_support import make_case, verdict

PASSWORD = "correct horse battery"

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
    store.set_user("frank", hash_password(PASSWORD))
    store.set_user("gina", hash_password(PASSWORD))
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


def sign_in(browser, base: str, name: str = "frank", password: str = PASSWORD) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    browser.get(base + "/")
    assert "/login" in browser.current_url  # nothing without signing in
    browser.find_element(By.ID, "username").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "sign-in").click()


def test_page_labels_cases_with_the_keyboard(browser, site) -> None:  # noqa: ANN001
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    store, base, recs = site
    wait = WebDriverWait(browser, 10)
    keys = ActionChains(browser)

    sign_in(browser, base)
    wait.until(lambda d: d.find_elements(By.ID, "queue"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tr td:nth-child(2)")
    assert [r.text.strip() for r in rows] == ["disagreement", "failure", "random"]
    assert "0 / 3 labeled" in browser.find_element(By.ID, "progress-text").text

    assert "frank" in browser.find_element(By.ID, "signed-in").text
    cookie = browser.get_cookie("guardrail_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"

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


def _session(port: int, name: str) -> tuple[str, str]:
    """Signs in over plain HTTP: (session cookie, csrf token of the session)."""
    import http.client
    import re

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/login")
    resp = conn.getresponse()
    page = resp.read().decode()
    login_cookie = resp.getheader("Set-Cookie").split(";")[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    body = f"csrf={csrf}&username={name}&password={PASSWORD.replace(' ', '+')}&next=/"
    conn.request("POST", "/login", body, {"Cookie": login_cookie, "Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 303, resp.status
    session = next(c for c in resp.getheader("Set-Cookie").split(", ") if c.startswith("guardrail_session"))
    session = session.split(";")[0]
    conn.request("GET", "/", headers={"Cookie": session})
    page = conn.getresponse().read().decode()
    conn.close()
    return session, re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_next_hands_two_reviewers_different_cases(site) -> None:  # noqa: ANN001
    import http.client

    _, base, recs = site
    port = int(base.rsplit(":", 1)[1])
    cookies = {name: _session(port, name)[0] for name in ("frank", "gina")}

    def get(path: str, reviewer: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path, headers={"Cookie": cookies[reviewer]})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.getheader("Location") or str(resp.status)

    first = get("/next", "frank")
    assert first == f"/sample/{recs['disagreement']['id']}"
    assert get(first, "frank") == "200"  # frank opens it: leased to him
    assert get("/next", "frank") == first  # he gets it back
    assert get("/next", "gina") == f"/sample/{recs['failure']['id']}"  # gina gets the next one


def test_nothing_without_signing_in_and_wrong_passwords_are_refused(site) -> None:  # noqa: ANN001
    import http.client

    store, base, recs = site
    port = int(base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for path in ("/", "/next", f"/sample/{recs['random']['id']}"):
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 303 and resp.getheader("Location").startswith("/login")
    conn.request("POST", f"/sample/{recs['random']['id']}", "label_entailment=fail",
                 {"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 403
    with pytest.raises(AssertionError):
        _session_with(port, "frank", "wrong password")
    conn.close()
    assert store.get_sample(recs["random"]["id"])["annotations"] == []


def _session_with(port: int, name: str, password: str) -> None:
    global PASSWORD
    saved, PASSWORD = PASSWORD, password
    try:
        _session(port, name)
    finally:
        PASSWORD = saved


def test_a_forged_cross_origin_post_labels_nothing(browser, site, tmp_path: Path) -> None:  # noqa: ANN001
    """A signed-in reviewer visits an attacker's page (another origin) that auto-submits a label form to the
    review page: the browser sends no session cookie (SameSite=Strict) or the page refuses it (no CSRF token,
    foreign Origin) — either way no label is written."""
    import http.server
    import threading

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store, base, recs = site
    target = recs["random"]["id"]
    sign_in(browser, base)
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "queue"))
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "index.html").write_text(f"""<html><body>
      <form id="f" method="post" action="{base}/sample/{target}">
        <input name="label_entailment" value="fail"><input name="critique" value="forged"><input name="action" value="save">
      </form><script>document.getElementById("f").submit()</script></body></html>""")
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(evil), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://localhost:{httpd.server_address[1]}/index.html")  # another origin (and site)
        WebDriverWait(browser, 10).until(lambda d: base.split(":")[-1] in d.current_url)
    finally:
        httpd.shutdown()
    assert store.get_sample(target)["annotations"] == []
    # the same POST from the same origin without the token is refused too
    import http.client

    port = int(base.rsplit(":", 1)[1])
    cookie, csrf = _session(port, "gina")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for body in ("label_entailment=fail&action=save", "label_entailment=fail&action=save&csrf=" + "x" * len(csrf)):
        conn.request("POST", f"/sample/{target}", body,
                     {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 403
    conn.request("POST", f"/sample/{target}", f"label_entailment=fail&action=save&csrf={csrf}",
                 {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded",
                  "Origin": "http://evil.example"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 403
    conn.request("POST", f"/sample/{target}", f"label_entailment=fail&action=save&csrf={csrf}",
                 {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 303  # with the token it works, and the label is gina's
    conn.close()
    [a] = store.get_sample(target)["annotations"]
    assert a["reviewer"] == "gina" and a["labels"] == {"entailment": "fail"}


def test_blind_review_shows_samples_and_earlier_labels_and_reveals_verdicts_after_labeling(
    browser, tmp_path: Path  # noqa: ANN001
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    key = __import__("guardrail_server.review.keys", fromlist=["x"])
    keyfile = key.generate_key(tmp_path / "review.key")
    review_key = key.load_key(str(keyfile), environ={})
    store = ReviewStore(f"sqlite:///{tmp_path / 'review.db'}").open()
    case = Case(
        question="Where did Maria Lopez move?",
        context=(Passage("doc-1", "Maria Lopez moved from Paris to Lyon in 2019."),),
        response="Maria Lopez moved to Lyon in 2019 [doc-1].",
        samples=("She moved to Lyon.", "Maria moved to Marseille in 2018."),
    )
    rec = to_record(Pending("11111111-2222-3333-4444-555555555555", 1.7e9, case,
                            [verdict("self_consistency", 0.3), verdict("entailment", 0.95)], "flag", ("failure",)),
                    str.upper, RecordOptions(seal_key=review_key))  # redacted copy (upper-cased) + sealed raw text
    store.insert_samples([rec])
    store.set_user("frank", hash_password(PASSWORD))
    store.set_user("gina", hash_password(PASSWORD))
    store.save_annotation(rec["id"], "gina", {"entailment": "pass"}, "gina's critique")
    server = ReviewWebServer(store, "127.0.0.1", 0, key=review_key, blind=True)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        wait = WebDriverWait(browser, 10)
        sign_in(browser, base)
        wait.until(lambda d: d.find_elements(By.ID, "queue"))
        browser.get(f"{base}/sample/{rec['id']}")
        # raw text for the signed-in reviewer (the stored copy is the redacted, upper-cased one)
        assert browser.find_element(By.ID, "response").text == case.response
        assert browser.find_elements(By.ID, "raw-text")
        # the sampled responses are shown
        assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".sampled-response")] == list(case.samples)
        # blind: no verdict, no reasons, no other reviewer's labels before labeling
        assert not browser.find_elements(By.CSS_SELECTOR, "td.verdict") and browser.find_elements(By.ID, "blind")
        main = browser.find_element(By.TAG_NAME, "main").text
        assert "gina" not in main and "failure" not in main and not browser.find_elements(By.CSS_SELECTOR, ".reason")
        browser.find_element(By.TAG_NAME, "body").click()
        ActionChains = __import__("selenium.webdriver.common.action_chains", fromlist=["x"]).ActionChains
        ActionChains(browser).send_keys("f").send_keys("-").perform()  # self_consistency fail, entailment: no label
        browser.find_element(By.ID, "critique").send_keys("The samples disagree on the city.")
        browser.switch_to.active_element.send_keys(Keys.CONTROL, Keys.ENTER)
        wait.until(lambda d: d.find_elements(By.ID, "saved"))
        # revealed after labeling: verdicts, and the labels so far (mine and gina's)
        assert len(browser.find_elements(By.CSS_SELECTOR, "td.verdict")) == 2
        who = [e.get_attribute("data-reviewer") for e in browser.find_elements(By.CSS_SELECTOR, "tr.annotation")]
        assert who == ["frank", "gina"]
        mine = next(a for a in store.get_sample(rec["id"])["annotations"] if a["reviewer"] == "frank")
        assert mine["labels"] == {"self_consistency": "fail"}  # the skipped invariant got no label
        # reopened: the saved label is pre-selected
        browser.get(f"{base}/sample/{rec['id']}")
        checked = browser.find_element(By.CSS_SELECTOR, "input[name=label_self_consistency][value=fail]")
        assert checked.is_selected()
        assert browser.find_element(By.CSS_SELECTOR, "input[name=label_entailment][value=none]").is_selected()
    finally:
        server.stop()
        store.close()
