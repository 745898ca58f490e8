#!/usr/bin/env python3
"""Indexes the record headers in a tansu SQLite store: tansu_index.py PATH/TO/tansu.db

tansu 0.6 keeps every record's Kafka headers in a `header` table with no index, and a fetch
looks up each record's headers in it: every fetched record scans every header ever stored.
Each Tandem event carries one header (`traceparent`), so a broker holding 30,000 events spent
its whole core on a few fetches and the bridge stalled (a consumer's fetch and its ListOffsets
timed out behind it). With this index the lookups are a B-tree search.

Run it whenever tansu has started on a store (its schema exists once its port is open); it
is idempotent and takes milliseconds on a fresh store. tansu's connections see the new
index at their next statement (SQLite re-prepares on a schema change).
"""
import sqlite3
import sys
import time

INDEX = "CREATE INDEX IF NOT EXISTS tandem_header_record ON header (topition, offset_id)"


def main(path: str) -> int:
    deadline = time.monotonic() + 30
    while True:
        try:
            with sqlite3.connect(path, timeout=10) as db:
                tables = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'header'"
                ).fetchall()
                if tables:
                    db.execute(INDEX)
                    return 0
        except sqlite3.OperationalError as error:  # locked by tansu: try again
            last = error
        else:
            last = "tansu has not created its header table"
        if time.monotonic() > deadline:
            print(f"tansu_index.py: {path}: {last}", file=sys.stderr)
            return 1
        time.sleep(0.1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
