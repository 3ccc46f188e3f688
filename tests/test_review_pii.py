"""PII in every field of a Check request, through a real gRPC server and the real Presidio redaction worker: no raw
value reaches the review store's file or the spool, structured fields keep their meaning, identifiers are hashed or
redacted, and with a review key the raw text is sealed (ciphertext in the file, readable with the key)."""

from __future__ import annotations

import json
from pathlib import Path

from guardrail_server.client import AsyncGuardrailClient
from guardrail_server.review.keys import generate_key, hash_key, load_key
from guardrail_server.review.records import hash_value
from guardrail_server.review.sampler import ReviewSampler
from guardrail_server.review.store import ReviewStore
from guardrail_server.review.view import with_raw_text
from tests.conftest import make_config, running_server

PERSON, CUSTOMER = "Maria Gonzalez", "John Smith"
MAIL_Q, MAIL_P, MAIL_ID = "maria.gonzalez@corp.internal", "john.smith@corp.local", "jane.doe@corp.internal"
PHONE, SSN = "212-555-0199", "078-05-1120"
RAW = [PERSON, CUSTOMER, MAIL_Q, MAIL_P, MAIL_ID, PHONE, SSN, "john-smith", "gonzalez", "jane.doe"]

QUESTION = f"I am {PERSON} ({MAIL_Q}). How do I reach my account manager?"
RESPONSE = f"Your manager {CUSTOMER} can be reached at {MAIL_P} or {PHONE} [{MAIL_ID}]. It is forbidden to share this."
CONTEXT = [{
    "id": MAIL_ID,
    "title": f"Contact card of {CUSTOMER}",
    "url": f"https://crm.corp/people/john-smith?email={MAIL_P}",
    "text": f"{CUSTOMER}, account manager. Phone {PHONE}, e-mail {MAIL_P}, SSN {SSN}. Based in Chicago.",
}]
SAMPLES = [f"Call {CUSTOMER} on {PHONE}.", f"Write to {MAIL_P}."]
METADATA = {"user_email": MAIL_Q, MAIL_Q: "vip", "customer": CUSTOMER}


async def _check_through_server(tmp_path: Path, **review: object) -> tuple[str, ReviewStore]:
    url = f"sqlite:///{tmp_path / 'review.db'}"
    cfg = make_config(
        {"pii_boundary": {"on_fail": "flag", "timeout_s": 60}, "reference_integrity": {"timeout_s": 30},
         "test_keyword": {"options": {"word": "forbidden"}}},
        {"review.enabled": True, "review.url": url, "review.spool_dir": str(tmp_path / "spool"),
         "review.random_rate": 1.0, **{f"review.{k}": v for k, v in review.items()}},
    )
    sampler = ReviewSampler(cfg.review)
    async with running_server(cfg, sampler=sampler) as (_, target):
        async with AsyncGuardrailClient(target, timeout=60) as client:
            reply = await client.check(RESPONSE, question=QUESTION, context=CONTEXT, samples=SAMPLES,
                                       metadata=METADATA, request_id=f"{MAIL_Q}-42", app=f"crm-{MAIL_P}")
    assert reply.review_sample_id
    return reply.review_sample_id, ReviewStore(url).open()


def _leaks(blob: str) -> list[str]:
    low = blob.lower()
    return [raw for raw in RAW if raw.lower() in low]


async def test_no_raw_pii_value_reaches_the_store_or_the_spool(tmp_path: Path) -> None:
    sid, store = await _check_through_server(tmp_path)
    with store:
        sample = store.get_sample(sid)
    assert sample is not None and sample["redacted"] is True
    db_bytes = (tmp_path / "review.db").read_bytes().decode("utf-8", "replace")
    spool = "".join(p.read_text(errors="replace") for p in (tmp_path / "spool").rglob("*") if p.is_file())
    assert _leaks(db_bytes) == [] and _leaks(spool) == [] and _leaks(json.dumps(sample)) == []
    assert not list((tmp_path / "spool").rglob("intake-*.jsonl"))  # raw intake lines are gone once stored

    # identifiers: hashed (request_id, app, metadata values) or redacted (passage id, metadata keys, url host)
    assert sample["request_id"] == hash_value(f"{MAIL_Q}-42") and sample["app"] == hash_value(f"crm-{MAIL_P}")
    case = sample["case"]
    assert set(case["metadata"].values()) == {hash_value(MAIL_Q), hash_value("vip"), hash_value(CUSTOMER)}
    assert "user_email" in case["metadata"]  # a harmless key stays readable
    [passage] = case["context"]
    assert passage["id"] == "<EMAIL_ADDRESS>" and passage["url"].startswith("https://crm.corp/…#")
    assert "Chicago" not in passage["text"]  # LOCATION is redacted by default (see review.redact_entities)
    assert [s.count("<") > 0 for s in case["samples"]] == [True, True]

    # structured fields keep their meaning: invariant names, outcomes, entity types, finding kinds
    by_name = {v["invariant"]: v for v in sample["verdicts"]}
    assert set(by_name) == {"pii_boundary", "reference_integrity", "test_keyword"}
    leaks = [f for f in by_name["pii_boundary"]["findings"] if f["kind"] == "pii_leak"]
    assert leaks, "the phone number leaked from the passage should be a finding"
    for f in leaks:
        entity = f["evidence"]["entity_type"]
        assert entity.isupper() and "<" not in entity  # e.g. PHONE_NUMBER, not "<PERSON>"
        assert f["quote"] == f"<{entity}>"
    assert by_name["test_keyword"]["findings"][0]["quote"] == "forbidden"  # non-personal text stays readable
    assert by_name["pii_boundary"]["details"]["mode"] in ("ner", "patterns", "spacy", "pattern")


async def test_with_a_key_raw_text_is_sealed_for_reviewers(tmp_path: Path) -> None:
    keyfile = generate_key(tmp_path / "review.key")
    entities = ["EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "PERSON"]  # keep place names readable
    sid, store = await _check_through_server(tmp_path, key_file=str(keyfile), encrypt_raw_text=True,
                                             redact_entities=entities)
    key = load_key(str(keyfile), environ={})
    with store:
        sample = store.get_sample(sid)
    db_bytes = (tmp_path / "review.db").read_bytes().decode("utf-8", "replace")
    assert _leaks(db_bytes) == []  # the sealed copy is ciphertext
    assert "Based in Chicago" in sample["case"]["context"][0]["text"]  # not a personal datum: kept
    assert sample["sealed"] and sample["request_id"] == hash_value(f"{MAIL_Q}-42", hash_key(key))  # keyed hash
    shown = with_raw_text(sample, key)
    assert shown["raw_text"] is True and shown["case"]["response"] == RESPONSE
    assert with_raw_text(sample, None)["case"]["response"] == sample["case"]["response"] != RESPONSE


# --- identifiers Presidio's defaults miss, in every place a reviewer reads them (issue 23, item 10) ------------------

NINO, AADHAAR, UK_PHONE = "QQ 12 34 56 C", "2345 6789 0124", "+44 7700 900123"
RESET = "https://accounts.example.com/reset?token=9fK2xLq7Zr4TbW1p&user=7"
PRIVATE_LINK = "https://files.example.com/s3cr3tT0k3nABCDEF/report.pdf"
MORE_RAW = [NINO, AADHAAR, UK_PHONE, "9fK2xLq7Zr4TbW1p", "s3cr3tT0k3nABCDEF", "12 34 56", "6789 0124", "7700 900123"]


def _page(app: object, path: str, token: str) -> str:
    import io

    from guardrail_server.review.web import SESSION_COOKIE

    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "HTTP_HOST": "localhost",
               "HTTP_COOKIE": f"{SESSION_COOKIE}={token}", "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http",
               "SERVER_NAME": "localhost", "SERVER_PORT": "80"}
    body = b"".join(app(environ, lambda s, h: status.append(s)))  # type: ignore[operator]
    assert status[0].startswith("200"), status
    return body.decode()


async def test_uk_ni_aadhaar_url_tokens_and_a_uk_phone_never_reach_store_quotes_or_page(tmp_path: Path) -> None:
    """A UK phone number in the response (Presidio's phone recognizer does not parse `+44 7700 900123`), an NI and an
    Aadhaar number, a password-reset token in a URL query and a token in a URL path, in the response and the passage:
    the store file, the spool, the findings' quotes and the review page show none of them; the store file is 0600."""
    from guardrail_server.review.auth import hash_password
    from guardrail_server.review.web import ReviewApp

    url = f"sqlite:///{tmp_path / 'review.db'}"
    response = (f"Her NI number is {NINO} and her Aadhaar {AADHAAR}; call {UK_PHONE}. Reset at {RESET} "
                f"or read {PRIVATE_LINK}.")
    passage = (f"Patient record: NI {NINO}, Aadhaar {AADHAAR}, phone {UK_PHONE}. Reset link {RESET}. "
               f"Report {PRIVATE_LINK}.")
    cfg = make_config(
        {"pii_boundary": {"on_fail": "flag", "timeout_s": 60}},
        {"review.enabled": True, "review.url": url, "review.spool_dir": str(tmp_path / "spool"),
         "review.random_rate": 1.0},
    )
    async with running_server(cfg, sampler=ReviewSampler(cfg.review)) as (_, target):
        async with AsyncGuardrailClient(target, timeout=60) as client:
            reply = await client.check(response, question="What is on file?",
                                       context=[{"id": "rec-1", "text": passage}])
    assert (tmp_path / "review.db").stat().st_mode & 0o777 == 0o600  # it holds reviewers' password hashes
    with ReviewStore(url).open() as store:
        sample = store.get_sample(reply.review_sample_id)
        store.set_user("alice", hash_password("correct horse battery"))
        app = ReviewApp(store)
        token, _ = app.sessions.create("alice")
        html = _page(app, f"/sample/{reply.review_sample_id}", token) + _page(app, "/", token)
    db_bytes = (tmp_path / "review.db").read_bytes().decode("utf-8", "replace")
    spool = "".join(p.read_text(errors="replace") for p in (tmp_path / "spool").rglob("*") if p.is_file())
    for where, text in (("store file", db_bytes), ("spool", spool), ("record", json.dumps(sample)), ("page", html)):
        assert [v for v in MORE_RAW if v in text] == [], where
    stored = sample["case"]["response"]
    assert "<UK_NINO>" in stored and "<IN_AADHAAR>" in stored and "?token=<URL_SECRET>" in stored
    assert "/<URL_SECRET>/report.pdf" in stored
    findings = [f for v in sample["verdicts"] for f in v["findings"]]
    assert {f["evidence"]["entity_type"] for f in findings if f["kind"] == "pii_leak"} >= {"UK_NINO", "IN_AADHAAR"}
    assert all(not any(v in f["quote"] for v in MORE_RAW) for f in findings)


def test_a_new_sqlite_store_is_created_0600(tmp_path: Path) -> None:
    with ReviewStore(f"sqlite:///{tmp_path / 'sub' / 'review.db'}").open():
        pass
    assert (tmp_path / "sub" / "review.db").stat().st_mode & 0o777 == 0o600
