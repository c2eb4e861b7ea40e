"""Counts that reconcile, stage by stage, as an operator checks the pipeline after an incident.

What entered and what left each stage, and the identities that must hold:

* Kafka -> consumer: per partition, the records between the log start and the group's committed offset
  are each accounted for in Mongo: read into a staged message (``sources``: every position a message was
  read from, duplicates included) or dead-lettered by the consumer. Records past the committed offset are in
  flight (``lag``).
* staging: every staged message is ``pending``, ``done`` or ``dead_lettered``; the open (not replayed)
  inference dead letters are exactly the ``dead_lettered`` ones.
* warehouse: one row per ``done`` message; rows of ``pending`` messages are in flight (written, not yet
  marked done), so ``done <= rows <= done + pending``.

``drained`` (no lag, nothing pending) is reported separately: a running pipeline is never drained, a
finished one must be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sentiment_workers.adapters.kafka import partition_offsets
from sentiment_workers.adapters.mongo import DEAD_LETTERED, DONE, PENDING, StagingStore
from sentiment_workers.adapters.mysql import Warehouse
from sentiment_workers.config import WorkerConfig


@dataclass(frozen=True)
class PartitionCounts:
    partition: int
    beginning: int
    end: int
    committed: int
    """The group's committed offset (the log start when the group never committed)."""
    staged: int
    """Positions in ``[beginning, committed)`` read into a staged message."""
    dead_lettered: int
    """Positions in ``[beginning, committed)`` dead-lettered by the consumer (open dead letters)."""

    @property
    def accounted(self) -> int:
        return self.staged + self.dead_lettered

    @property
    def consumed(self) -> int:
        return self.committed - self.beginning

    @property
    def lag(self) -> int:
        return self.end - self.committed


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Reconciliation:
    topic: str
    group: str
    partitions: list[PartitionCounts]
    statuses: dict[str, int]
    dead_letters: list[tuple[str, str, bool, int]]
    rows: int
    altered: int = 0
    """Staged messages changed to be storable (lone surrogates replaced; original bytes in ``raw``)."""
    checks: list[Check] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.checks = self._checks()

    def open_dead_letters(self, stage: str) -> int:
        return sum(n for s, _, replayed, n in self.dead_letters if s == stage and not replayed)

    @property
    def adds_up(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def drained(self) -> bool:
        return all(p.lag == 0 for p in self.partitions) and self.statuses.get(PENDING, 0) == 0

    def _checks(self) -> list[Check]:
        checks = []
        for p in self.partitions:
            checks.append(
                Check(
                    f"kafka partition {p.partition}",
                    p.accounted == p.consumed,
                    f"{p.consumed} records committed, {p.accounted} accounted for in staging/dead letters",
                )
            )
        known = {PENDING, DONE, DEAD_LETTERED}
        unknown = {s: n for s, n in self.statuses.items() if s not in known}
        checks.append(
            Check("staging statuses", not unknown, f"unknown statuses: {unknown}" if unknown else "ok")
        )
        open_infer, dead = self.open_dead_letters("infer"), self.statuses.get(DEAD_LETTERED, 0)
        checks.append(
            Check(
                "inference dead letters",
                open_infer == dead,
                f"{open_infer} open inference dead letters, {dead} staged messages dead-lettered",
            )
        )
        done, pending = self.statuses.get(DONE, 0), self.statuses.get(PENDING, 0)
        checks.append(
            Check(
                "warehouse rows",
                done <= self.rows <= done + pending,
                f"{self.rows} rows, {done} done, {pending} pending",
            )
        )
        return checks

    def lines(self) -> list[str]:
        """The report, one line per fact."""
        out = [f"kafka: topic {self.topic}, group {self.group}"]
        for p in self.partitions:
            out.append(
                f"  partition {p.partition}: log {p.beginning}..{p.end}, committed {p.committed}, "
                f"lag {p.lag}, accounted {p.accounted}/{p.consumed}"
            )
        out.append(
            f"consume: {sum(p.consumed for p in self.partitions)} records committed, "
            f"{sum(p.staged for p in self.partitions)} read into staged messages (duplicates included), "
            f"{sum(p.dead_lettered for p in self.partitions)} dead-lettered"
        )
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(self.statuses.items())) or "none"
        out.append(f"staging: {sum(self.statuses.values())} messages: {statuses}")
        if self.altered:
            out.append(f"staging: {self.altered} messages altered to be storable (see their altered and raw)")
        for stage, reason, replayed, n in self.dead_letters:
            out.append(
                f"dead letters: stage {stage}, reason {reason}{' (replayed)' if replayed else ''}: {n}"
            )
        out.append(f"warehouse: {self.rows} rows")
        for check in self.checks:
            out.append(f"{'OK  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
        out.append("drained: yes" if self.drained else "drained: no (records or messages in flight)")
        return out


async def reconcile(config: WorkerConfig, store: StagingStore, warehouse: Warehouse) -> Reconciliation:
    """Read every count (Kafka offsets first, so staging can only be ahead of them, never behind)."""
    offsets = await partition_offsets(config)
    windows = {p: (begin, begin if committed is None else committed) for p, begin, _, committed in offsets}
    accounted = await store.count_positions(config.kafka_topic, windows)
    partitions = [
        PartitionCounts(p, begin, end, windows[p][1], *accounted.get(p, (0, 0)))
        for p, begin, end, _ in offsets
    ]
    return Reconciliation(
        topic=config.kafka_topic,
        group=config.kafka_group_id,
        partitions=partitions,
        statuses=await store.count_by_status(),
        dead_letters=await store.count_dead_letters(),
        rows=await warehouse.count(),
        altered=await store.count_altered(),
    )
