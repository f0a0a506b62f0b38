"""The accept path of the outbox (receiver/accepts.py): group commit, lock contention, checkpoints."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from helpers import receiver_app
from helpers.receiver import body, payload

from receiver import accepts

make_receiver, sink = receiver_app.make_receiver, receiver_app.sink  # fixtures
JSON = {"Content-Type": "application/json"}
CONFIG = """
routes: {{critical: [hook]}}
targets: {{hook: {{type: testsink, url: "{url}", rate_limit: "1/1h"}}}}
dedup_window: 0
"""


async def test_a_burst_is_group_committed_and_every_notification_stored(make_receiver, sink):
    rt, client = await make_receiver(CONFIG.format(url=sink.url))
    commits = rt.store.accepts.commits
    resps = await asyncio.gather(*(client.post("/alerts/critical", data=body(payload(f"B{i}")), headers=JSON)
                                   for i in range(50)))
    ids = {(await r.json())["id"] for r in resps}
    assert [r.status for r in resps] == [200] * 50 and len(ids) == 50
    assert rt.store.accepts.commits - commits < 50  # several per transaction
    stored = await rt.store.read(lambda c: {r[0] for r in c.execute("SELECT id FROM notifications")})
    assert ids <= stored


async def test_write_lock_held_elsewhere_delays_the_answer_not_the_event_loop(make_receiver, sink, tmp_path):
    rt, client = await make_receiver(CONFIG.format(url=sink.url))
    other = sqlite3.connect(rt.store.path, isolation_level=None)  # e.g. the writer thread, another process
    other.execute("BEGIN IMMEDIATE")
    try:
        post = asyncio.create_task(client.post("/alerts/critical", data=body(payload("Locked")), headers=JSON))
        await asyncio.sleep(0.3)
        assert not post.done()  # not acknowledged: nothing is committed yet
        t0 = time.monotonic()
        assert (await client.get("/-/healthy")).status == 200  # the loop keeps serving meanwhile
        assert time.monotonic() - t0 < 0.2
    finally:
        other.execute("ROLLBACK")
        other.close()
    resp = await post
    assert resp.status == 200, await resp.text()


async def test_lock_held_too_long_is_503_and_nothing_stored(make_receiver, sink, monkeypatch):
    monkeypatch.setattr(accepts, "BUSY_GIVE_UP", 0.3)
    rt, client = await make_receiver(CONFIG.format(url=sink.url))
    other = sqlite3.connect(rt.store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        resp = await client.post("/alerts/critical", data=body(payload("Stuck")), headers=JSON)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert resp.status == 503
    assert (await resp.json())["errorType"] == "store_unavailable"
    count = await rt.store.read(lambda c: c.execute("SELECT count(*) FROM notifications").fetchone()[0])
    assert count == 0
    # and the same notification is accepted once the lock is free (not treated as a duplicate)
    resp = await client.post("/alerts/critical", data=body(payload("Stuck")), headers=JSON)
    assert resp.status == 200


async def test_wal_is_checkpointed_off_the_loop_and_stays_bounded(make_receiver, sink, monkeypatch):
    monkeypatch.setattr(accepts, "CHECKPOINT_BYTES", 64 * 1024)
    monkeypatch.setattr(accepts, "WAL_SIZE_LIMIT", 128 * 1024)
    rt, client = await make_receiver(CONFIG.format(url=sink.url))
    big = body(payload("Big", n_alerts=40))  # ~15 KB each

    async def client_loop() -> None:  # sustained load: accepts keep coming while checkpoints run
        for _ in range(10):
            resp = await client.post("/alerts/critical", data=big, headers=JSON)
            assert resp.status == 200

    await asyncio.gather(*(client_loop() for _ in range(8)))
    written = 80 * len(big)
    wal = rt.store.path.with_name(rt.store.path.name + "-wal").stat().st_size
    assert wal < written / 3, (wal, written)  # without checkpoints the WAL holds everything written


async def test_a_copy_is_acknowledged_only_after_the_first_is_on_disk(make_receiver, sink, monkeypatch):
    # two AlertManagers of an HA pair post the same notification while the outbox is briefly locked
    monkeypatch.setattr(accepts, "BUSY_GIVE_UP", 0.3)
    rt, client = await make_receiver(CONFIG.format(url=sink.url).replace("dedup_window: 0", "dedup_window: 5m"))
    doc = body(payload("HA"))
    other = sqlite3.connect(rt.store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:  # the first copy fails (503): the second must not have been acknowledged as its duplicate
        first, second = await asyncio.gather(*(client.post("/alerts/critical", data=doc, headers=JSON)
                                               for _ in range(2)))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [first.status, second.status] in ([503, 200], [503, 503])
    if second.status == 200:  # retried as a new notification once the first copy was not stored
        assert (await second.json())["deduplicated"] is False
    # lock released: first copy stored, the second is its duplicate, acknowledged after the commit
    a, b = await asyncio.gather(*(client.post("/alerts/critical", data=body(payload("HA2")), headers=JSON)
                                  for _ in range(2)))
    answers = sorted([await a.json(), await b.json()], key=lambda d: d["deduplicated"])
    assert [d["deduplicated"] for d in answers] == [False, True]
    assert answers[1]["duplicate_of"] == answers[0]["id"]


async def test_big_bodies_are_split_over_several_transactions(make_receiver, sink, monkeypatch):
    monkeypatch.setattr(accepts, "BATCH_BYTES", 20_000)
    rt, client = await make_receiver(CONFIG.format(url=sink.url))
    big = body(payload("Big", n_alerts=40))  # ~15 KB: one per transaction
    commits = rt.store.accepts.commits
    resps = await asyncio.gather(*(client.post("/alerts/critical", data=big, headers=JSON) for _ in range(20)))
    assert {r.status for r in resps} == {200}
    assert rt.store.accepts.commits - commits == 20
    count = await rt.store.read(lambda c: c.execute("SELECT count(*) FROM notifications").fetchone()[0])
    assert count == 20
