"""Reading history back and running it again: replay, trace, shadow re-runs, diff, the DLQ tool.

Everything is a Kafka record, so a workflow's history can be read back (:mod:`reading`, by
partition and offsets, time, key or workflow id, never through a consumer group: what to read in
:mod:`selecting`, its offsets in :mod:`planning`, times in :mod:`times`), printed
(:mod:`rendering`, :mod:`timeline`), re-run into shadow topics by the current agent code with
recorded tool results in place of side effects (:mod:`rerunning`), compared with the original
(:mod:`diffing`), and dead letters redriven to where they came from (:mod:`deadletters`).

A layer beside the worker: it imports the worker, tools, messaging, events, settings and errors.
Called by the CLI (``expediter replay|trace|diff|dlq``) and the replay bench.
"""

from expediter.messaging.partitionreading import PartitionRange
from expediter.replaying.deadletters import (
    REDRIVE_HEADER,
    Letter,
    RedriveReport,
    choose,
    parse_offsets,
    read_letters,
    redrive,
)
from expediter.replaying.deadlines import ORIGINAL_DEADLINE_HEADER
from expediter.replaying.diffing import DiffReport, FieldChange, TaskDiff, compare, diff_shadow
from expediter.replaying.reading import HistoryReader
from expediter.replaying.rendering import atomic_output, json_line, json_lines, row
from expediter.replaying.rerunning import (
    SHADOW_HEADER,
    RerunReport,
    ShadowTarget,
    publish_shadow,
    recorded_only,
    run_shadow,
    shadow_target,
)
from expediter.replaying.selecting import RangePlan, Selection
from expediter.replaying.timeline import Entry, Trace, trace_workflow
from expediter.replaying.times import parse_when

__all__ = [
    "ORIGINAL_DEADLINE_HEADER",
    "REDRIVE_HEADER",
    "SHADOW_HEADER",
    "DiffReport",
    "Entry",
    "FieldChange",
    "HistoryReader",
    "Letter",
    "PartitionRange",
    "RangePlan",
    "RedriveReport",
    "RerunReport",
    "Selection",
    "ShadowTarget",
    "TaskDiff",
    "Trace",
    "atomic_output",
    "choose",
    "compare",
    "diff_shadow",
    "json_line",
    "json_lines",
    "parse_offsets",
    "parse_when",
    "publish_shadow",
    "read_letters",
    "recorded_only",
    "redrive",
    "row",
    "run_shadow",
    "shadow_target",
    "trace_workflow",
]
