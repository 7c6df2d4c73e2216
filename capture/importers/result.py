"""What importing one source did (:class:`ImportResult`), with the records it could not import
(:class:`BadRecord`) and the warnings it tells: unknown record types, times and counts no event
can carry, credential files left out of the trees it brought. Made by :func:`~agtrace.capture.importers.base.import_source`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..adapter import unknown_warning


@dataclass
class BadRecord:
    """A source record that could not be imported."""

    location: str
    message: str


@dataclass
class ImportResult:
    """What importing one source did."""

    source: str
    format: str
    runs: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    bad_records: list[BadRecord] = field(default_factory=list)
    unknown: dict[str, int] = field(default_factory=dict)
    """Records of types the importer does not know, counted by type (a warning, see above)."""
    unknown_at: dict[str, str] = field(default_factory=dict)
    """The first location of each unknown type."""
    ignored_times: int = 0
    """Records whose time no event can carry (NaN, past 2262), imported at the time before them."""
    ignored_time_at: str = ""
    """The first of them: its location and what its time was."""
    ignored_counts: int = 0
    """Counters that were no number (``retries: "three"``, ``passed: NaN``), counted 0."""
    ignored_count_at: str = ""
    """The first of them: its location, the counter's name and its value."""
    left_out: int = 0
    """Files left out of the trees the source brought (credential files), counted once per run."""
    left_out_first: str = ""
    """The first of them and why (``.env (credential)``)."""
    parents: dict[str, str] = field(default_factory=dict)
    """For a run that continues an earlier import of its session: run id -> that run's id."""
    error: str = ""
    """Why the source failed (nothing of it was stored); "" when it did not."""
    skipped: str = ""
    """Why a file met in a searched directory was not imported (it is no source); ""."""

    @property
    def outcome(self) -> str:
        """``imported`` (runs stored or found stored before), ``skipped`` or ``failed``."""
        return "failed" if self.error else "skipped" if self.skipped else "imported"

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["bad_records"] = [b.__dict__ for b in self.bad_records]
        d["outcome"] = self.outcome
        return d

    def warning(self) -> str:
        """What to tell about unknown records (see :func:`unknown_warning`), or ""."""
        text = unknown_warning(self.unknown, f"{self.format} importer")
        first = ", ".join(f"{t} at {self.unknown_at[t]}" for t in sorted(self.unknown_at))
        said = [f"{text}; first {first}"] if text else []
        if self.ignored_times:
            n = self.ignored_times
            said.append(f"{n} record{'s' if n != 1 else ''} had a time no event can carry, ignored "
                        f"(imported at the time of the record before): first {self.ignored_time_at}")
        if self.ignored_counts:
            n = self.ignored_counts
            said.append(f"{n} record{'s' if n != 1 else ''} had a count that is no number, counted 0: "
                        f"first {self.ignored_count_at}")
        if self.left_out:
            n = self.left_out
            said.append(f"{n} credential file{'s were' if n != 1 else ' was'} left out of the imported trees, as a "
                        f"capture leaves them out (first {self.left_out_first}); `agtrace replay "
                        f"{self.runs[0][:10] if len(self.runs) == 1 else 'RUN'} --part N` names them")
        return "; ".join(said)
