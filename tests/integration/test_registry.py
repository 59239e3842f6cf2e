"""The registry as a discovery service, on a real broker: leases, heartbeats, stale cards after
kill -9, ``expediter agents``, and the warning ``submit`` gives for a capability nobody serves."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from expediter.dev import Broker
from expediter.messaging import TopicNames, read_registry
from tests.polling import until
from tests.support import cli, create_topics, spawn, terminate

PROBE = Path(__file__).resolve().parents[1] / "agents" / "probe.py"


def _env(kafka: Broker, names: TopicNames, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
        "EXPEDITER_BOOTSTRAP": kafka.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": names.prefix,
        "EXPEDITER_HTTP_PORT": "0",
        **extra,
    }


@pytest.mark.slow
async def test_a_live_worker_renews_its_lease_and_a_killed_one_goes_stale(
    kafka: Broker, tmp_path: Path
) -> None:
    names = TopicNames(f"g{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    env = _env(kafka, names, EXPEDITER_REGISTRY_LEASE_SECONDS="3")
    killed = spawn(["worker", str(PROBE), "--instance", "killed"], env, tmp_path / "killed.log")
    kept = spawn(["worker", str(PROBE)], env, tmp_path / "kept.log")  # the default instance
    try:

        async def both_live() -> bool:
            directory = await read_registry(kafka.settings, names)
            return len(directory.live()) == 2

        await until("both workers live in the registry", both_live, poll=0.3)
        first = await read_registry(kafka.settings, names)
        default = next(c.instance for c in first.live() if c.instance != "killed")
        assert default.endswith(f"-{kept.pid}"), "the default instance is unique per process"
        assert {c.engine for c in first.live()} == {"rules"}
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)

        # Once the killed card's lease has passed it is stale, while the live one was renewed
        # meanwhile. Polled rather than slept: on a loaded machine a renewal may come late.
        seen = []

        async def killed_stale_kept_live() -> bool:
            seen.append(await read_registry(kafka.settings, names))
            return [c.instance for c in seen[-1].live()] == [default] and [
                c.instance for c in seen[-1].stale()
            ] == ["killed"]

        await until("the killed card stale, the kept one live", killed_stale_kept_live, poll=0.3)
        later = seen[-1]
        renewed = later.live()[0]
        assert renewed.expires_at is not None
        assert renewed.created_at > first.live()[0].created_at

        listed = cli(["agents", "--json"], env)
        assert listed.returncode == 0, listed.stderr
        (probe,) = json.loads(listed.stdout)["capabilities"]
        assert (probe["capability"], probe["live"], probe["stale"]) == ("probe", 1, 1)
        assert probe["instances"][0]["instance"] == default
        assert probe["instances"][0]["version"] == "1.0.0"
        assert probe["instances"][0]["resources"]["concurrency"] == 4
        assert probe["stale_instances"] == ["killed"]
        plain = cli(["agents", "--stale"], env)
        assert plain.returncode == 0
        assert "killed" in plain.stdout
        assert default in plain.stdout

        assert terminate(kept) == 0
        gone = await read_registry(kafka.settings, names)
        assert [c.instance for c in gone.cards] == ["killed"], "a clean stop removes its card"
    finally:
        for proc in (killed, kept):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_submit_warns_when_no_live_agent_serves_the_capability(kafka: Broker) -> None:
    names = TopicNames(f"s{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    env = _env(kafka, names)
    submitted = cli(["submit", "probe", "--input", '{"n": 1}', "--json"], env)
    assert submitted.returncode == 0, submitted.stderr
    assert "no live agent serves probe" in submitted.stderr
    assert json.loads(submitted.stdout)["target"] == "probe", "stdout stays one JSON document"


@pytest.mark.slow
async def test_sigterm_while_the_group_waits_for_a_killed_member_stops_in_time(
    kafka: Broker, tmp_path: Path
) -> None:
    """A worker killed with -9 stays a member of its group until its session timeout (45 s):
    the broker holds the next member's JoinGroup until then. SIGTERM to that next member must
    still end it cleanly within its drain budget (30 s), not at the hard deadline (exit 70):
    found in a CI run of the test above, where the killed card's worker was still a member."""
    names = TopicNames(f"g{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    env = _env(kafka, names)
    first = spawn(["worker", str(PROBE), "--instance", "first"], env, tmp_path / "first.log")
    second = None
    try:

        async def live(instance: str) -> bool:
            cards = (await read_registry(kafka.settings, names)).live()
            return instance in [c.instance for c in cards]

        await until("the first worker live", lambda: live("first"), poll=0.3)
        await asyncio.sleep(3)  # the first holds its partitions (it registers before it joins)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        second = spawn(["worker", str(PROBE), "--instance", "second"], env, tmp_path / "2.log")
        await until("the second worker live", lambda: live("second"), poll=0.3)
        await asyncio.sleep(3)  # its JoinGroup is now held for the killed member
        started = time.monotonic()
        code = terminate(second, timeout=60)
        took = time.monotonic() - started
        print((tmp_path / "2.log").read_text()[-3000:])
        assert code == 0, f"exit {code} after {took:.1f}s (70: the hard deadline ended a hang)"
        assert took < 30
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
