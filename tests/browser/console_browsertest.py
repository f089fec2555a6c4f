#!/usr/bin/env python3
"""The admin console in a real browser (ctest: e2e.browser, labels e2e and browser; docs/admin-console.md).

    /usr/bin/python3 tests/browser/console_browsertest.py SOURCE_DIR BUILD_DIR

Debian's Chromium, headless, driven by python3-selenium through chromedriver, against `eventlog serve` on its own
throwaway PostgreSQL and ClickHouse (browser_harness.Servers). Each scenario below is a sentence; every page a
scenario visits gets axe-core (serious or critical violations fail), screenshots at 1280 and 320 px into
BUILD_DIR/test-artifacts/browser/, and a check that it does not scroll sideways at 320 px. At the end, every request
the browser made must have gone to the server under test on 127.0.0.1.

To add a page: put it in PAGES (with the ids or text that prove it is the page and not an error), and its path in
PAGES_EXPECTED_TO_EXIST once it is built. A page of PAGES that is not expected yet may answer 404: that is printed,
never skipped silently; any other status fails.
"""

import json
import os
import secrets
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass

from selenium.webdriver.common.keys import Keys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pylint: disable=wrong-import-position
from browser_harness import Browser, Servers, check, run_scenarios, scenario  # noqa: E402

USERNAME = "ada"
WRONG_PASSWORD = "not the right passphrase"
THROTTLE_AFTER = 5  # failures within 15 minutes (admin::kMaxLoginFailures)


@dataclass(frozen=True)
class Page:
    """A page of the console that every run visits signed in, checks with axe-core and captures."""

    path: str
    name: str  # of its screenshots
    shows: str  # what a person sees on it, for the report
    h1: str = ""  # its heading, when given
    ids: tuple = ()  # elements that must be on it (by id)
    text: str = ""  # text that must be on it


# The h1 texts and ids are the stable anchors the pages promise (docs/admin-console.md, "Page anchors for tests").
# Every signed-in page also has the Sign out button (SIGNED_IN_IDS).
PAGES = [
    Page("/admin/", "dashboard", "the dashboard: the outbox's figures (backlog, oldest waiting, in flight, dead "
         "letters, outbox on disk), the relays, the last hour's deliveries as a chart, PostgreSQL and ClickHouse",
         h1="Dashboard", text=f"Signed in as {USERNAME}",
         ids=("backlog", "oldest-age", "in-flight", "in-flight-batches", "dead-letters", "retained-bytes",
              "relays-alive", "delivery-chart", "delivery-table", "delivered-last-hour", "postgres-status",
              "clickhouse-status")),
    Page("/admin/events/", "events", "the delivered events from ClickHouse, newest first, with their filters",
         h1="Events", ids=("event-filter", "type", "from", "to", "trace", "event_id", "filter-submit")),
    Page("/admin/dead-letters/", "dead-letters", "the dead letters with their errors and attempts, the filters, "
         "Replay / Discard selected and all matching", h1="Dead letters",
         ids=("dead-letter-count", "dead-letter-filter", "type", "error", "filter-submit")),
    Page("/admin/api-keys/", "api-keys", "the 'Create a key' form (name, three scopes) and the keys with their state",
         h1="API keys", ids=("create-key", "name", "scope-events-write", "scope-events-read", "scope-users-write",
                             "create-submit")),
    Page("/admin/users/", "users", "the users table behind POST /api/v1/users, with its search box", h1="Users",
         ids=("user-search", "q", "search-submit")),
    Page("/admin/audit/", "audit", "the audit log: when, who, action, target, address, details", h1="Audit log",
         ids=("audit-list",)),
]
SIGNED_IN_IDS = ("sign-out",)
# Pages of PAGES that must answer 200 (all of them are built). One not listed may answer 404; it is printed.
PAGES_EXPECTED_TO_EXIST = {page.path for page in PAGES}


class Context:
    """What the scenarios share: the servers, the browser, the administrator's password."""

    def __init__(self, servers, browser, password):
        self.servers = servers
        self.browser = browser
        self.password = password
        self.dead_letters = {}  # what a scenario made -> event id, for those after it


def signed_in(c):
    """Signs in as the administrator with a fresh cookie jar, and checks the page says so."""
    b = c.browser
    b.clear_cookies()
    status = b.sign_in(USERNAME, c.password)
    check(status == 200 and b.path() == "/admin/",
          f"signing in led to {b.path()} with status {status}: {b.text('body')[:300]}")
    check(f"Signed in as {USERNAME}" in b.text("body"),
          f"/admin/ does not say who is signed in: {b.text('body')[:300]}")


@scenario
def the_harness_sees_an_external_request_and_the_browser_cannot_reach_it(c):
    """The check at the end is only worth something if it sees a request leave; and the browser's way out is the dead
    proxy, for a name and for an address alike (the failure says so: a machine without a network fails them too,
    with another error)."""
    b = c.browser
    canaries = ["http://eventlog-browser-test.example/canary", "http://192.0.2.1/canary"]
    b.driver.get("about:blank")
    try:
        outcomes = b.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all(arguments[0].map(u => fetch(u, {mode: 'no-cors'})"
            "    .then(() => 'reached ' + u, e => 'failed ' + u + ': ' + e))).then(done);", canaries)
        check(all(o.startswith("failed") for o in outcomes), f"an external request was answered: {outcomes}")
        seen = [r.url for r in b.foreign_requests()]
        check(all(u in seen for u in canaries), f"the request log missed a canary: {seen}")
        errors = {u: b.failed.get(u) for u in canaries}
        check(all(e == "net::ERR_PROXY_CONNECTION_FAILED" for e in errors.values()),
              f"the canaries did not fail at the dead proxy: {errors}")
    finally:
        b.drain_log()
        b.requests = [r for r in b.requests if r.url not in canaries]  # the last scenario judges the pages' own


@scenario
def signing_in_through_the_form_shows_who_is_signed_in(c):
    b = c.browser
    b.clear_cookies()
    check(b.visit("/admin/") == 200 and b.path() == "/admin/login/",
          f"/admin/ without a session should lead to the form, got {b.path()}")
    b.check_page("sign-in", "the sign-in form: Username, Password, the Sign in button")
    signed_in(c)
    b.check_page(PAGES[0].name, PAGES[0].shows)


@scenario
def the_session_cookie_has_its_flags_in_the_browsers_cookie_store(c):
    b = c.browser
    want = {"httpOnly": True, "sameSite": "Strict", "path": "/admin/", "secure": False, "session": True}

    def flags(name):
        cookies = b.cookies()
        check(name in cookies, f"no {name} cookie on {b.path()}: {sorted(cookies)}")
        seen = {k: cookies[name].get(k) for k in want}
        check(seen == want, f"{name}: the browser stored {seen}, expected {want}")

    b.clear_cookies()
    check(b.visit("/admin/login/") == 200, "GET /admin/login/")
    flags("eventlog_csrf")  # the sign-in form's double-submit cookie
    signed_in(c)
    flags("eventlog_session")
    page_cookies = b.driver.execute_script("return document.cookie;")
    check(not page_cookies, f"the page's script can read cookies: {page_cookies!r}")


def eventlog_status(c):
    """`eventlog status --json`, run as an operator would, with the test's environment."""
    out = c.servers.eventlog("status", "--json")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    check(lines, f"eventlog status --json printed no JSON object: {out}")
    return json.loads(lines[-1])


def dead_letter(c, event_type, context, error):
    """Inserts a dead letter as the relay leaves one (as console_pages_dbtest.cpp does); returns its event id."""
    return c.servers.sql(
        "INSERT INTO eventlog.dead_letter (event_id, event_type, event_date_time, event_context, metadata_version, "
        f"enqueued_at, error, attempts) VALUES (gen_random_uuid(), '{event_type}', now(), '{context}'::json, 1, now(), "
        f"'{error}', 5) RETURNING event_id").strip()


FIGURES = {"backlog": "pending", "in-flight": "in_flight_events", "in-flight-batches": "in_flight_batches",
           "dead-letters": "dead_letters"}  # the dashboard's id -> eventlog status --json's field


@scenario
def the_dashboards_numbers_match_eventlog_status(c):
    """Events waiting, two of them claimed by a relay that died (in flight), two dead letters: the dashboard shows
    what `eventlog status` prints, and both show what was made. The dead letters stay for the scenarios below."""
    b = c.browser
    before = eventlog_status(c)
    c.servers.sql("SELECT count(eventlog.emit('browser_test_waiting', json_build_object('n', g))) "
                  "FROM generate_series(1, 5) g")
    # Two chunks of one event each, claimed by owner 7 and never acknowledged: what a relay killed after its claim
    # leaves in flight (tests/support TestStack::ClaimAs). The next relay recovers them.
    c.servers.sql("SELECT count(*) FROM eventlog.claim_chunks(7, 1, 2, 9223372036854775807, "
                  "ARRAY[gen_random_uuid(), gen_random_uuid()])")
    c.dead_letters["replayed"] = dead_letter(c, "browser_test_replayed", '{"order_id": 42}',
                                             "HTTP 500 from ClickHouse: Code: 1001. DB::Exception: a fault")
    c.dead_letters["kept"] = dead_letter(
        c, "browser_test_kept", '{"note": "stays a dead letter"}',
        "Code: 27. DB::Exception: Cannot parse input: expected comma before: "
        "order_placed_with_a_rather_long_unbroken_value_that_must_wrap_on_a_phone: while executing FORMAT")
    status = eventlog_status(c)
    made = {"pending": 3, "in_flight_events": 2, "in_flight_batches": 2, "dead_letters": 2}
    grew = {k: status[k] - before[k] for k in made}
    check(grew == made, f"eventlog status grew by {grew}, expected {made} (before {before}, after {status})")
    signed_in(c)
    shown = {anchor: b.anchor(anchor) for anchor in FIGURES}
    expected = {anchor: str(status[field]) for anchor, field in FIGURES.items()}
    check(shown == expected, f"the dashboard shows {shown}, eventlog status --json printed {expected}")
    check(b.anchor("postgres-status").startswith("reachable") and b.anchor("clickhouse-status") == "reachable",
          f"servers: PostgreSQL {b.anchor('postgres-status')!r}, ClickHouse {b.anchor('clickhouse-status')!r}")
    b.check_page("dashboard-figures", "the dashboard with 3 waiting, 2 events in flight in 2 batches and 2 dead "
                                      "letters (a link), PostgreSQL and ClickHouse reachable")
    # The count is a link to the dead letters, which lists them.
    check(b.click("dead-letters") == 200 and b.path() == "/admin/dead-letters/",
          f"the dashboard's dead-letter count led to {b.path()}")
    check(b.anchor("dead-letter-count") == "2", f"the list counts {b.anchor('dead-letter-count')}, expected 2")
    rows = {key: bool(b.driver.find_elements("id", f"dead-letter-{i}")) for key, i in c.dead_letters.items()}
    check(all(rows.values()), f"rows of the dead letters on the list: {rows}")


@scenario
def a_dead_letter_replayed_on_its_page_is_delivered_once(c):
    """From the list to the dead letter's page, Replay…, the confirmation, Yes; then a relay drains: ClickHouse
    holds the event once, the dead letter is gone from the page, the event's page says delivered."""
    b = c.browser
    check("replayed" in c.dead_letters, "the dashboard scenario made no dead letter to replay (it failed first)")
    event_id = c.dead_letters["replayed"]
    signed_in(c)
    check(b.visit("/admin/dead-letters/") == 200, "GET /admin/dead-letters/")
    check(b.click(f"dead-letter-{event_id}", inside="a") == 200, "the event id's link on the list")
    check(b.path() == f"/admin/dead-letters/{event_id}/", f"the event id's link led to {b.path()}")
    check(b.text("h1") == "Dead letter" and b.anchor("event-id") == event_id and b.anchor("attempts") == "5",
          f"the dead letter's page: h1 {b.text('h1')!r}, event id {b.anchor('event-id')}, "
          f"attempts {b.anchor('attempts')}")
    check('"order_id": 42' in b.anchor("payload"), f"the payload shown is {b.anchor('payload')!r}")
    b.check_page("dead-letter", "one dead letter: its fields, the error and the payload in full, Replay… and "
                                "Discard…")
    check(b.click(f"replay-{event_id}") == 200, f"Replay… answered {b.status_of_last_navigation()}")
    check(b.text("h1") == "Confirm replay" and b.anchor("confirm-count") == "1" and event_id in b.text(),
          f"the confirmation: h1 {b.text('h1')!r}, count {b.anchor('confirm-count')}: {b.text()[:300]}")
    waiting = c.servers.sql(f"SELECT count(*) FROM eventlog.dead_letter WHERE event_id = '{event_id}'").strip()
    check(waiting == "1", f"the confirmation alone changed the dead letter (count {waiting})")
    b.check_page("confirm-replay", "'Confirm replay': 'Replay 1 selected dead letter?', its event id, what a "
                                   "replay does, 'Yes, replay' and Cancel")
    check(b.click("confirm") == 200, f"Yes, replay answered {b.status_of_last_navigation()}")
    check(b.anchor("result-count") == "1", f"the replay's result: {b.anchor('result')!r}, expected 1 replayed")
    b.check_page("replayed", "'Dead letters' and 'Replayed 1 dead letter.', a link back to the dead letters")
    before = c.servers.clickhouse(f"SELECT count() FROM event_log WHERE event_id = toUUID('{event_id}')").strip()
    check(before == "0", f"ClickHouse held the event before the relay ran: {before}")
    c.servers.eventlog("relay", "--drain", timeout=60)
    c.servers.eventlog("relay", "--drain", timeout=60)  # a second drain finds nothing left to send again
    copies = c.servers.clickhouse(f"SELECT count() FROM event_log WHERE event_id = toUUID('{event_id}')").strip()
    check(copies == "1", f"ClickHouse holds event {event_id} {copies} times, expected once")
    left = {k: v for k, v in eventlog_status(c).items() if k in ("pending", "in_flight_events", "dead_letters")}
    check(left == {"pending": 0, "in_flight_events": 0, "dead_letters": 1},
          f"after the drains eventlog status says {left}: the waiting and the dead relay's events not all delivered")
    check(b.visit("/admin/dead-letters/") == 200 and not b.driver.find_elements("id", f"dead-letter-{event_id}"),
          "the replayed dead letter is still on the list")
    check(b.anchor("dead-letter-count") == "1", f"dead letters left: {b.anchor('dead-letter-count')}, expected 1")
    check(b.visit(f"/admin/events/{event_id}/") == 200 and b.anchor("event-status") == "delivered",
          f"the event's page says {b.anchor('event-status')!r}, expected delivered")
    b.check_page("event-delivered", "the replayed event's page: status delivered with its insert time, its "
                                    "fields and context")


def api_emit(c, token):
    """POST /api/v1/events with the key's token; the status."""
    return c.servers.api("POST", "/api/v1/events", {"event_type": "browser_test_paid", "event_context": {}},
                         token)[0]


@scenario
def a_key_revoked_on_its_page_is_refused_by_the_api(c):
    """Create a key on the page (its token read from the page, shown once), the API accepts it; Revoke…, the
    confirmation (the key still works), Yes: the API answers 401 within the key cache's 2 s."""
    b = c.browser
    signed_in(c)
    check(b.visit("/admin/api-keys/") == 200, "GET /admin/api-keys/")
    name = b.driver.find_element("id", "name")
    name.clear()
    name.send_keys("billing")
    b.driver.find_element("id", "scope-events-write").click()
    check(b.click("create-submit") == 200, f"Create key answered {b.status_of_last_navigation()}")
    tokens = b.driver.find_elements("id", "new-token")
    check(tokens, f"no token on the page after Create key: {b.text()[:300]}")
    token = tokens[0].get_attribute("value")
    check(token.startswith("elk_"), f"the token shown is {token!r}")
    b.check_page("api-key-created", "'Key “billing” created', 'Copy its token now: it is shown only this once', "
                                    "the token in a read-only field, the key in the list as active")
    check(b.visit("/admin/api-keys/") == 200 and token not in b.driver.page_source,
          "the token is shown again on the list")
    status = api_emit(c, token)
    check(status == 202, f"POST /api/v1/events with the new key: {status}, expected 202")
    check(b.click("revoke-billing") == 200 and b.text("h1") == "Confirm revoke" and
          b.anchor("confirm-name") == "billing",
          f"Revoke… led to {b.path()}: h1 {b.text('h1')!r}, name {b.anchor('confirm-name')!r}")
    b.check_page("confirm-revoke", "'Confirm revoke': 'Revoke API key “billing”? Requests with its token are "
                                   "refused (401) ...', 'Yes, revoke' and Cancel")
    status = api_emit(c, token)
    check(status == 202, f"the confirmation alone stopped the key: {status}")
    check(b.click("confirm") == 200, f"Yes, revoke answered {b.status_of_last_navigation()}")
    check("Revoked API key" in (b.anchor("result") or ""), f"the revoke's result: {b.anchor('result')!r}")
    b.check_page("api-key-revoked", "'Revoked API key “billing”.' above the form, the key's row 'revoked' with "
                                    "its time and no Revoke button")
    deadline = time.monotonic() + 5  # the key cache's time to live is 2 s
    while (status := api_emit(c, token)) != 401 and time.monotonic() < deadline:
        time.sleep(0.2)
    check(status == 401, f"POST /api/v1/events with the revoked key: {status} after 5 s, expected 401")
    check("revoked" in b.text("#key-billing") and not b.driver.find_elements("id", "revoke-billing"),
          f"the key's row says {b.text('#key-billing')!r}")


@scenario
def every_console_page_passes_axe_and_is_captured(c):
    b = c.browser
    signed_in(c)
    not_yet = []
    problems = []
    for page in PAGES:
        status = b.visit(page.path)
        if page.path not in PAGES_EXPECTED_TO_EXIST:
            if status == 404:
                not_yet.append(page.path)
                continue
            print(f"    {page.path} answered {status} but is not in PAGES_EXPECTED_TO_EXIST: checked anyway; "
                  "add it to the list")
        if status != 200 or b.path() != page.path:
            problems.append(f"{page.path}: status {status} at {b.path()}")
            continue
        missing = [i for i in page.ids + SIGNED_IN_IDS if not b.driver.find_elements("id", i)]
        h1 = b.text("h1") if b.driver.find_elements("css selector", "h1") else None
        if missing or page.text not in b.text("body") or (page.h1 and h1 != page.h1):
            problems.append(f"{page.path}: missing ids {missing}, or text {page.text!r} not on it, "
                            f"or its h1 {h1!r} is not {page.h1!r}")
        b.check_page(page.name, page.shows)
    if not_yet:
        print(f"    NOT BUILT YET (404, allowed: not in PAGES_EXPECTED_TO_EXIST): {', '.join(not_yet)}")
    check(not problems, "\n".join(problems))


@scenario
def every_form_that_posts_carries_a_csrf_token_and_is_403_without_it(c):
    """Each distinct form of the signed-in pages that answer (PAGES), found on the page, not listed here."""
    b = c.browser
    signed_in(c)
    seen, problems = set(), []
    for page in PAGES:
        if b.visit(page.path) != 200:
            continue  # judged by every_console_page_passes_axe_and_is_captured
        for form in b.posting_forms():
            key = (form["action"], tuple(sorted(form["names"])))
            if key in seen:
                continue
            seen.add(key)
            what = f"the form {form['action']} {form['names']} on {page.path}"
            if "csrf_token" not in form["names"]:
                problems.append(f"{what} has no csrf_token")
                continue
            check(b.visit(page.path) == 200, f"GET {page.path}")
            status = b.submit_form_as_is(form["index"], without=("csrf_token",))
            if status != 403:
                problems.append(f"{what}, posted without csrf_token: status {status} at {b.path()}, expected 403")
            if b.visit("/admin/") != 200 or b.path() != "/admin/":
                problems.append(f"{what}, posted without csrf_token, ended the session")
                signed_in(c)
    check(seen, "no form that posts on any page: expected at least Sign out")
    print(f"    {len(seen)} distinct forms, each refused without its token: " +
          ", ".join(f"{action} {list(names)}" for action, names in sorted(seen)))
    check(not problems, "\n    ".join(problems))


@scenario
def a_form_posted_without_its_csrf_token_is_403(c):
    b = c.browser
    # The sign-in form, with the right password: refused for the missing token alone.
    b.clear_cookies()
    check(b.visit("/admin/login/") == 200, "GET /admin/login/")
    status = b.post_form("/admin/login/", {"username": USERNAME, "password": c.password}, without=("csrf_token",))
    check(status == 403, f"sign-in without csrf_token answered {status} at {b.path()}, expected 403")
    check("CSRF token is missing or wrong" in b.text(), f"the 403 page does not say why: {b.text()[:300]}")
    check("eventlog_session" not in b.cookies(), "a session cookie was set by the refused sign-in")
    b.check_page("forbidden", "'Forbidden: the form's CSRF token is missing or wrong' and a Sign in link")
    # The sign-out form of a live session: refused, and the session lives on.
    signed_in(c)
    status = b.post_form("/admin/logout/", without=("csrf_token",))
    check(status == 403, f"sign-out without csrf_token answered {status} at {b.path()}, expected 403")
    check(b.visit("/admin/") == 200 and b.path() == "/admin/",
          f"the session ended after a refused sign-out: {b.path()}")


@scenario
def signing_out_ends_the_session_and_the_old_cookie_no_longer_works(c):
    b = c.browser
    signed_in(c)
    session = b.cookies()["eventlog_session"]
    # The control: the same cookie put back into a fresh jar is a live session, so the last step below means it.
    b.clear_cookies()
    b.set_cookie(session)
    check(b.visit("/admin/") == 200 and b.path() == "/admin/", f"a copied live session cookie did not work: {b.path()}")
    status = b.post_form("/admin/logout/")
    check(status == 200 and b.path() == "/admin/login/", f"sign out led to {b.path()} with status {status}")
    check("eventlog_session" not in b.cookies(), "the browser still holds eventlog_session after signing out")
    check(b.visit("/admin/") == 200 and b.path() == "/admin/login/", f"/admin/ after sign out shows {b.path()}")
    b.set_cookie(session)
    check(b.visit("/admin/") == 200 and b.path() == "/admin/login/",
          f"the signed-out session's cookie still opens /admin/ ({b.path()}): the server did not end it")


@scenario
def the_sign_in_form_works_with_the_keyboard_alone(c):
    b = c.browser
    b.clear_cookies()
    check(b.visit("/admin/login/") == 200, "GET /admin/login/")
    order = []
    for _ in range(4):  # the header holds nothing to focus: the first Tab reaches the username
        b.press(Keys.TAB)
        order.append(b.focused())
        if order[-1]["id"] == "username":
            break
    check(order[-1]["id"] == "username", f"Tab never reached the username field: {order}")
    check(order[-1]["ring"], f"the focused username field shows no focus ring: {order[-1]}")
    b.press(USERNAME, Keys.TAB)
    check(b.focused()["id"] == "password", f"Tab from the username went to {b.focused()}")
    b.press(c.password)
    status = b.press_to_navigate(Keys.ENTER)
    check(status == 200 and b.path() == "/admin/", f"Enter in the password field led to {b.path()} ({status})")
    check(f"Signed in as {USERNAME}" in b.text("body"), "signed in by keyboard, but /admin/ does not say so")
    # Signed in: the first Tab reaches Sign out, Enter presses it.
    b.press(Keys.TAB)
    check(b.focused()["text"] == "Sign out", f"the first Tab on /admin/ focused {b.focused()}, not Sign out")
    status = b.press_to_navigate(Keys.ENTER)
    check(b.path() == "/admin/login/", f"Enter on Sign out led to {b.path()} ({status})")


@scenario
def a_wrong_password_six_times_is_throttled_with_429_said_on_the_page(c):
    b = c.browser
    b.clear_cookies()
    try:
        for attempt in range(1, THROTTLE_AFTER + 1):
            status = b.sign_in(USERNAME, WRONG_PASSWORD)
            check(status == 200, f"wrong password, attempt {attempt}: status {status}")
            check("Please enter the correct username and password" in b.text(),
                  f"attempt {attempt}: the page does not say the password was wrong: {b.text()[:300]}")
            b.check_page("sign-in-wrong-password", "the sign-in form with 'Please enter the correct username and "
                                                   "password. Both are case-sensitive.' above it")
        status = b.sign_in(USERNAME, WRONG_PASSWORD)
        check(status == 429, f"attempt {THROTTLE_AFTER + 1}: status {status}, expected 429")
        check("Too many failed sign-ins" in b.text(), f"the 429 page does not say throttled: {b.text()[:300]}")
        check(b.last_response_headers().get("retry-after") == "900",
              f"429 without Retry-After: 900: {b.last_response_headers()}")
        b.check_page("sign-in-throttled", "the sign-in form with 'Too many failed sign-ins ... Wait 15 minutes'")
        # Throttled means the right password is not even compared.
        status = b.sign_in(USERNAME, c.password)
        check(status == 429 and "eventlog_session" not in b.cookies(),
              f"the right password while throttled: status {status}, cookies {sorted(b.cookies())}")
    finally:
        # Scenarios added after this one may sign in again (the throttle also counts per address: 127.0.0.1).
        c.servers.sql("DELETE FROM eventlog.console_login_failure")


@scenario
def no_request_left_the_loopback(c):
    foreign = c.browser.foreign_requests()
    check(not foreign, "requests to anything but the server under test:\n  " +
          "\n  ".join(f"{r.method} {r.url} (from {r.page})" for r in foreign))
    ours = [r for r in c.browser.requests if r.url.startswith(c.browser.base_url + "/")]
    check(ours, "the request log holds no request to the server: the harness recorded nothing")
    print(f"    {len(ours)} requests, all to {c.browser.base_url} "
          f"({len(c.browser.requests) - len(ours)} that never left the browser not counted: chrome://, data:)")


def main():
    """Starts everything, runs the scenarios, prints the screenshots and removes everything; exit 1 on a failure."""
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source_dir, build_dir = (os.path.realpath(a) for a in sys.argv[1:])
    # ctest's timeout and Ctrl-C: unwind through the finally below, which stops the servers and the browser.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    artifacts = os.path.join(build_dir, "test-artifacts", "browser")
    shutil.rmtree(artifacts, ignore_errors=True)  # screenshots of an older run must not pass for this one's
    os.makedirs(artifacts)
    servers = Servers(source_dir, build_dir)
    browser = None
    failures = 1
    try:
        servers.start()
        password = secrets.token_urlsafe(18)
        servers.create_superuser(USERNAME, password)
        browser = Browser(servers.base_url, servers.dir, artifacts,
                          os.path.join(source_dir, "tests/browser/node_modules/axe-core/axe.min.js"))
        print(f"browser: {browser.driver.capabilities.get('browserVersion')} headless "
              f"({time.monotonic() - started:.1f} s since the start)")
        failures = run_scenarios(Context(servers, browser, password), browser)
        for name, version, passed, violated in browser.axe_runs:
            print(f"axe-core {version} on {name}: {passed} rules passed, {violated} violated")
        if browser.axe_findings:
            print("axe-core, moderate and minor (not failing):\n  " + "\n  ".join(browser.axe_findings))
        index = os.path.join(artifacts, "screenshots.txt")
        with open(index, "w", encoding="utf-8") as f:
            f.writelines(f"{os.path.basename(path)}: {shows}\n" for path, shows in browser.screenshots)
        print(f"screenshots (listed in {index}):")
        for path, shows in browser.screenshots:
            print(f"  {path}: {shows}")
    except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        failures = max(failures, 1)
    finally:
        if browser is not None:
            browser.quit()
        serve_log = servers.serve_tail()
        serve_ending = servers.stop()
        if serve_ending:
            print(f"FAIL: {serve_ending}")
            failures += 1
        if failures:
            print("--- serve log (last lines) ---\n" + serve_log)
    print(f"browser tests: {time.monotonic() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
