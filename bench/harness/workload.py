"""Realistic events, generated inside PostgreSQL so that loading a backlog costs no client CPU or network.

Six event types with contexts of 240-360 bytes (about 300 on average), varied per row: numbers, hashes,
nested objects and arrays, escaped text. Rows are written with a multi-row INSERT ... SELECT, which is what a
COPY of the same rows does on the server (one statement, one trigger firing).
"""
import threading
import time

TYPES = ["user_created", "order_placed", "payment_captured", "page_viewed", "session_started", "permission_changed"]

# One format() per type; arguments come from the row number g and its md5 h.
_CONTEXTS = [
    ("""'{"user_id":%s,"email":"user.%s@example.com","first_name":"Alexandra","last_name":"Petrovich-Smith",'
       '"plan":"%s","source":"signup-form","ip":"203.0.113.%s","locale":"de-DE","user_agent":"Mozilla/5.0 '
       '(X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.%s Safari/537.36"}'""",
     "g, g, (ARRAY['free','team','enterprise'])[1 + g % 3], g % 254, g % 1000"),
    ("""'{"order_id":%s,"customer_id":%s,"currency":"EUR","total":"%s.%s","items":[{"sku":"SKU-%s","qty":%s,'
       '"price":"19.90"},{"sku":"SKU-%s","qty":1,"price":"83.65"}],"shipping":{"country":"DE","city":"Berlin",'
       '"method":"express"},"note":"leave at the door, \\"ring twice\\"","coupon":null,"channel":"web"}'""",
     "g, g % 100000, g % 500, lpad((g % 100)::text, 2, '0'), substr(h, 1, 6), 1 + g % 5, substr(h, 7, 6)"),
    ("""'{"payment_id":"pay_%s","order_id":%s,"amount":"%s.00","currency":"USD","provider":"stripe",'
       '"card":{"brand":"visa","last4":"%s","exp":"12/29"},"risk_score":0.%s,"three_d_secure":true,'
       '"idempotency_key":"%s","captured_by":"payments-worker-3"}'""",
     "substr(h, 1, 16), g, g % 1000, lpad((g % 10000)::text, 4, '0'), g % 100, h"),
    ("""'{"session_id":"%s","user_id":%s,"path":"/products/%s","referrer":"https://www.google.com/search?q=%s",'
       '"utm":{"source":"newsletter","medium":"email","campaign":"autumn-sale"},"viewport":"1920x1080",'
       '"duration_ms":%s,"scroll_depth":0.%s}'""",
     "h, g % 50000, substr(h, 1, 8), substr(h, 9, 10), g % 30000, g % 100"),
    ("""'{"session_id":"%s","user_id":%s,"ip":"198.51.100.%s","device":{"os":"Android 14","model":"Pixel 8",'
       '"app_version":"5.12.%s"},"geo":{"country":"FR","city":"Lyon","tz":"Europe/Paris"},"auth":"password+totp",'
       '"remember_me":false,"mfa_methods":["totp","sms"]}'""",
     "h, g % 50000, g % 254, g % 40"),
    ("""'{"actor_id":%s,"target_user_id":%s,"role":"billing-admin","action":"%s","reason":"quarterly access '
       'review, ticket SEC-%s","request_id":"%s","previous_roles":["viewer","support"],"approved_by":%s,'
       '"ip":"192.0.2.%s"}'""",
     "g % 500, g % 50000, (ARRAY['grant','revoke'])[1 + g % 2], g % 10000, h, g % 50, g % 254"),
]


def _context_case() -> str:
    arms = "\n".join(f"WHEN {i} THEN format({fmt}, {args})" for i, (fmt, args) in enumerate(_CONTEXTS))
    return f"CASE g % {len(_CONTEXTS)}\n{arms}\nEND"


def rows_sql(lo: int, hi: int) -> str:
    """SELECT of rows lo..hi: (event_id, event_type, event_context text, trace_id)."""
    types = ",".join(f"'{t}'" for t in TYPES)
    return (f"SELECT gen_random_uuid() AS event_id, (ARRAY[{types}])[1 + g % {len(TYPES)}] AS event_type, "
            f"{_context_case()} AS event_context, CASE WHEN g % 4 = 0 THEN md5(h) ELSE '' END AS trace_id "
            f"FROM generate_series({int(lo)}, {int(hi)}) AS g, LATERAL (SELECT md5(g::text) AS h) AS x")


def insert_sql(table: str, lo: int, hi: int) -> str:
    return (f"INSERT INTO {table} (event_id, event_type, event_context, trace_id) "
            f"SELECT event_id, event_type, event_context::json, trace_id FROM ({rows_sql(lo, hi)}) AS r")


def emit_sql(lo: int, hi: int) -> str:
    """The producer API, many events in one statement: one eventlog.emit() call per row."""
    return (f"SELECT count(eventlog.emit(event_type, event_context::json, trace_id => trace_id)) "
            f"FROM ({rows_sql(lo, hi)}) AS r")


class Sequence:
    """Hands out disjoint row-number ranges (so contexts vary across loads); thread-safe."""

    def __init__(self):
        self._next = 1
        self._lock = threading.Lock()

    def take(self, n: int):
        with self._lock:
            lo = self._next
            self._next += n
        return lo, lo + n - 1


def load(servers, table: str, n: int, seq: Sequence, sessions: int = 2, chunk: int = 250_000) -> float:
    """Inserts n events into `table` over `sessions` parallel connections; returns the seconds taken."""
    chunks = []
    left = n
    while left > 0:
        k = min(chunk, left)
        chunks.append(seq.take(k))
        left -= k
    lock = threading.Lock()
    errors = []

    def worker():
        conn = servers.pg(admin=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SET synchronous_commit = off")
                while True:
                    with lock:
                        if not chunks or errors:
                            return
                        lo, hi = chunks.pop()
                    cur.execute(insert_sql(table, lo, hi))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(max(1, min(sessions, len(chunks))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - t0
