"""The first page (``README.txt``) and the checking instructions (``VERIFY.md``) of a case bundle."""

from __future__ import annotations

from typing import Any

_WARNING = """\
WARNING: this bundle may identify a victim. The messages in it are the exact notices
sent to the platform (with the reported URLs, the explanations and the legal basis)
and the answers received, decrypted. Keep it as you would the case file itself.
"""


def readme_text(summary: dict[str, Any]) -> str:
    messages = summary["messages"]
    kept = [m for m in messages if m["path"] is not None]
    gone = [m for m in messages if m["path"] is None]
    lines = [
        "EVIDENCE BUNDLE (notifier evidence export)",
        "",
        _WARNING,
        f"Made at (business time, UTC): {summary['created_at']}",
        f"Notices: {', '.join(summary['notices']) or '(none)'}",
        f"Requests: {', '.join(summary['requests']) or '(none)'}",
        f"Ledger head when made: {summary['head']} (entry {summary['head_seq']})",
        "",
        "Contents",
        "--------",
        "README.txt            this page",
        "VERIFY.md             how to check this bundle with sha256sum and the published head hash",
        "manifest.json         every file with its SHA-256, the head hash, the ids, the messages",
        "ledger/entries.jsonl  every ledger entry from the first one about this case up to the head,",
        '                      one JSON object a line; "involved": true marks the entries about this',
        "                      case. The others belong to other cases: they are here, without their",
        "                      messages, only because each entry's hash covers its content and the",
        "                      hash of the entry before it, so the chain cannot be recomputed without",
        "                      them.",
        "history.json          each notice's attempts (channel, outcome, the relay's or server's answer)",
        "                      and every recorded change of state, acknowledgement, receipt and staff action",
        "sla.json              each request's delivery, acknowledgement and removal times, its bounds,",
        "                      the time a clarification paused its removal clock, within or breached,",
        "                      and the rules applied",
        f"messages/             {len(kept)} message(s) exactly as sent or received: .eml for emails (sent:",
        "                      the bytes handed to the relay; received: as they arrived), .body for API",
        "                      requests and answers, callbacks, queue messages and dead letters,",
        "                      .json for another copy of a request under its id, portal files as written",
    ]
    if gone:
        lines += [
            "",
            f"{len(gone)} message(s) of this case are no longer kept (purged past the retention period,",
            "or recorded without a key): their SHA-256 is in their ledger entry, their bytes are not here.",
        ]
    return "\n".join(lines) + "\n"


def verify_text(summary: dict[str, Any]) -> str:
    return f"""\
# Checking this bundle

You need `sha256sum` (or any SHA-256 tool), and the ledger head hash the authority published or
sent you. This bundle names head `{summary["head"]}` (entry {summary["head_seq"]}).

## 1. The files are the ones listed

`manifest.json` lists every other file with its SHA-256. For each one:

    sha256sum history.json sla.json README.txt VERIFY.md ledger/entries.jsonl messages/*

and compare with `files` in `manifest.json`. (With `jq`: `jq -r '.files[] | "\\(.sha256)  \\(.path)"'
manifest.json | sha256sum -c`.) The manifest itself is not signed: what pins the content is the head,
below.

## 2. The entries recompute to the published head

Each line of `ledger/entries.jsonl` is one entry. Its hash is the SHA-256 of this UTF-8 text, a JSON
array without spaces:

    [seq,"at","kind","notice_id" or null,["request ids"...],"payload_sha256" or null,"meta","prev_hash"]

where `meta` is the entry's `meta` string as it stands (a JSON text, itself written as a JSON string).
With `jq`, this prints, for each line, the hash worked out, then the `entry_hash` and `prev_hash` the
line claims:

    fields='[.seq,.at,.kind,.notice_id,.request_ids,.payload_sha256,.meta,.prev_hash]'
    while IFS= read -r line; do
      printf '%s' "$line" | jq -cj "$fields" | sha256sum
      printf '%s' "$line" | jq -r '"  claims \\(.entry_hash), after \\(.prev_hash)"'
    done < ledger/entries.jsonl

On every line the hash worked out must be the one the line claims. Then check that each
`prev_hash` is the `entry_hash` of the line before it (the first line's is the entry before this
case, or 64 zeros for entry 1), and that the last line's `entry_hash` is the head hash the
authority published. If it is, no entry in the file was changed, removed, added or reordered since
the authority published that head. A head published later than this bundle is checked with the
authority's `notifier evidence verify`, or a later bundle.

## 3. The messages are the ones recorded

Each file under `messages/` is named `<seq>-<kind>.<ext>`: its SHA-256 must be the `payload_sha256`
of entry `<seq>` (also listed under `messages` in `manifest.json`). An email (`.eml`) is byte for
byte what was handed to the relay or received.

## 4. The figures

`sla.json` is worked out from the times in the entries (`state` entries carry every change of state
with `delivered_at`, `acknowledged_at`, `resolved_at`); `rules` says how. Recompute them from the
`state` entries of this case if you need to.

## With notifier

`notifier evidence check FILE.zip [--head HASH]` does steps 1 to 3 without the authority's store and
exits 0, or 1 naming each file or entry that fails.
"""
