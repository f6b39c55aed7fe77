"""The decision log: every replica decision, with the inputs that made it, kept durably.

On-call asks "why did it scale to 30 at 09:41?" long after the controller's memory is gone,
so each decision is written to a database with everything :func:`controller.policy.decide`
saw and concluded, plus what the HPA alone would have asked for.

Storage is SQLAlchemy Core over one URL:

- ``sqlite:///PATH``: the default, a file on the controller's volume. Opened in WAL mode
  with ``synchronous=NORMAL``: a commit survives the process being killed (not, for the
  last few commits, a power cut), and readers (``surgecast decisions``) never block the
  writer;
- ``postgresql+psycopg://USER@HOST/DB``: for a highly available controller whose replicas
  must share one log.

The schema is created on open (idempotent) and versioned in ``schema_version``. Times are
timezone-aware UTC in and out: a naive time is refused rather than guessed.

Record before apply, mark applied after (see :meth:`DecisionLog.pending` for what a
restarted controller does with a decision recorded but not marked applied).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine, RowMapping

from controller.policy import Decision, Forecast, PolicySpec

log = logging.getLogger("surgecast.decisions")

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DecisionRecord:
    """One decision as stored: what was decided, from what, and whether it took effect."""

    at: datetime
    """When the decision was made (aware)."""

    scaler: str
    """The PredictiveScaler, ``NAMESPACE/NAME``."""

    target: str
    """What it scales, ``KIND/NAME`` (e.g. ``Deployment/portal``)."""

    mode: str
    """``Scale``, ``HPAFloor`` or ``ForecastOnly`` (recorded, never applied)."""

    current_replicas: int
    ready_replicas: int | None
    """The target's pods as its scale subresource counts them (``status.replicas``; in the
    replay, the pods past their startup delay). The scale subresource has no ready count,
    so in the controller this includes pods not yet ready (a rollout, a slow start)."""
    observed_load: float | None
    load_unit: str
    """Unit of the loads and capacity, for people (``rps``, ``req/min``)."""

    window_start: datetime
    window_end: datetime
    """The lead window the forecast had to cover: pods asked for now serve at its end."""

    quantile: float
    forecast_peak: float | None
    """The forecast's highest upper quantile in the window (None: no usable forecast)."""

    predictive: int | None
    """Replicas covering ``forecast_peak``."""

    capacity_per_replica: float
    startup_delay: timedelta
    reactive_floor: int
    """Replicas the observed load needs now."""

    min_replicas: int
    max_replicas: int
    """The bounds in force, after any scheduled override."""

    recommendation: int
    """Before stabilisation, steps and bounds."""

    replicas: int
    """The chosen count."""

    hpa_replicas: int | None
    """What the HPA alone would have asked for (None: not known)."""

    reason: str
    """``Family/Detail`` code from the policy, e.g. ``ScaleUp/ForecastPeak``."""

    message: str
    """The policy's own one-sentence account."""

    clamps: tuple[str, ...] = ()
    override: str | None = None
    fallback: str | None = None
    model_version: str | None = None
    backtest_score: float | None = None
    applied: bool = False
    applied_at: datetime | None = None
    not_applied: str | None = None
    """Why the decision was not applied, ``Reason: words`` (``ConflictingHPA: HPA portal
    also scales ...``, ``ScaleFailed: ...``); None when it was, or when no one knows (the
    controller stopped before making it, or the log predates the column)."""

    id: int | None = None
    """Assigned by the log; None until recorded."""

    def __post_init__(self) -> None:
        for name in ("at", "window_start", "window_end", "applied_at"):
            value = getattr(self, name)
            if value is not None:
                _require_aware(value, name)


def record_from_decision(
    decision: Decision,
    *,
    scaler: str,
    target: str,
    mode: str,
    ready_replicas: int | None,
    spec: PolicySpec,
    forecast: Forecast | None,
    hpa_replicas: int | None,
    at: datetime,
    load_unit: str = "rps",
) -> DecisionRecord:
    """The record of one policy decision, so callers never map fields by hand.

    ``forecast`` is the one the policy was given (it names the model and its backtest
    score). Naive times are taken as UTC, the policy's convention for forecast times.
    """
    load = decision.observed_load
    return DecisionRecord(
        at=_as_utc(at),
        scaler=scaler,
        target=target,
        mode=mode,
        current_replicas=decision.current_replicas,
        ready_replicas=ready_replicas,
        observed_load=load if load is not None and math.isfinite(load) else None,
        load_unit=load_unit,
        window_start=_as_utc(decision.window_start),
        window_end=_as_utc(decision.window_end),
        quantile=forecast.quantile if forecast is not None else spec.quantile,
        forecast_peak=decision.forecast_peak,
        predictive=decision.predictive,
        capacity_per_replica=spec.capacity_per_replica,
        startup_delay=spec.startup_delay,
        reactive_floor=decision.reactive_floor,
        min_replicas=decision.min_replicas,
        max_replicas=decision.max_replicas,
        recommendation=decision.recommendation,
        replicas=decision.replicas,
        hpa_replicas=hpa_replicas,
        reason=decision.reason,
        message=decision.message,
        clamps=decision.clamps,
        override=decision.override,
        fallback=decision.fallback,
        model_version=(forecast.model_version or None) if forecast is not None else None,
        backtest_score=forecast.backtest_score if forecast is not None else None,
    )


class _UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes stored as UTC and read back as aware UTC on every backend.

    SQLite keeps no zone (it stores the UTC wall time); PostgreSQL stores ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_metadata = sa.MetaData()
_schema_version = sa.Table(
    "schema_version", _metadata, sa.Column("version", sa.Integer, primary_key=True)
)
_decisions = sa.Table(
    "decisions",
    _metadata,
    # 64-bit: a fleet of 1,000 scalers deciding every 30 s uses up 32-bit ids (a PostgreSQL
    # SERIAL) in two years, pruned or not, and every decision then failed to be recorded.
    # SQLite's INTEGER PRIMARY KEY, the row id, is 64-bit already (BIGINT would not be it).
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("at", _UTCDateTime, nullable=False),
    sa.Column("scaler", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("current_replicas", sa.Integer, nullable=False),
    sa.Column("ready_replicas", sa.Integer),
    sa.Column("observed_load", sa.Double),
    sa.Column("load_unit", sa.Text, nullable=False),
    sa.Column("window_start", _UTCDateTime, nullable=False),
    sa.Column("window_end", _UTCDateTime, nullable=False),
    sa.Column("quantile", sa.Double, nullable=False),
    sa.Column("forecast_peak", sa.Double),
    sa.Column("predictive", sa.Integer),
    sa.Column("capacity_per_replica", sa.Double, nullable=False),
    sa.Column("startup_delay_seconds", sa.Double, nullable=False),
    sa.Column("reactive_floor", sa.Integer, nullable=False),
    sa.Column("min_replicas", sa.Integer, nullable=False),
    sa.Column("max_replicas", sa.Integer, nullable=False),
    sa.Column("recommendation", sa.Integer, nullable=False),
    sa.Column("replicas", sa.Integer, nullable=False),
    sa.Column("hpa_replicas", sa.Integer),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("clamps", sa.JSON, nullable=False),
    sa.Column("override", sa.Text),
    sa.Column("fallback", sa.Text),
    sa.Column("model_version", sa.Text),
    sa.Column("backtest_score", sa.Double),
    sa.Column("applied", sa.Boolean, nullable=False),
    sa.Column("applied_at", _UTCDateTime),
    sa.Column("not_applied", sa.Text),
    sa.Index("ix_decisions_scaler_at", "scaler", "at"),
    # Retention's hourly prune and the review page of every scaler select by time alone:
    # without it each prune read the whole table (45 s a prune for 30 days of 1,000
    # scalers), inside a reconcile.
    sa.Index("ix_decisions_at", "at"),
)


ADDED_COLUMNS = ("not_applied",)
"""Columns added to the table after its first release, in place and without a new schema
version (as :func:`_widen_names` widens): an older surgecast reading or writing the same
log (a rolling upgrade of a highly available controller) never names them, and a log whose
role may not add them is read and written without them."""


class DecisionLog:
    """The decisions of every scaler in one database; safe to share between processes.

    Each method runs in its own transaction and has committed when it returns.
    """

    def __init__(self, url: str, *, create: bool = True, connect: bool = True) -> None:
        """Open (and on first use create) the log at ``url``; see the module docstring.

        Readers pass ``create=False``: a database without a decision log then raises
        :class:`LookupError` rather than gaining its tables, so a mistyped database name
        neither reads as "no decisions" nor is written to by a command that only reads.

        With ``connect=False`` nothing is opened yet: the first method called opens the
        schema, and while the database is down each call raises the database's error (as
        a log that went down mid-run does) and the next one tries again. The controller
        opens its log so when the database is down at start: the reconciler rides that
        outage out as it does one mid-run, where a refusal would crash-loop every replica.
        A URL that is no database (no driver, no such scheme) is refused here either way.
        """
        self.url = url
        self._create = create
        self._engine = _engine(url, writer=create)
        self._columns: tuple[sa.Column[Any], ...] | None = None
        """The table's columns that this log has (not an added one it may not add); None
        until the schema is opened."""
        self._opening = threading.Lock()  # the review page's thread and the reconciles'
        self.indexing: threading.Thread | None = None
        """Builds the indexes an older log lacks, when a writer opened one
        (:func:`_build_indexes`)."""
        if connect:
            try:
                self._open()
            except BaseException:
                self._engine.dispose()
                raise

    def close(self) -> None:
        """Release the connections."""
        self._engine.dispose()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, rec: DecisionRecord) -> int:
        """Store one decision before it is applied; its id, committed when this returns."""
        return self.record_many([rec])[0]

    def record_many(self, recs: Sequence[DecisionRecord]) -> list[int]:
        """Store several decisions in one transaction (a replay's); their ids, in order."""
        if any(rec.id is not None for rec in recs):
            raise ValueError("a record read from the log cannot be recorded again")
        if not recs:
            return []
        rows = [self._row(rec) for rec in recs]
        insert = _decisions.insert().returning(_decisions.c.id, sort_by_parameter_order=True)
        with self._engine.begin() as conn:
            result = conn.execute(insert, rows)
            return [int(row.id) for row in result]

    def mark_applied(self, record_id: int, at: datetime) -> None:
        """Note that decision ``record_id`` took effect at ``at``; the first time counts."""
        _require_aware(at, "at")
        self._open()
        update = (
            _decisions.update()
            .where(_decisions.c.id == record_id, _decisions.c.applied.is_(False))
            .values(applied=True, applied_at=at)
        )
        with self._engine.begin() as conn:
            if conn.execute(update).rowcount == 0 and not _exists(conn, record_id):
                raise KeyError(f"no decision {record_id} in the log")

    def mark_not_applied(self, record_id: int, reason: str) -> None:
        """Note why decision ``record_id`` was not applied (:attr:`DecisionRecord.not_applied`);
        a log without the column (:data:`ADDED_COLUMNS`) keeps the record as it is."""
        if not self._has("not_applied"):
            return
        update = (
            _decisions.update()
            .where(_decisions.c.id == record_id, _decisions.c.applied.is_(False))
            .values(not_applied=reason)
        )
        with self._engine.begin() as conn:
            if conn.execute(update).rowcount == 0 and not _exists(conn, record_id):
                raise KeyError(f"no decision {record_id} in the log")

    def pending(self, scaler: str) -> DecisionRecord | None:
        """The scaler's newest decision if it is a ``Scale`` one not marked applied.

        Such a decision was recorded, then the controller stopped before marking it
        applied: the change may or may not have been made. The restart protocol:

        1. Before deciding anything for a scaler, call ``pending(scaler)``.
        2. If the target already has ``pending.replicas`` replicas, the change was made:
           ``mark_applied(pending.id, now)``.
        3. Otherwise decide afresh (the old decision is stale by now) and record the new
           one; being newer, it supersedes the old, which stays unapplied in the history.

        Either way the change is never applied twice. ``ForecastOnly`` decisions are never
        pending (they are never applied) and ``HPAFloor`` ones re-apply harmlessly. Nor is
        a decision known not to have been applied (``not_applied``: an HPA on the target, a
        failed write): after a restart, the same count set by someone else would otherwise
        mark it applied.
        """
        query = (
            sa.select(*self._open())
            .where(_decisions.c.scaler == scaler)
            .order_by(_decisions.c.at.desc(), _decisions.c.id.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None or row["mode"] != "Scale" or row["applied"] or row.get("not_applied"):
            return None
        return _from_row(row)

    def at(self, scaler: str, when: datetime) -> DecisionRecord | None:
        """The decision in force at ``when``: the scaler's last one at or before it."""
        _require_aware(when, "when")
        query = (
            sa.select(*self._open())
            .where(_decisions.c.scaler == scaler, _decisions.c.at <= when)
            .order_by(_decisions.c.at.desc(), _decisions.c.id.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _from_row(row) if row is not None else None

    def scalers(self) -> list[str]:
        """Every scaler with at least one decision, sorted (for "did you mean" errors).

        Found one after the other through the index (a loose index scan: the next name
        after each), not by ``SELECT DISTINCT``, which reads the whole index: every
        ``surgecast decisions`` command and review page asks, and on a fleet's log (30 days
        of 1,000 scalers, 86 million decisions) that read took longer than the rest.
        """
        self._open()
        scaler = _decisions.c.scaler
        found = sa.select(sa.func.min(scaler).label("name")).cte("found", recursive=True)
        after = sa.select(sa.func.min(scaler)).where(scaler > found.c.name).scalar_subquery()
        found = found.union_all(sa.select(after).where(found.c.name.is_not(None)))
        query = sa.select(found.c.name).where(found.c.name.is_not(None)).order_by(found.c.name)
        with self._engine.connect() as conn:
            return [str(name) for name in conn.execute(query).scalars()]

    def counts(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, int]:
        """How many decisions each scaler has in ``[since, until)`` (those with none are
        left out), so a page can share its room between scalers before reading them."""
        self._open()
        query = sa.select(_decisions.c.scaler, sa.func.count()).group_by(_decisions.c.scaler)
        if since is not None:
            query = query.where(_decisions.c.at >= _require_aware(since, "since"))
        if until is not None:
            query = query.where(_decisions.c.at < _require_aware(until, "until"))
        with self._engine.connect() as conn:
            return {str(name): int(count) for name, count in conn.execute(query)}

    def prune(self, older_than: datetime) -> int:
        """Delete the decisions made before ``older_than`` (retention); how many went.

        They go :data:`PRUNE_BATCH` at a time, each batch its own transaction: the first
        prune of a log kept long (retention just set, or shortened) deletes millions of
        rows, and in one transaction it held SQLite's write lock for as long, and grew its
        WAL file by the size of everything deleted (SQLite keeps that file at its largest).
        A batch that finds fewer rows than it asked for ends the prune: the rest are gone,
        or another instance is deleting them.
        """
        _require_aware(older_than, "older_than")
        self._open()
        old = sa.select(_decisions.c.id).where(_decisions.c.at < older_than).limit(PRUNE_BATCH)
        delete = _decisions.delete().where(_decisions.c.id.in_(old.scalar_subquery()))
        removed = 0
        while True:
            with self._engine.begin() as conn:
                count = conn.execute(delete).rowcount
            removed += count
            if count < PRUNE_BATCH:
                return removed

    def list(
        self,
        scaler: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        reason: str | None = None,
        limit: int = 10_000,
    ) -> Sequence[DecisionRecord]:
        """Decisions oldest first, filtered; at most the newest ``limit`` of them.

        ``since`` is inclusive and ``until`` exclusive. ``reason`` matches a whole code
        (``ScaleUp/ForecastPeak``) or a family (``ScaleUp``), in any case: SQLite's LIKE
        ignores case and PostgreSQL's does not, so ``scaleup`` found the family on one
        backend and nothing on the other; no two codes differ only in case.
        """
        query = sa.select(*self._open())
        if scaler is not None:
            query = query.where(_decisions.c.scaler == scaler)
        if since is not None:
            query = query.where(_decisions.c.at >= _require_aware(since, "since"))
        if until is not None:
            query = query.where(_decisions.c.at < _require_aware(until, "until"))
        if reason is not None:
            code, typed = sa.func.lower(_decisions.c.reason), reason.lower()
            query = query.where((code == typed) | code.startswith(f"{typed}/", autoescape=True))
        query = query.order_by(_decisions.c.at.desc(), _decisions.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_from_row(row) for row in reversed(rows)]

    def _open(self) -> tuple[sa.Column[Any], ...]:
        """The table's columns this log has, opening the schema first if it is not yet
        (see ``connect`` in :meth:`__init__`); raises the database's error while it is down."""
        with self._opening:
            if self._columns is None:
                have = _open_schema(self._engine, self._create)
                # A writer builds what an older log lacks; a reader, which should not
                # spend that time, reads without.
                missing = _missing_indexes(self._engine) if self._create else []
                if self._create and _narrow_id(self._engine):
                    log.warning(
                        "the decision log's id is 32-bit (a log made before surgecast's ids"
                        " were 64-bit): past 2,147,483,647 decisions, pruned or not, none can"
                        " be recorded. Widen it once, in a quiet moment (it rewrites the"
                        " table): ALTER TABLE decisions ALTER COLUMN id TYPE bigint;"
                        " ALTER SEQUENCE decisions_id_seq AS bigint"
                    )
                self._columns = tuple(c for c in _decisions.columns if c.name in have)
                if missing:
                    self.indexing = threading.Thread(
                        target=_build_indexes,
                        args=(self._engine, missing),
                        name="decision-log-indexes",
                        daemon=True,
                    )
                    self.indexing.start()
            return self._columns

    def _has(self, column: str) -> bool:
        return any(c.name == column for c in self._open())

    def _row(self, rec: DecisionRecord) -> dict[str, Any]:
        """:func:`_to_row` with only the columns this log has."""
        row = _to_row(rec)
        return {c.name: row[c.name] for c in self._open() if c.name in row}


PRUNE_BATCH = 5_000
"""Decisions :meth:`DecisionLog.prune` deletes per transaction: about 2 MB of rows, a few
tens of milliseconds of SQLite's write lock."""


WAL_SIZE_LIMIT = 16 * 2**20
"""Bytes a SQLite log's WAL file is cut back to once checkpointed. SQLite otherwise keeps
the file at the largest size one transaction grew it to, for as long as the controller
runs: the decisions held through an outage and written at once when it ends (up to
10,000, some 5 MB), an index built on an older log (as big as the index)."""


CONNECT_TIMEOUT = 5
"""Seconds a PostgreSQL connection may take to open. The controller tries the log at
every reconcile, also while it is down: an unreachable host would otherwise hold each
reconcile for the operating system's TCP timeout (minutes), and scaling with it."""

POSTGRES_CONNECT_ARGS = {
    "connect_timeout": CONNECT_TIMEOUT,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}
"""libpq settings of the log's connections. The connect timeout bounds only the opening:
a server that vanishes mid-statement (a failover, a node lost) held the statement, and the
reconcile with it, for the kernel's retransmission timeout, some 15 minutes. TCP keepalives
and ``tcp_user_timeout`` (milliseconds) end such a connection within about 15-25 seconds."""


def _engine(url: str, writer: bool) -> Engine:
    """An engine for ``url``; a writer's SQLite connections get WAL and
    ``synchronous=NORMAL``, and PostgreSQL ones timeouts (:data:`POSTGRES_CONNECT_ARGS`).

    A reader leaves the journal mode alone: WAL is a lasting property of the file, and
    ``surgecast decisions`` pointed at another program's SQLite file (a wrong ``--db``) had
    switched it to WAL before finding no log in it. It reads a log in WAL mode all the same.
    """
    postgres = sa.engine.make_url(url).get_backend_name() == "postgresql"
    # PostgreSQL's connections are tried before use (pool_pre_ping) and replaced if the
    # server dropped them: after a restart or a failover, however brief and long over,
    # the next write otherwise failed on its dead pooled connection, and the reconciler
    # reported an outage (DecisionLogged=False, a Warning Event) for the scaler it was on.
    engine = sa.create_engine(
        url,
        connect_args=POSTGRES_CONNECT_ARGS if postgres else {},
        pool_pre_ping=postgres,
    )
    if engine.dialect.name == "sqlite" and writer:

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            cursor.close()

    return engine


SCHEMA_ATTEMPTS = 3
"""Tries at creating the schema. Two processes opening a new log at once (the replicas of
a highly available controller starting together) both find the tables missing and both
create them: the slower one fails on the other's table or version row, which a second
try, finding them, reads instead."""


class SchemaError(RuntimeError):
    """The database holds a table this surgecast cannot use as its decision log (another
    schema version, missing columns). The controller takes it for a log that is down, as
    it may first meet it at a late open, mid-reconcile."""


def _open_schema(engine: Engine, create: bool) -> set[str]:
    """Create or check the schema, trying again when a concurrent open created it first;
    the names of the table's columns.

    Only a failure after connecting is tried again: an unreachable database fails at once.
    """
    attempt = 0
    with engine.connect() as conn:
        while True:
            attempt += 1
            try:
                with conn.begin():
                    if not create and not sa.inspect(conn).has_table(_decisions.name):
                        raise LookupError(f"{engine.url.render_as_string()} holds no decision log")
                    return _create_schema(conn)
            except (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError):
                if attempt == SCHEMA_ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)


def _create_schema(conn: Connection) -> set[str]:
    """Create the tables if missing, add the :data:`ADDED_COLUMNS` an older log lacks, and
    check the stored schema version; the names of the table's columns.

    The version is checked first: a log of another version is left as it is, and a newer
    surgecast's table (a column renamed, say) is refused for its version rather than as a
    table "not made by surgecast"."""
    if sa.inspect(conn).has_table(_schema_version.name):
        _check_version(conn.execute(sa.select(_schema_version.c.version)).scalar())
    _metadata.create_all(conn)
    _widen_names(conn)
    _add_columns(conn)
    # create_all leaves an existing table as it is: one missing a column (made by hand, or
    # by a build that never shipped) failed at every read and write with the SQL of a
    # statement, instead of once, here, saying what is missing.
    have = {column["name"] for column in sa.inspect(conn).get_columns(_decisions.name)}
    missing = [
        column.name
        for column in _decisions.columns
        if column.name not in have and column.name not in ADDED_COLUMNS
    ]
    if missing:
        raise SchemaError(
            f"the decision log's table lacks the columns {', '.join(missing)}: it was not "
            f"made by surgecast (schema version {SCHEMA_VERSION})"
        )
    if conn.execute(sa.select(_schema_version.c.version)).scalar() is None:
        conn.execute(_schema_version.insert().values(version=SCHEMA_VERSION))
    return have


def _check_version(found: int | None) -> None:
    """Refuse a log of another schema version (None: none stored yet, a new log)."""
    if found is None or found == SCHEMA_VERSION:
        return
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"the decision log has schema version {found}, from a newer surgecast; this one "
            f"reads version {SCHEMA_VERSION}: upgrade it to use the log"
        )
    raise SchemaError(
        f"the decision log has schema version {found}; this surgecast reads version "
        f"{SCHEMA_VERSION}"
    )


def _add_columns(conn: Connection) -> None:
    """Add the :data:`ADDED_COLUMNS` a log made by an older surgecast lacks (all nullable:
    its rows know nothing of them). A role that may not alter the table (a reader, a
    controller granted only reads and writes) uses the log without them."""
    have = {column["name"] for column in sa.inspect(conn).get_columns(_decisions.name)}
    for name in ADDED_COLUMNS:
        if name in have:
            continue
        column = _decisions.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        try:
            with conn.begin_nested():
                conn.execute(sa.text(f'ALTER TABLE {_decisions.name} ADD COLUMN "{name}" {kind}'))
        except sa.exc.DBAPIError:
            pass


def _missing_indexes(engine: Engine) -> list[sa.Index]:
    """The indexes a log made by an older surgecast lacks (``create_all`` makes them only
    with the table), or has but cut short (see :func:`_build_indexes`)."""
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        have = {index["name"] for index in sa.inspect(conn).get_indexes(_decisions.name)}
        return [
            index
            for index in _decisions.indexes
            if index.name not in have or (postgres and not _valid_pg_index(conn, str(index.name)))
        ]


def _build_indexes(engine: Engine, indexes: Sequence[sa.Index]) -> None:
    """Build ``indexes`` (from :func:`_missing_indexes`), in a thread of their own.

    On a big log that takes minutes, and the controller opens its log before serving its
    probes: built in the open, the liveness probe killed the pod mid-build, at every
    restart. Meanwhile the log is used without them. On PostgreSQL the build is
    ``CONCURRENTLY``, outside any transaction: a plain one blocks every write to the table
    until it ends, and in a rolling upgrade the old leader, still writing its decisions,
    would stall its reconciles. A build cut short (the pod killed) leaves an invalid index,
    unused by every query, which the next writer builds again. On SQLite the build holds
    the write lock, and the controller meanwhile holds its decisions as in any outage. A
    role that may not create indexes uses the log without them.
    """
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        if postgres:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for index in indexes:
            columns = ", ".join(f'"{column.name}"' for column in index.columns)
            build = f"CREATE INDEX IF NOT EXISTS {index.name} ON {_decisions.name} ({columns})"
            log.info("building index %s of the decision log", index.name)
            try:
                if postgres:
                    conn.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}"))
                    conn.execute(sa.text(build.replace("INDEX", "INDEX CONCURRENTLY", 1)))
                else:
                    conn.execute(sa.text(build))
                    conn.commit()
            except sa.exc.DBAPIError as exc:
                log.warning("index %s of the decision log not built: %s", index.name, exc.orig)
                if not postgres:
                    conn.rollback()


def _valid_pg_index(conn: Connection, name: str) -> bool:
    """Whether PostgreSQL index ``name`` was built to the end (see :func:`_build_indexes`)."""
    query = sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)")
    return bool(conn.execute(query, {"name": name}).scalar())


def _narrow_id(engine: Engine) -> bool:
    """Whether a PostgreSQL log's id is the 32-bit SERIAL of logs made before it was
    64-bit. Widening it is not done on opening: it rewrites the table under an exclusive
    lock, which would hold every decision of a large fleet for as long."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        columns = sa.inspect(conn).get_columns(_decisions.name)
    kind = next(c["type"] for c in columns if c["name"] == "id")
    return isinstance(kind, sa.Integer) and not isinstance(kind, sa.BigInteger)


def _widen_names(conn: Connection) -> None:
    """Make the text columns of a log created by an older surgecast unbounded, as new ones are.

    They were ``VARCHAR(N)``, which PostgreSQL enforces and SQLite ignores: the scaler
    column held 253 characters, but ``NAMESPACE/NAME`` reaches 317 (a 63-character
    namespace and a 253-character name), and every decision of such a scaler failed on
    PostgreSQL only. From ``VARCHAR`` to ``TEXT`` rewrites neither the table nor its index.
    """
    if conn.dialect.name != "postgresql":
        return
    narrow = [
        column["name"]
        for column in sa.inspect(conn).get_columns(_decisions.name)
        if isinstance(column["type"], sa.String) and column["type"].length is not None
    ]
    if not narrow:
        return
    changes = ", ".join(f'ALTER COLUMN "{name}" TYPE TEXT' for name in narrow)
    try:
        with conn.begin_nested():
            conn.execute(sa.text(f"ALTER TABLE {_decisions.name} {changes}"))
    except sa.exc.DBAPIError:
        # A role that may only read (on-call's ``surgecast decisions``, a standby) reads
        # the old columns as well; the controller, which writes, widens them.
        pass


def _exists(conn: Connection, record_id: int) -> bool:
    query = sa.select(_decisions.c.id).where(_decisions.c.id == record_id)
    return conn.execute(query).first() is not None


def _to_row(rec: DecisionRecord) -> dict[str, Any]:
    """A record as table columns: the delay in seconds, the clamps as a JSON list."""
    row = {name: getattr(rec, name) for name in _RECORD_COLUMNS}
    row["startup_delay_seconds"] = rec.startup_delay.total_seconds()
    row["clamps"] = list(rec.clamps)
    return row


def _from_row(row: RowMapping) -> DecisionRecord:
    # A log without an added column (:data:`ADDED_COLUMNS`) has no value for it.
    values: dict[str, Any] = {name: row.get(name) for name in _RECORD_COLUMNS}
    return DecisionRecord(
        **values,
        id=int(row["id"]),
        startup_delay=timedelta(seconds=row["startup_delay_seconds"]),
        clamps=tuple(row["clamps"]),
    )


_RECORD_COLUMNS = tuple(
    f.name for f in fields(DecisionRecord) if f.name not in ("id", "startup_delay", "clamps")
)
"""Record fields stored as they are, in a column of the same name."""


def _require_aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {moment}")
    return moment


def _as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive time is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def shown_url(url: str) -> str:
    """``url`` with any password masked: the message goes to logs and terminals.

    A URL SQLAlchemy cannot parse is shown masked too: a typo elsewhere in it
    (``postgresql+psycopg//u:PASSWORD@db``, a port that is no number) leaves the password
    in place, and the refusal of that very typo is where it would be printed. libpq also
    takes the password as a ``?password=`` parameter, which SQLAlchemy shows as it is.
    """
    try:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):  # a port that is no number is a ValueError
        shown = re.sub(r"(//[^/:@]*:)[^/]*@", r"\1***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", shown)
