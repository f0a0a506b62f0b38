"""Delivery engine: retries with backoff, dead letters, rate limits and digests, pauses, restarts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from helpers import receiver_app
from helpers.receiver import REGISTRY, body, fake_compose, fake_templates, payload, write_config
from prometheus_client import generate_latest

from receiver.ingest import prepare
from receiver.runtime import Runtime, load

make_receiver, sink = receiver_app.make_receiver, receiver_app.sink  # fixtures
JSON = {"Content-Type": "application/json"}


def config(url: str, target_extra: str = "", extra: str = "", type_: str = "testsink") -> str:
    return f"""
routes:
  critical: [hook]
targets:
  hook: {{type: {type_}, url: "{url}", timeout: 1{target_extra}}}
retry_backoff: {{initial: 0.05, max: 0.2}}
{extra}
"""


def offline_runtime(tmp_path, text: str) -> Runtime:
    """A runtime not started yet (tests fill the outbox first)."""
    path = write_config(tmp_path, text)
    return Runtime(path, tmp_path / "data", load(path, registry=REGISTRY, templates_factory=fake_templates),
                   registry=REGISTRY, compose=fake_compose, templates_factory=fake_templates, synchronous="NORMAL")


def metrics_text(rt: Runtime) -> str:
    return generate_latest(rt.metrics.registry).decode()


async def post(client, doc, route="critical"):
    resp = await client.post(f"/alerts/{route}", data=body(doc), headers=JSON)
    data = await resp.json()
    assert resp.status == 200, data
    return data


async def test_5xx_retried_until_the_sink_recovers(make_receiver, sink):
    rt, client = await make_receiver(config(sink.url))
    sink.fail_next(3, status=503)
    doc = await post(client, payload("Flaky"))
    assert await sink.async_wait_for(lambda s: doc["id"] in s.delivered_ids(), 15)
    assert [r.answered for r in sink.requests] == [503, 503, 503, 200]
    assert {r.idempotency_key() for r in sink.requests} == {doc["id"]}  # same key on every attempt
    text = await (await client.get("/metrics")).text()
    assert 'alert_receiver_delivery_retries_total{channel="testsink",target="hook"} 3.0' in text
    assert 'alert_receiver_deliveries_total{channel="testsink",outcome="delivered",target="hook"} 1.0' in text
    assert 'alert_receiver_queue_jobs{target="hook"} 0.0' in text


async def test_timeout_retried(make_receiver, sink):
    rt, client = await make_receiver(config(sink.url))
    sink.fail_next(1, status=200, delay=3)  # answers too late: the 1 s timeout fires
    doc = await post(client, payload("Slow"))
    assert await sink.async_wait_for(lambda s: len(s.requests) >= 2 and doc["id"] in s.delivered_ids(), 15)
    rows = await rt.store.recent_notifications(5)
    assert rows[0]["deliveries"][0]["state"] == "delivered"
    assert rows[0]["deliveries"][0]["attempts"] == 2


async def test_permanent_4xx_is_a_dead_letter_with_reason(make_receiver, sink):
    rt, client = await make_receiver(config(sink.url))
    sink.set_default(status=400, body="invalid_payload")
    doc = await post(client, payload("Broken"))
    for _ in range(200):
        dead = await (await client.get("/api/v1/dead-letters")).json()
        if dead["data"]:
            break
        await asyncio.sleep(0.05)
    [row] = dead["data"]
    assert row["notification_id"] == doc["id"] and row["target"] == "hook"
    assert "HTTP 400" in row["reason"] and "invalid_payload" in row["reason"]
    assert len(sink.requests) == 1  # not retried
    text = await (await client.get("/metrics")).text()
    assert 'alert_receiver_dead_letters_total{channel="testsink",target="hook"} 1.0' in text
    assert 'alert_receiver_deliveries_total{channel="testsink",outcome="permanent_failure",target="hook"} 1.0' in text
    # an operator fixes the sink and re-queues the dead letter
    sink.set_default(status=200)
    resp = await client.post("/api/v1/dead-letters/retry")
    assert (await resp.json())["data"]["requeued"] == 1
    assert await sink.async_wait_for(lambda s: doc["id"] in s.delivered_ids(), 10)


async def test_retry_max_age_turns_retryable_into_dead_letter(make_receiver, sink):
    rt, client = await make_receiver(config(sink.url, ", retry_max_age: 0.5"))
    sink.set_default(status=502, body="bad gateway")
    doc = await post(client, payload("Down"))
    for _ in range(200):
        dead = (await (await client.get("/api/v1/dead-letters")).json())["data"]
        if dead:
            break
        await asyncio.sleep(0.05)
    assert dead and dead[0]["notification_id"] == doc["id"]
    assert "retry_max_age" in dead[0]["reason"] and "HTTP 502" in dead[0]["reason"]
    assert len(sink.requests) >= 2


async def test_retry_after_is_honoured(make_receiver, sink):
    rt, client = await make_receiver(config(sink.url))
    sink.fail_next(1, status=429, body="slow down", headers={"Retry-After": "1"})
    await post(client, payload("Throttled"))
    assert await sink.async_wait_for(lambda s: len(s.delivered()) == 1, 10)
    first, second = sink.requests
    assert second.at - first.at >= 0.9  # backoff alone would retry after ≤ 0.05 s


async def test_backlog_beyond_rate_limit_becomes_one_digest(tmp_path, sink):
    # 12 notifications already queued (e.g. the robot was down), 2 messages/hour allowed
    rt = offline_runtime(tmp_path, config(sink.url, ', rate_limit: "2/1h"'))
    rt.store.open()
    ids = []
    for i in range(12):
        n = prepare(body(payload(f"Alert{i}")), None, "critical")
        await rt.store.accept(n, *rt.targets_for(n))
        ids.append(n.id)
    await rt.start()
    try:
        assert await sink.async_wait_for(lambda s: set(s.delivered_ids()) == set(ids), 10)
        delivered = sink.delivered()
        assert len(delivered) == 1 and sorted(delivered[0].notification_ids()) == sorted(ids)
        assert 'alert_receiver_digests_total{channel="testsink",target="hook"} 1.0' in metrics_text(rt)
        await asyncio.sleep(0.1)
        rows = await rt.store.recent_notifications(20)
        assert all(r["deliveries"][0]["state"] == "delivered" and r["deliveries"][0]["digest"] for r in rows)
        # one token left: a new notification goes out alone
        n = prepare(body(payload("Later")), None, "critical")
        await rt.store.accept(n, *rt.targets_for(n))
        rt.engine.wake(["hook"])
        assert await sink.async_wait_for(lambda s: len(s.delivered()) == 2, 10)
        assert sink.delivered()[1].notification_ids() == [n.id]
    finally:
        await rt.stop()


async def _accept(rt: Runtime, name: str) -> str:
    n = prepare(body(payload(name)), None, "critical")
    await rt.store.accept(n, *rt.targets_for(n))
    rt.engine.wake(["hook"])
    return n.id


async def test_digest_waits_until_the_burst_is_over(tmp_path, sink):
    # a backlog beyond the rate limit while AlertManager is still posting: one complete digest after
    # the burst (digest_wait.quiet without new notifications), not a partial one in the middle of it
    rt = offline_runtime(tmp_path, config(sink.url, ', rate_limit: "2/1h"', "digest_wait: {quiet: 500ms, max: 30s}"))
    rt.store.open()
    ids = [await _accept(rt, f"Queued{i}") for i in range(3)]
    await rt.start()
    try:
        for i in range(6):  # one every 0.2 s: the burst goes on for 1.2 s
            await asyncio.sleep(0.2)
            ids.append(await _accept(rt, f"Burst{i}"))
        last = time.time()
        assert await sink.async_wait_for(lambda s: len(s.delivered()) == 1, 10)
        digest = sink.delivered()[0]
        assert sorted(digest.notification_ids()) == sorted(ids)
        assert digest.at >= last + 0.4  # held until the burst had been quiet for ~500 ms
        await asyncio.sleep(0.3)
        assert len(sink.requests) == 1
    finally:
        await rt.stop()


async def test_digest_wait_is_bounded_by_max(tmp_path, sink):
    # notifications never stop coming: the digest still goes out digest_wait.max after the oldest
    rt = offline_runtime(tmp_path, config(sink.url, ', rate_limit: "2/1h"', "digest_wait: {quiet: 1s, max: 1s}"))
    rt.store.open()
    queued = [await _accept(rt, f"Queued{i}") for i in range(3)]
    oldest = time.time()
    await rt.start()
    try:
        for i in range(20):  # 4 s of a notification every 0.2 s
            await asyncio.sleep(0.2)
            await _accept(rt, f"Storm{i}")
            if sink.delivered():
                break
        assert sink.delivered(), "no digest while notifications kept arriving"
        digest = sink.delivered()[0]
        assert set(queued) <= set(digest.notification_ids())
        assert oldest + 0.9 <= digest.at <= oldest + 2.5
    finally:
        await rt.stop()


async def test_within_rate_limit_each_notification_is_its_own_message(make_receiver, sink):
    rt, client = await make_receiver(config(sink.url, ', rate_limit: "100/1s"'))
    ids = []
    for i in range(5):
        ids.append((await post(client, payload(f"A{i}")))["id"])
        await sink.async_wait_for(lambda s, n=i: len(s.delivered()) == n + 1, 5)
    assert [r.notification_ids() for r in sink.delivered()] == [[i] for i in ids]


async def test_pause_stops_the_whole_target(make_receiver, sink):
    rt, client = await make_receiver(config(sink.url, type_="testsink-pause"))
    sink.fail_next(1, status=429, body="send too fast", headers={"Retry-After": "1.5"})
    first = await post(client, payload("One"))
    assert await sink.async_wait_for(lambda s: len(s.requests) == 1, 5)
    second = await post(client, payload("Two"))  # due now, but the target is paused
    await asyncio.sleep(0.8)
    assert len(sink.requests) == 1
    status = (await (await client.get("/api/v1/status")).json())["data"]["queues"]["hook"]
    assert status["pending"] == 2 and status["paused_for_seconds"] > 0
    assert await sink.async_wait_for(lambda s: {first["id"], second["id"]} <= set(s.delivered_ids()), 10)


async def test_send_resolved_false_skips_and_records(make_receiver, sink):
    rt, client = await make_receiver(config(sink.url, ", send_resolved: false"))
    resolved = await post(client, payload("Gone", status="resolved"))
    assert resolved["targets"] == [] and resolved["skipped"] == ["hook"]
    firing = await post(client, payload("Here"))
    assert await sink.async_wait_for(lambda s: firing["id"] in s.delivered_ids(), 5)
    assert resolved["id"] not in sink.delivered_ids()
    rows = {r["id"]: r for r in await rt.store.recent_notifications(5)}
    [job] = rows[resolved["id"]]["deliveries"]
    assert job["state"] == "skipped" and "send_resolved" in job["last_error"]


async def test_pending_jobs_resume_after_restart(tmp_path, sink):
    sink.set_default(status=503)
    rt = offline_runtime(tmp_path, config(sink.url))
    await rt.start()
    n = prepare(body(payload("Persist")), None, "critical")
    targets, skipped = rt.targets_for(n)
    await rt.store.accept(n, targets, skipped)
    rt.engine.wake(targets)
    assert await sink.async_wait_for(lambda s: len(s.requests) >= 1, 5)
    await rt.stop()
    sink.set_default(status=200)
    rt2 = offline_runtime(tmp_path, config(sink.url))
    await rt2.start()
    try:
        assert await sink.async_wait_for(lambda s: n.id in s.delivered_ids(), 10)
    finally:
        await rt2.stop()


async def test_secrets_never_logged_or_shown(make_receiver, caplog):
    caplog.set_level("DEBUG")
    from helpers.procs import free_port

    url = f"http://127.0.0.1:{free_port()}/robot/send?access_token=TOPSECRET42"  # nothing listens there
    rt, client = await make_receiver(config(url, ", retry_max_age: 0.3"))
    await post(client, payload("Unreachable"))
    for _ in range(200):
        dead = (await (await client.get("/api/v1/dead-letters")).json())["data"]
        if dead:
            break
        await asyncio.sleep(0.05)
    assert dead and "connection error" in dead[0]["reason"]
    pages = [await (await client.get(p)).text() for p in ("/api/v1/status", "/", "/api/v1/dead-letters", "/metrics")]
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)  # extra= fields included
    assert "connection error" in logged
    for text in [logged, *pages]:
        assert "TOPSECRET42" not in text


async def test_dedup_survives_a_restart(tmp_path, sink):
    doc = body(payload("Twice", n_alerts=2))
    rt = offline_runtime(tmp_path, config(sink.url))
    await rt.start()
    first = prepare(doc, None, "critical")
    assert not (await rt.store.accept(first, *rt.targets_for(first))).duplicate
    await rt.stop()
    rt2 = offline_runtime(tmp_path, config(sink.url))
    await rt2.start()
    try:
        again = prepare(doc, None, "critical")
        result = await rt2.store.accept(again, *rt2.targets_for(again))
        assert result.duplicate and result.duplicate_of == first.id
    finally:
        await rt2.stop()


async def test_jobs_of_a_removed_target_become_dead_letters_and_can_be_requeued(make_receiver, sink):
    two = """
routes: {{critical: [hook, spare]}}
targets:
  hook: {{type: testsink, url: "{url}"}}
  spare: {{type: testsink, url: "{url}/spare"{limit}}}
"""
    rt, client = await make_receiver(two.format(url=sink.url, limit=', rate_limit: "1/1h"'))
    await post(client, payload("One"))
    late = await post(client, payload("Two"))  # spare's token is spent: its job waits
    assert await sink.async_wait_for(lambda s: len(s.delivered()) == 3, 10)
    Path(rt.config_path).write_text(f'routes: {{critical: [hook]}}\ntargets: {{hook: {{type: testsink, url: "{sink.url}"}}}}\n')
    assert (await client.post("/-/reload")).status == 200
    dead = (await (await client.get("/api/v1/dead-letters")).json())["data"]
    assert [(d["target"], d["notification_id"]) for d in dead] == [("spare", late["id"])]
    assert "'spare' is no longer in the configuration" in dead[0]["reason"]
    # the target is back: re-queue, delivered
    Path(rt.config_path).write_text(two.format(url=sink.url, limit=""))
    assert (await client.post("/-/reload")).status == 200
    assert (await client.post("/api/v1/dead-letters/retry")).status == 200
    assert await sink.async_wait_for(
        lambda s: any(r.path.endswith("/spare") and r.notification_ids() == [late["id"]] for r in s.delivered()), 10)


async def test_prune_keeps_pending_and_recent_dead_letters(tmp_path, sink):
    rt = offline_runtime(tmp_path, config(sink.url))
    rt.store.open()
    try:
        ids = [await _accept(rt, f"P{i}") for i in range(4)]
        now = time.time()

        def age(conn):  # 0: delivered long ago, 1: dead long ago, 2: dead recently, 3: still pending
            conn.execute("UPDATE notifications SET received_at = ?", (now - 40 * 86400,))
            conn.execute("UPDATE jobs SET state = 'delivered' WHERE notification_id = ?", (ids[0],))
            conn.execute("UPDATE jobs SET state = 'dead', updated_at = ? WHERE notification_id = ?", (now - 31 * 86400, ids[1]))
            conn.execute("UPDATE jobs SET state = 'dead', updated_at = ? WHERE notification_id = ?", (now - 86400, ids[2]))

        await rt.store.run(age)
        assert await rt.prune() == 2
        left = await rt.store.read(lambda c: {r[0] for r in c.execute("SELECT id FROM notifications")})
        assert left == {ids[2], ids[3]}
    finally:
        await rt.store.close()
