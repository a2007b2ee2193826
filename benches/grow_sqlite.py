#!/usr/bin/env python3
"""Grows an openport SQLite database to a given number of paid payments, for benchmarks of a large
database (`openport-bench --db sqlite:FILE`; see benches/README.md, "A large SQLite database").

    python3 benches/grow_sqlite.py FILE PAYMENTS

FILE must be a database a gateway has already used (its schema migrated, the demo merchant made,
at least one paid key-in payment): every new row is a copy of its newest paid payment and that
payment's attempt, with new random `imp_uid`/`order_no`/`merchant_uid`/`tno` (as random as the
gateway's own, so that the indexes grow as they would in production) and timestamps of the last 81 days but the last one. Only
the Python standard library is needed. Stop the gateway first.
"""
import random
import sqlite3
import sys
import time

BATCH = 20_000


def columns(db, table):
    # Generated columns (hidden 2 or 3 in table_xinfo) cannot be inserted.
    return [row[1] for row in db.execute(f"PRAGMA table_xinfo({table})") if row[6] == 0 and row[1] != "id"]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, target = sys.argv[1], int(sys.argv[2])
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    pay_cols = columns(db, "payments")
    att_cols = columns(db, "pg_attempts")
    db.row_factory = sqlite3.Row
    payment = db.execute(
        "SELECT * FROM payments WHERE status = 'paid' AND pay_method = 'card' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if payment is None:
        sys.exit("no paid payment to copy: run a short benchmark on this file first")
    attempt = db.execute(
        "SELECT * FROM pg_attempts WHERE payment_id = ? ORDER BY id LIMIT 1", (payment["id"],)
    ).fetchone()
    have = db.execute("SELECT count(*) FROM payments").fetchone()[0]
    db.row_factory = None
    insert_payment = (
        f"INSERT OR IGNORE INTO payments ({', '.join(pay_cols)}) "
        f"VALUES ({', '.join('?' for _ in pay_cols)}) RETURNING id, order_no"
    )
    insert_attempt = (
        f"INSERT INTO pg_attempts ({', '.join(att_cols)}) VALUES ({', '.join('?' for _ in att_cols)})"
    )
    rng = random.Random(1)
    now = int(time.time())
    started = time.monotonic()
    while have < target:
        db.execute("BEGIN")
        for _ in range(min(BATCH, target - have)):
            digits = f"{rng.randrange(10**12):012d}"
            # Within the last 81 days and at least a day old: inside the 90 days that
            # `GET /payments/status/paid` counts by default (the harness reconciles with it), and
            # none crosses that edge during a run, which would change the count.
            at = now - 86_400 - rng.randrange(80 * 86_400)
            values = dict(payment)
            values.update(
                imp_uid=f"imp_{digits}",
                order_no=f"OP{digits}",
                merchant_uid=f"grown-{digits}-{rng.randrange(10**9)}",
                pg_tid=f"{rng.randrange(10**14):014d}",
                started_at=at,
                paid_at=at,
                updated_at=at,
            )
            row = db.execute(insert_payment, [values[c] for c in pay_cols]).fetchone()
            if row is None:
                continue  # an imp_uid drawn twice: draw again
            values = dict(attempt)
            values.update(
                payment_id=row[0],
                order_no=row[1],
                tno=f"{rng.randrange(10**14):014d}",
                created_at=at,
                updated_at=at,
                next_check_at=at,
                lease_until=at,
            )
            db.execute(insert_attempt, [values[c] for c in att_cols])
            have += 1
        db.execute("COMMIT")
        print(f"{have} payments ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("ANALYZE")


if __name__ == "__main__":
    main()
