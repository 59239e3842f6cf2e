"""faust-streaming is pinned exactly, because the orchestrator overrides its private methods.

expediter/orchestrator/consuming.py replaces Faust's rule for which offset commits by
overriding ``getmany``, ``_new_offset``, ``_filter_tps_with_pending_acks`` and
``on_partitions_revoked`` of Faust's consumer, and ``_new_transport`` of the app. A new Faust
may rename or re-sign any of them and the override would silently stop applying. So: one exact
version, and this test fails loudly on another one, naming what to re-check.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib import metadata
from pathlib import Path

import faust
import mode.services
from faust.transport.consumer import Consumer

ROOT = Path(__file__).resolve().parents[2]

OVERRIDDEN = {
    "getmany": ["self", "timeout"],
    "_new_offset": ["self", "tp"],
    "_filter_tps_with_pending_acks": ["self", "topics"],
    "on_partitions_revoked": ["self", "revoked"],
}


def pinned_version() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"faust-streaming==([\w.]+)", requirement.replace(" ", ""))
        if match:
            return match.group(1)
    raise AssertionError("pyproject.toml must pin faust-streaming with == (see this module)")


def test_the_installed_faust_is_the_pinned_one() -> None:
    installed = metadata.version("faust-streaming")
    assert installed == pinned_version(), (
        f"faust-streaming {installed} is installed but {pinned_version()} is pinned: before "
        "moving the pin, re-read the private methods expediter/orchestrator/consuming.py "
        "overrides in the new version and run the orchestrator's kill -9 test"
    )


def test_the_overridden_private_methods_still_exist_with_their_signatures() -> None:
    for name, parameters in OVERRIDDEN.items():
        method = getattr(Consumer, name, None)
        assert method is not None, f"faust's Consumer has no {name} any more"
        assert list(inspect.signature(method).parameters) == parameters, name
    assert list(inspect.signature(faust.App._new_transport).parameters) == ["self"]
    # The commit timer (a mode ServiceTask) that consuming.py replaces with commit-when-idle.
    assert isinstance(vars(Consumer).get("_commit_handler"), mode.services.ServiceTask)


def test_the_producer_methods_delivering_overrides_still_exist() -> None:
    from faust.transport.drivers.aiokafka import Producer

    expected = {
        "send": ["self", "topic", "key", "value", "partition", "timestamp", "headers",
                 "transactional_id"],
        "commit_transactions": ["self", "tid_to_offset_map", "group_id",
                                "start_new_transaction"],
        "_settings_extra": ["self"],
    }  # fmt: skip
    for name, parameters in expected.items():
        method = getattr(Producer, name, None)
        assert method is not None, f"faust's aiokafka Producer has no {name} any more"
        assert list(inspect.signature(method).parameters) == parameters, name
    for attribute in ("_transaction_producers", "_trn_locks"):
        assert attribute in inspect.getsource(Producer), attribute


def test_the_orchestrator_turns_off_fausts_cython_stream_iterator() -> None:
    # It drops records it skips without acking them (expediter/orchestrator/consuming.py).
    import faust.streams

    import expediter.orchestrator.consuming  # noqa: F401 (the import turns it off)

    assert "_CStreamIterator" in vars(faust.streams), "faust renamed its Cython switch"
    assert faust.streams._CStreamIterator is None  # type: ignore[attr-defined]
