"""`submit --count` when the broker goes away part-way: a clear error, and every id accounted for.

Before, the client printed a raw traceback and the ids it had already published were lost: a
script could neither tell what was sent nor resubmit only the rest. Now it exits 1 with one
line saying what happened, and its JSON lists each published id and the one whose send was cut
off. After the broker is back, the commands topic holds exactly those published ids, plus at
most the unsure one: nothing is claimed that was not sent, and nothing was sent unreported.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from expediter.events import WorkflowCommand, decode
from expediter.messaging import TopicNames
from tests.chaos.conftest import ChaosBroker, read_for
from tests.support import cli

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def test_submit_count_in_an_outage_says_what_it_published(
    chaos_broker: ChaosBroker, tmp_path: Path
) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}."
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
        "EXPEDITER_BOOTSTRAP": chaos_broker.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": prefix,
        "EXPEDITER_REQUEST_TIMEOUT_MS": "5000",  # a send gives up 5 s into the outage
    }
    applied = cli(["topics", "apply", "--prefix", prefix, "--json"], env)
    assert applied.returncode == 0, applied.stderr
    args = ["submit", "field-analysis", "--input", '{"field_id": "f"}', "--count", "400",
            "--rate", "20", "--json"]  # fmt: skip
    submitting = asyncio.create_task(asyncio.to_thread(cli, args, env, 180))
    await asyncio.sleep(4)  # some published, most still to go
    async with chaos_broker.down():
        done: subprocess.CompletedProcess[str] = await submitting
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "publishing stopped after" in done.stderr
    document = json.loads(done.stdout)
    assert document["ok"] is False
    published = [s["workflow_id"] for s in document["published"]]
    assert 0 < len(published) < 400
    assert len(set(published)) == len(published)

    names = TopicNames(prefix)
    records = await read_for(chaos_broker.settings, names.commands,
                             until=lambda r: len(r) > len(published), timeout=20)  # fmt: skip
    sent = [decode(r.value, WorkflowCommand).workflow_id for r in records]
    assert set(published) <= set(sent), "an id reported as published is not in the topic"
    assert set(sent) - set(published) <= {document["unsure"]}, "an id was sent unreported"
