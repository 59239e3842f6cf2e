"""The Worker: one agent as a stateless consumer of ``tasks.<capability>``.

Fetching and processing are decoupled. The poll loop never waits for a task: each partition's
batch of records runs in a task of its own, and polling goes on, so a task longer than
max.poll.interval.ms costs no group membership. A partition's next batch is fetched while one
runs (no idle round trip between batches) and waits behind it; with one running and one
waiting, the partition is paused. Inside a batch, records of one key (one workflow) run in
order, keys run side by side, and a semaphore bounds the worker's concurrency.

Delivery is consume-transform-produce in a Kafka transaction: a batch's results and dead
letters, and the consumer offset after it, commit atomically (transactional id per instance,
read_committed readers). A worker killed with -9 mid-batch leaves an aborted transaction: its
results are never seen, the offset never moved, and the next owner redoes the batch. Tool side
effects, which no transaction can undo, are recorded in the tool ledger and replayed. So no task
is lost and no result is applied twice.

Batches hand their finished records to the committer (:mod:`expediter.worker.committing`),
which commits them in group transactions. A transaction commits only if every record in it
was delivered (:mod:`expediter.worker.transacting`). When one fails (a broker outage longer
than the request timeout, a record the broker refuses), nothing of it commits, and the worker
recovers in process rather than exiting: it drops every batch not yet committed, seeks each
partition back to its last committed offset, and runs those records again on a new producer,
after a backoff. Why in process: the records would be redelivered after a restart as well, but
a restart costs the model's warm-up and a rebalance, and during a broker outage a crash loop
would only add restart back-off to the outage. Meanwhile /readyz says the worker is not ready.

Called by ``expediter worker`` (expediter.cli.worker) and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition

from expediter.authoring.agents import Agent, ToolCaller
from expediter.errors import ConfigurationError
from expediter.events import Producer, TaskEvent
from expediter.messaging import TopicNames, client_options, connected
from expediter.messaging.topology import TopicMetadata
from expediter.reasoning.protocol import ReasoningEngine
from expediter.reasoning.routing import RoutingEngine
from expediter.settings import KafkaSettings, WorkerSettings
from expediter.tools import ToolBox, ToolLedger
from expediter.worker.committing import Committer
from expediter.worker.delaying import Delays, RetryTiers
from expediter.worker.limiting import Slots
from expediter.worker.observing import HealthState, ObservabilityServer, WorkerMetrics
from expediter.worker.processing import Outcome, TaskRunner, ToolCallerFactory
from expediter.worker.publishing import BATCH_BYTES, KeyPartitions
from expediter.worker.registering import Registration, default_instance
from expediter.worker.transacting import Transactions

__all__ = ["Worker"]

T = TypeVar("T")
_LAG_EVERY = 5.0
_IDLE_SECONDS = 1.0
"""A partition with no batch for this long may get its position committed past markers."""
_CONSUMER_STOP_SECONDS = 5.0
"""Leaving the group takes milliseconds; only a JoinGroup held by the broker takes longer."""


class _LedgerTools(ToolCallerFactory):
    def __init__(self, agent: Agent[Any, Any], ledger: ToolLedger) -> None:
        self.agent = agent
        self.ledger = ledger

    def __call__(self, task: TaskEvent[Any]) -> ToolCaller:
        return ToolBox(self.agent.tools, self.ledger, task_id=task.event_id, step_id=task.step_id)


class Worker:
    """Runs ``agent`` until :meth:`request_stop`, then drains. Use :meth:`run` once."""

    def __init__(
        self,
        agent: Agent[Any, Any],
        engine: ReasoningEngine,
        *,
        kafka: KafkaSettings,
        settings: WorkerSettings,
        log: logging.Logger | None = None,
    ) -> None:
        self.agent = agent
        # Every call goes through a router, one engine or several: each is recorded in its
        # result and counted per engine on /metrics.
        self.engine = engine if isinstance(engine, RoutingEngine) else RoutingEngine.single(engine)
        self.kafka = kafka
        self.settings = settings
        self.log = log or logging.getLogger(f"expediter.worker.{agent.capability}")
        self.names = TopicNames(settings.topic_prefix)
        self.instance = settings.instance or default_instance()
        self.group = self.names.group(agent.capability)
        self.tasks_topic = self.names.tasks(agent.capability)
        self.ledger_topic = settings.ledger_topic or self.names.ledger
        self.producer_info = Producer(name=agent.name, version=agent.version)
        self.health = HealthState(settings)
        self.metrics = WorkerMetrics(agent.capability, self.health)
        self.metrics.watch_engines(self.engine.meters.values())
        self.server = ObservabilityServer(self.metrics, settings)
        self.registration: Registration | None = None
        """This worker's registry card, once published."""
        self.phases: dict[str, float] = {}
        """Seconds each start-up phase took, in order (printed at start)."""
        self.assignments = 0
        """How many times partitions were assigned: 1 for a worker that never rebalanced."""
        self._stop = asyncio.Event()
        self.tiers = (
            RetryTiers(self.names, agent.capability, settings.retry_tiers)
            if settings.retry_tiers else None
        )  # fmt: skip
        """Non-blocking retries (:mod:`expediter.worker.delaying`); None when off."""
        self._delays = Delays(self._stop)
        self._crash: BaseException | None = None
        self._slots = Slots(agent.resources.concurrency)
        self._committer = Committer(self.group, KeyPartitions(), self.health, self.log)
        self._inflight: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        """Batch tasks per partition: at most one running and one waiting behind it, and
        earlier ones awaiting their commit."""
        self._processing: dict[TopicPartition, asyncio.Future[None]] = {}
        """Per partition, done once the last fetched batch has run (its commit may wait)."""
        self._first_fetched: dict[TopicPartition, int] = {}
        """The first offset fetched per partition since it was assigned: where a rewind goes
        when this worker never learnt the committed offset."""
        self.rewinds = 0
        """How many times a failed transaction rewound the partitions."""
        self._last_batch: dict[TopicPartition, float] = {}
        self._ran = False

    # -- control ------------------------------------------------------------------------------

    @property
    def stopping(self) -> asyncio.Event:
        """Set once a stop was requested or a part crashed."""
        return self._stop

    def request_stop(self) -> None:
        """Begin a graceful drain. Safe to call from a signal handler; only sets a flag."""
        self._stop.set()

    @property
    def transactional_id(self) -> str:
        # Stable per instance: a restarted pod with the same name fences its predecessor.
        return f"{self.group}.{self.instance}"

    async def run(self) -> None:
        """Warm up, join, consume until asked to stop, drain, leave. Raises if a part crashed."""
        if self._ran:
            raise RuntimeError("a Worker runs once; create a new one")
        self._ran = True
        async with AsyncExitStack() as stack:
            await self._phase("engine", self.engine.start())
            stack.push_async_callback(self.engine.stop)
            await self._phase("grammar", self.engine.prepare(self.agent.output_model))
            await self._phase("http", self.server.start())
            stack.push_async_callback(self.server.stop)
            options = client_options(self.kafka)

            def make_producer() -> AIOKafkaProducer:
                return AIOKafkaProducer(
                    **options,
                    transactional_id=self.transactional_id,
                    acks="all",
                    # A new transaction right after a commit meets CONCURRENT_TRANSACTIONS while
                    # the markers are written; the 100 ms default backoff would add that to
                    # every batch.
                    retry_backoff_ms=10,
                    # A transaction's results go out as one batch per partition (Publisher).
                    max_batch_size=BATCH_BYTES,
                )

            transactions = Transactions(make_producer, self.kafka, self.log)
            await self._phase("producer", stack.enter_async_context(transactions))
            await self._phase("topics", self._check_topics(transactions.producer))
            if self.tiers is not None and not await self.tiers.present(
                transactions.producer, self.log
            ):
                self.tiers = None
            tools = ToolCallerFactory()
            if self.agent.tools:
                ledger = ToolLedger(self.kafka, topic=self.ledger_topic)
                await self._phase("ledger", stack.enter_async_context(ledger))
                tools = _LedgerTools(self.agent, ledger)
            runner = TaskRunner(
                self.agent, self.engine, self.settings, self.names, self.producer_info, tools,
                self.log, tiers=self.tiers,
            )  # fmt: skip
            registration = Registration(
                self.agent, self.engine, instance=self.instance, topic=self.names.registry,
                producer=self.producer_info, lease_seconds=self.settings.registry_lease_seconds,
                lock=self._committer.lock, log=self.log,
            )  # fmt: skip
            self.registration = registration
            await self._phase("registry", registration.publish(transactions))
            stack.push_async_callback(self._unregister, registration, transactions)
            heartbeat = asyncio.create_task(registration.heartbeat(transactions, self._stop))
            heartbeat.add_done_callback(self._part_done("registry heartbeat"))
            stack.push_async_callback(_cancelled, heartbeat)
            consumer = self._consumer(options)
            if not await self._phase("join", self._join(stack, consumer)):
                # Asked to stop before the group let it in: nothing was consumed. A part that
                # crashed (and so asked for the stop) still fails the run.
                if self._crash is not None:
                    raise self._crash
                return
            self.health.mark_warm()
            # What start-up built (modules, the model, pydantic schemas) lives as long as the
            # process: move it out of the collector's way, so that the collections that tasks'
            # short-lived objects trigger do not walk it again and again.
            gc.freeze()
            self.log.info(
                "worker %s ready: %s", self.instance,
                ", ".join(f"{name} {secs:.2f}s" for name, secs in self.phases.items()),
                extra={"capability": self.agent.capability},
            )  # fmt: skip
            committer = asyncio.create_task(
                self._committer.run(transactions, lambda: self._rewind(consumer))
            )
            committer.add_done_callback(self._part_done("committer"))
            try:
                await self._consume(consumer, transactions, runner)
            finally:
                self.health.mark_draining()
                await self._drain()
                committer.cancel()
                await asyncio.gather(committer, return_exceptions=True)
        if self._crash is not None:
            raise self._crash

    async def _join(self, stack: AsyncExitStack, consumer: AIOKafkaConsumer) -> bool:
        """Start the consumer (aiokafka waits for its first assignment); False when a stop was
        asked first. The broker holds a JoinGroup until every member rejoined or timed out (one
        killed with -9: its whole session timeout), so a SIGTERM then must not wait for it, and
        the consumer's stop, which waits for the JoinGroup in flight, is bounded too."""
        joined = connected(consumer, self.kafka, stop_seconds=_CONSUMER_STOP_SECONDS)
        entering = asyncio.ensure_future(stack.enter_async_context(joined))
        stopping = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({entering, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if entering.done():
            entering.result()  # a failed start raises here
            return True
        entering.cancel()
        await asyncio.gather(entering, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), _CONSUMER_STOP_SECONDS)
        self.log.info("stopped before joining the group")
        return False

    async def _phase(self, name: str, work: Awaitable[T]) -> T:
        started = time.monotonic()
        result = await work
        self.phases[name] = time.monotonic() - started
        return result

    # -- start-up -----------------------------------------------------------------------------

    async def _check_topics(self, producer: AIOKafkaProducer) -> None:
        needed = [self.tasks_topic, self.names.results, self.names.dlq(self.agent.capability),
                  self.names.registry]  # fmt: skip
        if self.agent.tools:
            needed.append(self.ledger_topic)
        # All-topics metadata, not a request naming ours: on clusters with auto-creation on,
        # naming a missing topic would create it with broker defaults (wrong partitions).
        # Topics created a moment ago (`topics apply` just before) take a while to show.
        deadline = time.monotonic() + 10
        metadata = TopicMetadata(producer.client)
        while True:
            known = await metadata.topics(refresh=True)
            missing = [topic for topic in needed if topic not in known]
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        if missing:
            raise ConfigurationError(
                f"topics missing: {', '.join(missing)}; create them with `expediter topics "
                "apply` (topics/topics.yaml lists them)"
            )

    async def _unregister(self, registration: Registration, transactions: Transactions) -> None:
        if self._crash is not None or transactions.broken:
            return  # a crashed worker leaves its card (so does one cut off): its lease expires
        await registration.remove(transactions)

    def _consumer(self, options: dict[str, Any]) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **options,
            group_id=self.group,
            group_instance_id=self.instance if self.settings.static_membership else None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=self.settings.max_poll_interval_ms,
            session_timeout_ms=self.settings.session_timeout_ms,
            # A rebalance reaches a member on its next heartbeat, so a replica KEDA just
            # started waits up to one interval of every member for its partitions (15 s
            # with Kafka's third of the session timeout); 1 s keeps scale-up quick.
            heartbeat_interval_ms=min(max(self.settings.session_timeout_ms // 3, 100), 1000),
            max_partition_fetch_bytes=max(self.settings.max_record_bytes + 1024, 1_048_576),
            # A resumed partition waits for the fetch in flight; keep that wait short.
            fetch_max_wait_ms=100,
        )
        tiers = sorted(self.tiers.topics) if self.tiers is not None else []
        consumer.subscribe([self.tasks_topic, *tiers], listener=_Rebalance(self))
        return consumer

    # -- the loop -----------------------------------------------------------------------------

    async def _consume(
        self, consumer: AIOKafkaConsumer, transactions: Transactions, runner: TaskRunner
    ) -> None:
        next_lag = 0.0
        limit = self.settings.max_batch_records
        while not self._stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=limit)
            self.metrics.polled()
            for tp, records in batches.items():
                if not records:
                    continue
                previous = self._processing.get(tp)
                if previous is not None and not previous.done():
                    # One batch runs and this one waits behind it: hold no more.
                    consumer.pause(tp)
                ran = self._processing[tp] = asyncio.get_running_loop().create_future()
                self._last_batch[tp] = time.monotonic()
                self._first_fetched.setdefault(tp, records[0].offset)
                generation = self._committer.generation
                task = asyncio.create_task(
                    self._batch(tp, records, consumer, runner, previous, ran, generation)
                )
                self._inflight.setdefault(tp, set()).add(task)
                task.add_done_callback(self._part_done(f"batch of {tp}", tp))
            if time.monotonic() >= next_lag:
                next_lag = time.monotonic() + _LAG_EVERY
                await self._report_lag(consumer)
                await self._commit_past_markers(consumer, transactions)

    def _part_done(
        self, what: str, tp: TopicPartition | None = None
    ) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            if tp is not None:
                self._inflight.get(tp, set()).discard(task)
            if not task.cancelled() and task.exception() is not None and self._crash is None:
                # A bug in the runtime, not in a handler (those become failure results): stop,
                # and let the process exit non-zero rather than run on half-broken.
                self._crash = task.exception()
                self.log.error("%s crashed", what, exc_info=self._crash)
                self._stop.set()

        return done

    async def _batch(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        consumer: AIOKafkaConsumer,
        runner: TaskRunner,
        previous: asyncio.Future[None] | None,
        ran: asyncio.Future[None],
        generation: int,
    ) -> None:
        """Run one fetched batch of ``tp`` after ``previous`` (the batch before it) ran; set
        ``ran`` once every record ran, then wait for the commit."""
        try:
            if previous is not None:
                if not previous.done():
                    await asyncio.wait([previous])
                # Resume whether or not there was a wait: the poll loop paused ``tp`` when it saw
                # ``previous`` running, and ``previous`` may have ended before this task began.
                # Resuming only after a wait left such a partition paused for good.
                if tp in consumer.assignment():
                    consumer.resume(tp)
            commits = await self._run_batch(tp, records, runner, generation)
        finally:
            if not ran.done():
                ran.set_result(None)
        # The next batch of this partition may run while this one commits (the consumer's
        # position is past it, and the committer keeps hand-over order).
        await asyncio.gather(*commits)

    async def _run_batch(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        runner: TaskRunner,
        generation: int,
    ) -> list[asyncio.Future[None]]:
        """Run every record; the futures say when each handed-over part is committed."""
        lanes: dict[bytes | None, list[ConsumerRecord[bytes, bytes]]] = {}
        for record in records:
            lanes.setdefault(record.key, []).append(record)
        outcomes: dict[int, Outcome] = {}
        handed = 0  # records[:handed] are with the committer
        commits: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        hand_over_due = False

        def hand_over_done_prefix() -> None:
            # Offsets commit in order, so only the finished prefix of the batch can go; it goes
            # soon after a task ends, so that slow tasks (an LLM call) commit one by one, not
            # per batch. "Soon" is the next turn of the loop: tasks that end in the same turn
            # (handlers that never wait) go over together.
            nonlocal handed, hand_over_due
            hand_over_due = False
            if generation != self._committer.generation:
                return  # rewound: these records run again, from the committed offset
            end = handed
            while end < len(records) and records[end].offset in outcomes:
                end += 1
            if end > handed:
                commits.append(
                    self._committer.hand_over(tp, records[handed:end], outcomes, generation)
                )
                handed = end

        slots = self._slots
        started, count = self.metrics.task_started, self._count
        delays, tier_topics = self._delays, self.tiers.topics if self.tiers else frozenset()

        async def lane(items: list[ConsumerRecord[bytes, bytes]]) -> None:
            nonlocal hand_over_due
            for record in items:  # one key's tasks, in offset order
                if record.topic in tier_topics and not await delays.until_due(tp, record):
                    return  # stopping or revoked: uncommitted, it runs again from the tier
                if not slots.take_now():
                    await slots.take()
                try:
                    started()
                    outcome = await runner.run(record)
                    count(outcome)
                finally:
                    slots.give()
                outcomes[record.offset] = outcome
                if not hand_over_due:
                    hand_over_due = True
                    loop.call_soon(hand_over_done_prefix)

        await asyncio.gather(*(lane(items) for items in lanes.values()))
        hand_over_done_prefix()  # if the last one is still due
        return commits

    def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        """After a failed transaction: drop every batch not committed, and fetch again from the
        committed offsets, so that each of those records runs again and commits once.

        All of it happens in one turn of the loop: no fetch returns records from before the
        seek (aiokafka drops fetched records whose offset is not the position), and no batch
        started before it hands anything over after it (the generation changed). The
        cancelled batches' handlers end like on revocation.
        """
        self._committer.drop_waiting()
        self.rewinds += 1
        for tasks in self._inflight.values():
            for task in tasks:
                task.cancel()
        self._processing.clear()
        for tp in consumer.assignment():
            start = self._committer.committed_to.get(tp, self._first_fetched.get(tp))
            if start is not None:
                consumer.seek(tp, start)
            consumer.resume(tp)
        self.health.awaiting_commit(None)

    async def _commit_past_markers(
        self, consumer: AIOKafkaConsumer, transactions: Transactions
    ) -> None:
        """Commit the position of idle partitions whose last records were followed by markers.

        A transactional producer (the orchestrator) ends each transaction with a commit marker,
        an offset no record reaches. Committing "last record + 1" would leave the group one
        offset short of the end forever, and KEDA, which computes lag from offsets, would see
        lag 1 and never scale the agent to zero. The consumer's position does pass the markers,
        and on an idle partition (no batch running or awaiting commit) everything before it
        was a record this worker committed, a marker, or an aborted record: safe to commit.
        Called from the fetch loop, so no fetch moves the position meanwhile.
        """
        if self._stop.is_set() or transactions.broken:
            return  # a broken producer is the committer's to replace, off the fetch loop
        now = time.monotonic()
        waiting = self._committer.waiting
        owned, committed_to = self._committer.owned, self._committer.committed_to
        due: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            if self._inflight.get(tp) or tp in waiting or tp not in owned:
                continue
            if now - self._last_batch.get(tp, 0.0) < _IDLE_SECONDS:
                continue
            position = await consumer.position(tp)
            committed = committed_to.get(tp)
            if committed is None:
                committed = await consumer.committed(tp)
                if committed is None:
                    continue  # nothing committed yet: the offset reset policy rules, not markers
                committed_to[tp] = committed
            if position > committed:
                due[tp] = position
        if due:
            await self._committer.commit_offsets(transactions, due)

    def _count(self, outcome: Outcome) -> None:
        if outcome.status == "dead-lettered":
            self.metrics.task_finished("dead-lettered", outcome.seconds, reason=outcome.reason)
            self.metrics.dead_lettered(outcome.reason or "unknown")
        elif outcome.status == "succeeded":
            self.metrics.task_finished("succeeded", outcome.seconds)
        elif outcome.status == "delayed":
            self.metrics.task_finished("retried", outcome.seconds, reason="delayed")
        else:
            self.metrics.task_finished("failed", outcome.seconds, reason=outcome.reason)
            if outcome.status == "failed":
                self.metrics.dead_lettered(outcome.reason or "unknown")
        for _ in range(outcome.retries):
            self.metrics.task_finished("retried", 0.0)
        usage = outcome.usage
        if usage.prompt_tokens or usage.completion_tokens:
            self.metrics.tokens(usage.prompt_tokens, usage.completion_tokens)

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        total = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            with contextlib.suppress(Exception):  # a partition revoked mid-call
                position = await consumer.position(tp)
                lag = max(highwater - position, 0)
                self.metrics.set_lag(tp.topic, tp.partition, lag)
                total += lag
        self.health.set_lag(total, busy=self.metrics.in_flight > 0)

    # -- shutdown -----------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Let in-flight batches finish within drain_seconds; cancel the rest uncommitted."""
        pending = [task for tasks in self._inflight.values() for task in tasks]
        if not pending:
            return
        self.log.info("draining %d in-flight batch(es)", len(pending))
        _, late = await asyncio.wait(pending, timeout=self.settings.drain_seconds)
        for task in late:
            task.cancel()
        if late:
            self.log.warning(
                "%d batch(es) did not finish within %.0fs; handed back uncommitted",
                len(late), self.settings.drain_seconds,
            )  # fmt: skip
            await asyncio.wait(late, timeout=self.settings.hard_deadline_seconds)

    async def revoke(self, partitions: set[TopicPartition]) -> None:
        """Partitions are being taken away: finish or abandon their batches before they go."""
        self._delays.release(partitions)  # tier records waiting to come due: the next owner's
        tasks = [task for tp in partitions for task in self._inflight.get(tp, ())]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.drain_seconds)
            for task in late:
                task.cancel()
        async with self._committer.lock:
            self._committer.owned -= partitions
        for tp in partitions:
            self.metrics.forget_partition(tp.topic, tp.partition)

    def assign(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions - self._committer.owned:
            # Another member may have committed meanwhile.
            self._committer.committed_to.pop(tp, None)
            self._first_fetched.pop(tp, None)
        self._committer.owned |= partitions
        self.assignments += 1


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.worker.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.assign(set(assigned))
