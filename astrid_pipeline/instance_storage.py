"""A SQLite event log that keeps its database connections open, for a local Dagster deployment.

Dagster's :class:`~dagster._core.storage.event_log.sqlite.SqliteEventLogStorage` creates a new SQLAlchemy
engine, opens the shard file, commits and disposes of the engine for every read and write: each event of
a run costs two or three such round trips. A sky batch records about 25 events per region (a
materialization per product, a check evaluation per check); measured with ``cProfile`` on 3 regions of
512² (2 cores), the open/close round trips were half of the run's time outside the science code (0.94 s of
orchestration per region with Dagster's storage, 0.41 s with this one).

:class:`PooledSqliteEventLogStorage` is the same storage (same files, same schema: an existing
``DAGSTER_HOME`` reads the same), with one engine per shard kept for the life of the process (a small
queue pool, connections returned after each transaction, so no lock is held between writes and other
processes keep reading and writing with SQLite's WAL and busy timeout), at most :data:`MAX_ENGINES` shards
open at once (least recently used closed first), so a long-lived webserver that reads many runs keeps a
bounded number of files open. Pool slots are claimed in one atomic statement
(:meth:`PooledSqliteEventLogStorage._claim_concurrency_slot`), so a pool limit holds across processes.
``astrid_pipeline.instance.ensure_home`` names it in ``dagster.yaml``; a deployment with PostgreSQL
storage does not use it.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from dagster._core.storage.event_log.sqlite import sqlite_event_log as _sqlite

#: most shard engines one process keeps open (the index shard and the runs it is writing or reading)
MAX_ENGINES = 16


class PooledSqliteEventLogStorage(_sqlite.SqliteEventLogStorage):
    """:class:`SqliteEventLogStorage` with one kept-open engine per shard (see the module docstring)."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict = OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "PooledSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str):
        from sqlalchemy.pool import QueuePool

        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = _sqlite.create_engine(self.conn_string_for_shard(shard), poolclass=QueuePool, pool_size=1,
                                       max_overflow=4, connect_args={"timeout": _sqlite.SQLITE_BUSY_TIMEOUT_SECONDS})
        self._engines[shard] = engine
        while len(self._engines) > MAX_ENGINES:
            _, old = self._engines.popitem(last=False)
            old.dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def _claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str):
        """Take a free slot of the pool in one UPDATE statement (atomic in SQLite).

        Dagster's version selects a free slot (``SELECT ... FOR UPDATE``, which SQLite ignores) and then
        updates it by id, so two processes can both take the same slot and a pool of 2 runs 3 steps
        (seen in ``orchestration/test_pools.py``). Here the update only succeeds on a slot that is still
        free, so the slot rows are a true semaphore across processes.
        """
        import sqlalchemy as db
        from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
        from dagster._utils.concurrency import ConcurrencySlotStatus

        t = ConcurrencySlotsTable
        free = db.and_(t.c.concurrency_key == concurrency_key, t.c.step_key == None,  # noqa: E711
                       t.c.deleted == False)  # noqa: E712
        first_free = db.select(t.c.id).where(free).limit(1).scalar_subquery()
        with self.index_connection() as conn:
            taken = conn.execute(t.update().values(run_id=run_id, step_key=step_key)
                                 .where(db.and_(t.c.id == first_free, free))).rowcount
        return ConcurrencySlotStatus.CLAIMED if taken else ConcurrencySlotStatus.BLOCKED

    def wipe(self) -> None:
        for shard in list(self._engines):
            self._drop(shard)
        super().wipe()

    def _drop(self, shard: str) -> None:
        engine = self._engines.pop(shard, None)
        if engine is not None:
            engine.dispose()

    def dispose(self) -> None:
        for shard in list(self._engines):
            self._drop(shard)
        super().dispose()
