"""The console's browser tests' harness: throwaway servers, a headless Chromium, and the checks every page gets.

Used by tests/browser/console_browsertest.py (read that first). What is here:

- `Servers`: PostgreSQL and ClickHouse from scripts/stack.sh on free ports, data under the checkout's
  `.local/test-browser-*` (so `make reset-test-db` finds a leftover), `eventlog migrate`, an administrator made with
  `eventlog createsuperuser --password-stdin`, and `eventlog serve` on a free port. Removed by `stop()`.
- `Browser`: Debian's Chromium through chromedriver (python3-selenium), headless, with every request it makes
  recorded from the performance log. Outside the loopback nothing answers: the proxy is a bound port that never
  listens and every host name but 127.0.0.1 resolves to nothing, so an external request fails and is also seen.
  Helpers: `visit()`, `sign_in()`, `post_form()`, `status_of_last_navigation()`, `check_page()` (axe-core, the
  screenshots at 1280 and 320 px, no horizontal scroll at 320 px).
- `scenario` and `run_scenarios()`: scenarios run in the order they are defined; each failure is reported and the
  others still run; a scenario during which a page's CSP blocked something fails too; the last line is
  "browser: N passed, N failed".

Chromium runs as root in CI, so `--no-sandbox` is passed here, and only here.
"""

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# axe-core impacts that fail the test; "moderate" and "minor" are printed only.
FAILING_IMPACTS = ("serious", "critical")
NARROW_WIDTH = 320
WIDE_WIDTH = 1280
WIDE_HEIGHT = 900

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as missing:  # fail, never skip: the harness is part of `make test`
    sys.exit(f"FAIL: {missing}: install python3-selenium (scripts/install-deps.sh) and run with /usr/bin/python3")


class CheckFailed(AssertionError):
    """A check of a scenario failed; the message says what was expected and what was seen."""


def check(condition, message):
    """Fails the running scenario with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.1):
    """Polls `predicate` until it returns a true value (returned) or `timeout` seconds pass (fails naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout} s")
        time.sleep(interval)


class Servers:
    """PostgreSQL, ClickHouse and `eventlog serve` for one test run, in a folder of their own. Not thread-safe."""

    def __init__(self, source_dir, build_dir):
        self.source_dir = source_dir
        self.binary = os.path.join(build_dir, "eventlog")
        os.makedirs(os.path.join(source_dir, ".local"), exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="test-browser-", dir=os.path.join(source_dir, ".local"))
        self.stack_started = False
        self.serve = None
        self.serve_log = os.path.join(self.dir, "serve.log")
        self.base_url = ""
        self._env = {}
        self._superuser_password = ""
        self._pg_port = 0
        self._clickhouse_url = ""
        self._clickhouse_auth = ""

    def _stack(self, *args, env=None):
        return subprocess.run([os.path.join(self.source_dir, "scripts/stack.sh"), *args], check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env).stdout

    def eventlog(self, *args, stdin=None, timeout=120):
        """Runs `eventlog ARGS...` with serve's environment (DATABASE_URL as the database's owner, CLICKHOUSE_URI)
        to completion; fails the scenario unless it exits 0; returns what it printed (stdout and stderr)."""
        done = subprocess.run([self.binary, *args], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=self._env, cwd=self.dir, timeout=timeout, check=False)
        check(done.returncode == 0, f"eventlog {' '.join(args)} exited {done.returncode}:\n{done.stdout}")
        return done.stdout

    def start(self):
        """Starts both databases, migrates, starts `eventlog serve`; returns when the sign-in page answers."""
        ports = set()
        while len(ports) < 3:
            ports.add(free_port())
        pg_port, ch_port, http_port = sorted(ports)
        self._pg_port = pg_port
        started = time.monotonic()
        self.stack_started = True
        self._stack("start", self.dir, str(pg_port), str(ch_port), env={**os.environ, "EVENTLOG_PG_FSYNC": "off"})
        pg_password = self._stack("secret", self.dir, "PG_PASSWORD")
        ch_password = self._stack("secret", self.dir, "CH_PASSWORD")
        self._superuser_password = self._stack("secret", self.dir, "PG_SUPERUSER_PASSWORD")
        self._clickhouse_url = f"http://127.0.0.1:{ch_port}/"
        self._clickhouse_auth = "Basic " + base64.b64encode(f"eventlog:{ch_password}".encode()).decode()
        print(f"servers: PostgreSQL 127.0.0.1:{pg_port}, ClickHouse 127.0.0.1:{ch_port} in {self.dir} "
              f"({time.monotonic() - started:.1f} s)")
        # Nothing of the caller's configuration: the children run in self.dir (no .env there) with this environment.
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": self.dir,
            "DATABASE_URL": f"postgres://eventlog:{pg_password}@127.0.0.1:{pg_port}/eventlog",
            "CLICKHOUSE_URI": f"http://eventlog:{ch_password}@127.0.0.1:{ch_port}/eventlog",
            "SECRET_KEY": secrets.token_hex(32),
            "HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "ENVIRONMENT": "browser_test",
            "LOG_LEVEL": "info",
        }
        # A sanitizer build's settings (make test-tsan runs this test too) reach serve, so its reports fail the run.
        sanitizers = ("TSAN_OPTIONS", "ASAN_OPTIONS", "UBSAN_OPTIONS")
        self._env.update({k: v for k, v in os.environ.items() if k in sanitizers})
        self.eventlog("migrate")
        with open(self.serve_log, "w", encoding="utf-8") as log:
            self.serve = subprocess.Popen([self.binary, "serve"], env=self._env, cwd=self.dir, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.base_url = f"http://127.0.0.1:{http_port}"

        def answers():
            check(self.serve.poll() is None, f"eventlog serve exited {self.serve.returncode}:\n{self.serve_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/admin/login/", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_until(answers, 30, f"eventlog serve answering on {self.base_url}/admin/login/")
        print(f"eventlog serve: {self.base_url} ({time.monotonic() - started:.1f} s since the stack's start)")

    def create_superuser(self, username, password):
        """`eventlog createsuperuser --username USERNAME --password-stdin`, the password as one line."""
        self.eventlog("createsuperuser", "--username", username, "--password-stdin", stdin=password + "\n")

    def sql(self, statement):
        """Runs one statement as PostgreSQL's superuser (test bookkeeping only, e.g. forgetting failed sign-ins)."""
        env = {**self._env, "PGPASSWORD": self._superuser_password}
        done = subprocess.run(["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                               str(self._pg_port), "-U", "postgres", "-d", "eventlog", "-c", statement],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30,
                              check=False)
        check(done.returncode == 0, f"psql {statement!r}: {done.stdout}")
        return done.stdout

    def clickhouse(self, query):
        """Runs one query on ClickHouse over HTTP as the stack's `eventlog` user (database eventlog); its text."""
        request = urllib.request.Request(self._clickhouse_url + "?database=eventlog", data=query.encode(),
                                         headers={"Authorization": self._clickhouse_auth}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise CheckFailed(f"ClickHouse {query!r}: HTTP {e.code}: {e.read().decode(errors='replace')}") from e

    def api(self, method, path, body=None, token=None):
        """One request to serve's HTTP API (not through the browser): (status, body text). JSON `body` when given."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base_url + path, method=method, headers=headers,
                                         data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def serve_tail(self, lines=40):
        """The last lines of serve's log."""
        try:
            with open(self.serve_log, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        """Stops serve (SIGTERM) and both databases and deletes their folder; safe to call twice.

        Returns what is wrong with serve's ending: "" when it exited 0 on SIGTERM, else its exit status (it died
        during the test, or a sanitizer reported) or that it had to be killed.
        """
        wrong = ""
        if self.serve is not None and self.serve.poll() is None:
            self.serve.terminate()
            try:
                if self.serve.wait(timeout=15) != 0:
                    wrong = f"eventlog serve exited {self.serve.returncode} on SIGTERM"
            except subprocess.TimeoutExpired:
                self.serve.kill()
                self.serve.wait()
                wrong = "eventlog serve was still running 15 s after SIGTERM (killed)"
        elif self.serve is not None:
            wrong = f"eventlog serve exited {self.serve.returncode} during the test"
        self.serve = None
        if self.stack_started:
            subprocess.run([os.path.join(self.source_dir, "scripts/stack.sh"), "remove", self.dir], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.stack_started = False
        shutil.rmtree(self.dir, ignore_errors=True)
        return wrong


@dataclass
class Request:
    """One request the browser made, as the performance log saw it."""

    url: str
    method: str
    page: str  # the document it was made for


@dataclass
class Document:
    """The response of one page load (type Document in the performance log)."""

    url: str
    status: int
    headers: dict = field(default_factory=dict)


def _not_network(request):
    """A "request" that never leaves the browser: of its own user interface (chrome://, chrome-untrusted://, e.g. the
    new tab page it opens first), or of a data: or blob: URL (e.g. the calendar icon Chromium's own stylesheet gives
    an <input type="datetime-local">; a page's own data: URLs are refused by its CSP, which fails the scenario)."""
    return (request.url.startswith(("chrome://", "chrome-untrusted://", "data:", "blob:"))
            or request.page.startswith(("chrome://", "chrome-untrusted://")))


def _gone(element):
    """Whether `element` no longer belongs to the page shown (the page it was on has been replaced).

    Selenium's expected_conditions.staleness_of expects StaleElementReferenceException only; while the old document
    is being torn down chromedriver may instead answer "Node with given id does not belong to the document" (seen once
    in 13 scenarios: a sign-in failed with that traceback), which means the same.
    """
    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        if "does not belong to the document" in str(e) or "No node with given id" in str(e):
            return True
        raise


class Browser:
    """A headless Chromium for one test run. Owns chromedriver and the browser; `quit()` ends both.

    Every request is recorded (`requests`); `foreign_requests()` lists those that did not go to the server under
    test. Every page given to `check_page()` is checked with axe-core and captured into `artifacts`.
    """

    def __init__(self, base_url, work_dir, artifacts_dir, axe_path):
        for path in (CHROMIUM, CHROMEDRIVER):
            check(os.access(path, os.X_OK), f"{path} is missing: install chromium and chromium-driver "
                                            "(scripts/install-deps.sh)")
        check(os.path.isfile(axe_path), f"{axe_path} is missing: run scripts/install-deps.sh (npm ci in tests/browser)")
        with open(axe_path, encoding="utf-8") as f:
            self._axe_source = f.read()
        self.base_url = base_url
        self.artifacts_dir = artifacts_dir
        self.requests = []
        self.failed = {}  # url -> net error text of a request that failed (Network.loadingFailed)
        self._urls = {}  # requestId -> url
        self.documents = []
        self.console_errors = []
        self.screenshots = []  # (path, what a person sees)
        self.axe_findings = []  # non-failing findings, printed at the end
        self.axe_runs = []  # (page name, axe-core version, rules passed, rules violated)
        self.page_problems = []  # found by check_page(); the running scenario fails with them when it ends
        self._checked = set()
        # The proxy for everything but the loopback: a port that is bound and never listens, so connecting fails.
        self._dead_proxy = socket.socket()
        self._dead_proxy.bind(("127.0.0.1", 0))
        proxy = f"127.0.0.1:{self._dead_proxy.getsockname()[1]}"
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--user-data-dir={os.path.join(work_dir, 'chromium-profile')}",
                f"--window-size={WIDE_WIDTH},{WIDE_HEIGHT}", "--force-device-scale-factor=1", "--hide-scrollbars",
                f"--proxy-server=http://{proxy}", "--proxy-bypass-list=127.0.0.1",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
                "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
                "--lang=en-US"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        service = Service(executable_path=CHROMEDRIVER, log_path=os.path.join(work_dir, "chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(20)
        self.driver.set_script_timeout(30)
        self.cdp("Network.enable")

    def cdp(self, method, params=None):
        """One Chrome DevTools Protocol command on the current page."""
        return self.driver.execute_cdp_cmd(method, params or {})

    def quit(self):
        """Ends the browser and chromedriver."""
        try:
            self.driver.quit()
        finally:
            self._dead_proxy.close()

    # --- what the browser did ------------------------------------------------------------------------------------

    def drain_log(self):
        """Moves the performance log's new entries into `requests` / `documents`, and console errors."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            method, params = message.get("method"), message.get("params", {})
            if method == "Network.requestWillBeSent":
                request = params.get("request", {})
                self.requests.append(Request(request.get("url", ""), request.get("method", ""),
                                             params.get("documentURL", "")))
                self._urls[params.get("requestId")] = request.get("url", "")
            elif method == "Network.loadingFailed":
                url = self._urls.get(params.get("requestId"), "")
                self.failed[url] = params.get("errorText", "")
            elif method == "Network.responseReceived" and params.get("type") == "Document":
                response = params.get("response", {})
                self.documents.append(Document(response.get("url", ""), int(response.get("status", 0)),
                                               {k.lower(): v for k, v in response.get("headers", {}).items()}))
        for entry in self.driver.get_log("browser"):
            if entry.get("level") == "SEVERE":
                self.console_errors.append(entry.get("message", ""))

    def take_csp_violations(self):
        """The console's messages of the Content-Security-Policy blocking something since the last call, once each.

        Any page's, checked with check_page() or not: a page whose CSP blocks what it asks for is broken.
        """
        self.drain_log()
        csp = [m for m in self.console_errors if "Content Security Policy" in m]
        self.console_errors = [m for m in self.console_errors if m not in csp]
        return list(dict.fromkeys(csp))

    def foreign_requests(self):
        """Requests to anything but the server under test (scheme, host and port).

        Not counted: what never leaves the browser (`_not_network`).
        """
        self.drain_log()
        return [r for r in self.requests if not r.url.startswith(self.base_url + "/") and not _not_network(r)]

    def status_of_last_navigation(self):
        """The HTTP status of the page now shown, after redirects (a 303's target: its own status).

        Read twice and compared: from the navigation timing API in the page, and from the performance log's last
        document response.
        """
        self.drain_log()
        timing = self.driver.execute_script(
            "const e = performance.getEntriesByType('navigation')[0]; return e ? e.responseStatus : null;")
        check(self.documents, "no page was loaded")
        logged = self.documents[-1]
        check(timing == logged.status,
              f"status of {self.driver.current_url}: navigation timing says {timing}, the network log says "
              f"{logged.status} ({logged.url})")
        return logged.status

    def last_response_headers(self):
        """The response headers of the page now shown (lower-case names), from the performance log."""
        self.drain_log()
        check(self.documents, "no page was loaded")
        return self.documents[-1].headers

    # --- moving around ---------------------------------------------------------------------------------------------

    def path(self):
        """The path (and query) of the page now shown."""
        url = self.driver.current_url
        return url[len(self.base_url):] if url.startswith(self.base_url) else url

    def visit(self, path):
        """Loads `path` of the server under test; returns its status (`status_of_last_navigation()`)."""
        self.driver.get(self.base_url + path)
        return self.status_of_last_navigation()

    def _navigating(self, action):
        """Runs `action` (a click, a key press) and waits until the next page has loaded."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        action()
        try:
            WebDriverWait(self.driver, 15).until(lambda d: _gone(old))
            WebDriverWait(self.driver, 15).until(
                lambda d: d.execute_script("return document.readyState") == "complete")
        except TimeoutException as e:
            raise CheckFailed(f"no new page within 15 s after a submit on {self.path()}") from e
        return self.status_of_last_navigation()

    def text(self, css="main"):
        """The visible text of the first element matching `css`."""
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def clear_cookies(self):
        """Forgets every cookie (a new browser session, as far as the server can tell)."""
        self.cdp("Network.clearBrowserCookies")

    def cookies(self):
        """The browser's cookies for the console's pages, by name, as its cookie store has them (CDP)."""
        found = self.cdp("Network.getCookies", {"urls": [self.base_url + "/admin/"]})["cookies"]
        return {c["name"]: c for c in found}

    def set_cookie(self, cookie):
        """Puts a cookie (as `cookies()` returned it) back into the store, flags and all."""
        params = {k: cookie[k] for k in ("name", "value", "path", "httpOnly", "secure", "sameSite") if k in cookie}
        params["url"] = self.base_url + "/admin/"
        check(self.cdp("Network.setCookie", params).get("success", True), f"could not set cookie {cookie['name']}")

    def post_form(self, action, fields=None, without=(), button=None, index=0):
        """Submits the page's form whose action is `action`, as a person would, and returns the status.

        `fields`: name -> text typed into that input (cleared first). `without`: names of inputs removed from the
        form before submitting (e.g. ("csrf_token",)), by a script run from the driver. `button`: the CSS selector
        of the button to press, by default the form's first submit button. `index`: which of the forms with that
        action (a list with a form per row), in document order.
        """
        forms = self.driver.find_elements(By.CSS_SELECTOR, f'form[action="{action}"]')
        check(len(forms) > index, f"{self.path()} has {len(forms)} forms with action {action}, wanted #{index}")
        form = forms[index]
        for name, value in (fields or {}).items():
            element = form.find_element(By.NAME, name)
            element.clear()
            element.send_keys(value)
        self._remove_inputs(form, without)
        submit = form.find_element(By.CSS_SELECTOR, button or 'button:not([type]), [type="submit"]')
        return self._navigating(submit.click)

    def click(self, element_id, inside=""):
        """Clicks the element with id `element_id` (a link or a button, as a person does), or the first element
        matching the CSS selector `inside` within it, and waits for the page it leads to; returns its status."""
        selector = f'[id="{element_id}"] {inside}'.strip()
        found = self.driver.find_elements(By.CSS_SELECTOR, selector)
        check(found, f"{self.path()} has no element {selector}")
        return self._navigating(found[0].click)

    def anchor(self, element_id):
        """The visible text of the element with id `element_id` ("Page anchors for tests"), or None without one."""
        found = self.driver.find_elements(By.ID, element_id)
        return found[0].text if found else None

    def _remove_inputs(self, form, names):
        for name in names:
            removed = self.driver.execute_script(
                "const inputs = arguments[0].querySelectorAll('[name=\"' + arguments[1] + '\"]');"
                "inputs.forEach(e => e.remove()); return inputs.length;", form, name)
            check(removed > 0, f"the form {form.get_attribute('action')} on {self.path()} has no input named {name}")

    def posting_forms(self):
        """The page's forms with method post, in document order: [{index, action, names}] (index in document.forms)."""
        return self.driver.execute_script(
            "return [...document.forms].map((f, i) => ({index: i, action: f.getAttribute('action') || '',"
            "    method: (f.getAttribute('method') || 'get').toLowerCase(),"
            "    names: [...f.elements].map(e => e.name).filter(n => n)})).filter(f => f.method === 'post');")

    def submit_form_as_is(self, index, without=()):
        """Submits document.forms[index] by script, without filling anything in, and returns the status.

        form.submit() skips the browser's own validation (required fields left empty still go): for checking that
        the server refuses a form, e.g. without its CSRF token, whatever the form holds.
        """
        form = self.driver.execute_script("return document.forms[arguments[0]];", index)
        self._remove_inputs(form, without)
        return self._navigating(lambda: self.driver.execute_script("arguments[0].submit();", form))

    def sign_in(self, username, password):
        """Signs in through the form at /admin/login/; returns the status of the page it leads to."""
        check(self.visit("/admin/login/") == 200, f"GET /admin/login/ answered {self.status_of_last_navigation()}")
        return self.post_form("/admin/login/", {"username": username, "password": password})

    def press(self, *keys):
        """Presses keys on whatever has the focus (a real key event, as a keyboard sends)."""
        ActionChains(self.driver).send_keys(*keys).perform()

    def press_to_navigate(self, *keys):
        """Presses keys that are expected to load another page (Enter on a form); returns its status."""
        return self._navigating(lambda: self.press(*keys))

    def focused(self):
        """A short description of the focused element: tag#id[name] and whether it shows a focus ring."""
        return self.driver.execute_script(
            "const e = document.activeElement; if (!e) return null;"
            "const s = getComputedStyle(e);"
            "return {tag: e.tagName.toLowerCase(), id: e.id, name: e.getAttribute('name') || '',"
            "        text: (e.innerText || e.value || '').trim(), type: e.getAttribute('type') || '',"
            "        ring: e.matches(':focus-visible') && s.outlineStyle !== 'none' && s.outlineWidth !== '0px'};")

    # --- the checks every page gets --------------------------------------------------------------------------------

    def check_page(self, name, shows):
        """axe-core, screenshots at 1280 and 320 px and no horizontal scroll at 320 px, for the page now shown.

        `name` names the screenshots (build/test-artifacts/browser/NAME-1280.png, NAME-320.png); `shows` says in
        a few words what a person sees on them. A page already checked under `name` is not checked again. What it
        finds fails the running scenario when that ends, so the scenario's own checks still run (a page with an
        axe violation must not hide a broken 429).
        """
        if name in self._checked:
            return
        self._checked.add(name)
        problems = self._axe(name)
        self._screenshot(name, WIDE_WIDTH, shows)
        problems += self._narrow(name, shows)
        if problems:
            self.page_problems.append(f"page {name} ({self.path()}):\n      " + "\n      ".join(problems))

    def _axe(self, name):
        """Runs axe-core on the page; returns the serious and critical violations as text, keeps the others."""
        # A script run by the driver is not the page's own: the page's CSP (no script at all) does not apply to it.
        if not self.driver.execute_script("return typeof window.axe === 'object';"):
            self.driver.execute_script(self._axe_source + "\n;window.axe = axe;")
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            "   .then(r => done(JSON.stringify({violations: r.violations, passed: r.passes.length,"
            "                                   version: r.testEngine.version})))"
            "   .catch(e => done(JSON.stringify({error: String(e)})));")
        result = json.loads(result)
        check("error" not in result, f"axe-core failed on {name}: {result.get('error')}")
        # A run that passed no rule looked at nothing (an empty document, a script that did not load).
        check(result["passed"] > 0, f"axe-core passed no rule on {name}: it checked nothing")
        self.axe_runs.append((name, result["version"], result["passed"], len(result["violations"])))
        problems = []
        for v in result["violations"]:
            nodes = "; ".join(" ".join(map(str, n.get("target", []))) for n in v.get("nodes", []))
            line = f"axe {v.get('impact')}: {v['id']}: {v.get('help')} [{nodes}] ({v.get('helpUrl')})"
            if v.get("impact") in FAILING_IMPACTS:
                details = "\n        ".join(n.get("failureSummary", "").replace("\n", " ")
                                           for n in v.get("nodes", []))
                problems.append(f"{line}\n        {details}")
            else:
                self.axe_findings.append(f"{name}: {line}")
        return problems

    def _screenshot(self, name, width, shows):
        """Captures the whole page (not only the viewport) into the artifacts folder."""
        metrics = self.cdp("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = max(int(size["height"]), 1)
        shot = self.cdp("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": max(int(size["width"]), width), "height": height, "scale": 1}})
        path = os.path.join(self.artifacts_dir, f"{name}-{width}.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        self.screenshots.append((path, f"{shows} ({width} px wide)"))

    def _narrow(self, name, shows):
        """The page in a 320 px wide phone viewport: no horizontal scroll; a screenshot."""
        self.cdp("Emulation.setDeviceMetricsOverride",
                 {"width": NARROW_WIDTH, "height": 640, "deviceScaleFactor": 1, "mobile": True})
        try:
            widths = self.driver.execute_script(
                "const e = document.scrollingElement;"
                "return {scroll: e.scrollWidth, client: e.clientWidth, inner: window.innerWidth};")
            problems = []
            if widths["scroll"] > NARROW_WIDTH or widths["inner"] > NARROW_WIDTH:
                wide = self.driver.execute_script(
                    "return [...document.querySelectorAll('body *')]"
                    "  .filter(e => e.getBoundingClientRect().right > arguments[0])"
                    "  .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')"
                    "                       + (e.className ? '.' + e.className : ''));", NARROW_WIDTH)
                problems.append(f"scrolls sideways at {NARROW_WIDTH} px: scrollWidth {widths['scroll']}, "
                                f"innerWidth {widths['inner']}; wider than the screen: {', '.join(wide)}")
            self._screenshot(name, NARROW_WIDTH, shows)
            return problems
        finally:
            self.cdp("Emulation.clearDeviceMetricsOverride")

    def failure_screenshot(self, scenario_name):
        """What the browser showed when a scenario failed (best effort): the path, or why there is none."""
        try:
            path = os.path.join(self.artifacts_dir, f"FAILED-{scenario_name}.png")
            self.driver.save_screenshot(path)
            return path
        except Exception as e:  # pylint: disable=broad-except
            return f"no screenshot ({e})"


SCENARIOS = []


def scenario(function):
    """Registers a scenario; scenarios run in the order they are defined. Its name is a sentence."""
    SCENARIOS.append(function)
    return function


def run_scenarios(context, browser):
    """Runs every registered scenario with `context`; returns the number that failed."""
    failed = []
    for function in SCENARIOS:
        name = function.__name__
        started = time.monotonic()
        print(f"--- {name.replace('_', ' ')}", flush=True)
        browser.page_problems = []
        details = []
        try:
            function(context)
        except Exception as e:  # pylint: disable=broad-except  (a failure of any kind fails this scenario only)
            details.append(str(e) if isinstance(e, CheckFailed) else traceback.format_exc())
            details.append(f"the browser showed: {browser.failure_screenshot(name)}")
        details = browser.page_problems + [f"the page's Content-Security-Policy blocked something: {m}"
                                            for m in browser.take_csp_violations()] + details
        if details:
            failed.append(name)
            print("    FAILED: " + "\n    ".join(details), flush=True)
        else:
            print(f"    ok ({time.monotonic() - started:.1f} s)", flush=True)
    passed = len(SCENARIOS) - len(failed)
    if failed:
        print("failed scenarios: " + ", ".join(failed))
    print(f"browser: {passed} passed, {len(failed)} failed", flush=True)
    return len(failed)
