"""Reads a Sentry envelope with the envelope parser of Sentry's Python SDK (Debian's python3-sentry-sdk) and
prints what it found, one `path=value` line per field, for tests/unit/observability_sentry_test.cpp to check.

    /usr/bin/python3 sentry_check.py ENVELOPE_FILE [DSN URL AUTH_HEADER]

With a DSN, the SDK's own DSN parser gives the envelope URL and the X-Sentry-Auth fields, and the script prints
whether URL and AUTH_HEADER (as eventlog built them) agree with it. Exit status 1 when the envelope does not parse
or holds no event.
"""
import json
import sys

from sentry_sdk.envelope import Envelope
from sentry_sdk.utils import Dsn


def flatten(prefix, value, out):
    if isinstance(value, dict):
        for key in sorted(value):
            flatten(f"{prefix}.{key}" if prefix else key, value[key], out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            flatten(f"{prefix}[{i}]", item, out)
    else:
        out.append(f"{prefix}={json.dumps(value, ensure_ascii=False)}")


def auth_fields(header):
    if not header.startswith("Sentry "):
        return None
    fields = {}
    for part in header[len("Sentry "):].split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    return fields


def main():
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    envelope = Envelope.deserialize(raw)
    event = envelope.get_event()
    if event is None:
        print("sentry_check: the envelope holds no event", file=sys.stderr)
        return 1
    lines = []
    flatten("envelope", envelope.headers, lines)
    flatten("items", [item.headers for item in envelope.items], lines)
    lines.append(f"items.count={len(envelope.items)}")
    # The bytes of the first item's payload as sent: after the envelope header line and the item header line, up
    # to the newline that ends the item (the parser itself re-encodes the JSON it read, so it cannot tell).
    after_headers = raw.split(b"\n", 2)[2]
    raw_payload = after_headers[:-1] if after_headers.endswith(b"\n") else after_headers
    lines.append(f"items[0].raw_payload_bytes={len(raw_payload)}")
    flatten("event", event, lines)
    if len(sys.argv) > 4:
        dsn = Dsn(sys.argv[2])
        auth = dsn.to_auth("eventlog/x")
        lines.append(f"reference.envelope_url={json.dumps(auth.get_api_url('envelope'))}")
        lines.append(f"check.url_matches={json.dumps(auth.get_api_url('envelope') == sys.argv[3])}")
        ours = auth_fields(sys.argv[4]) or {}
        theirs = auth_fields(auth.to_header()) or {}
        same = ours.get("sentry_key") == theirs.get("sentry_key") and ours.get("sentry_version") == str(
            theirs.get("sentry_version"))
        lines.append(f"check.auth_matches={json.dumps(same)}")
        lines.append(f"check.auth_client={json.dumps(ours.get('sentry_client'))}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
