"""What became of each file and of the order: the records a run returns and prints."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field

from regards_order.models import OrderFile, printable


def files(count: int) -> str:
    """`count` files, in words: "1 file", "3 files"."""
    return f"{count} file" if count == 1 else f"{count} files"


class Outcome(StrEnum):
    """The end of one file's journey in one run."""

    DOWNLOADED = "downloaded"
    SKIPPED = "skipped"  # already at the target and verified: nothing fetched
    FAILED = "failed"


class EndReason(StrEnum):
    """Why a run ended. Decided in one place (`OrderRun`); the problems, the exit code and the
    flow run's state follow from it and from the files."""

    COMPLETE = "complete"  # the order is final and every file known was settled
    GONE = "gone"  # EXPIRED or DELETED: the server no longer serves its files
    FORBIDDEN = "forbidden"  # 403: the order is not the user's
    NOT_FOUND = "not found"  # 404: no such order
    UNREADABLE = "unreadable"  # the order could not be read (a lasting or permanent error)
    DEADLINE = "deadline"  # the run's own time limit passed
    STOPPED = "stopped"  # SIGTERM, Ctrl-C, a cancelled flow run
    BROKEN = "broken"  # the pipeline itself failed (Prefect could not start, a bug)


class FileOutcome(BaseModel):
    """One file's result: where it is, what it is, how it went."""

    model_config = ConfigDict(frozen=True)

    key: str
    id: int | None
    # Named as REGARDS names it in the JSON report (`--json`): dump with by_alias=True.
    product_id: str | None = Field(serialization_alias="productId")
    filename: str
    target: str
    size: int | None
    md5: str | None
    outcome: Outcome
    attempts: int
    error: str | None = None
    #: A failure that may pass if tried again later (the transfer's own retries are spent).
    retryable: bool = Field(default=False, exclude=True)

    @classmethod
    def for_file(
        cls,
        file: OrderFile,
        *,
        target: str,
        outcome: Outcome,
        attempts: int,
        size: int | None = None,
        md5: str | None = None,
        error: str | None = None,
        retryable: bool = False,
    ) -> FileOutcome:
        """An outcome that carries the identity of `file`."""
        return cls(
            key=file.key,
            id=file.id,
            product_id=file.product_id,
            filename=file.filename,
            target=target,
            size=size if size is not None else file.size,
            md5=md5,
            outcome=outcome,
            attempts=attempts,
            error=error,
            retryable=retryable,
        )


class OrderCreated(BaseModel):
    """The order a catalogue request created (or had created before, for this target)."""

    model_config = ConfigDict(frozen=True)

    order_id: int
    #: GRANTED: created now; RECORDED: created by an earlier run for the same request.
    status: str
    products: int | None = None
    files: int | None = None
    size: int | None = None
    ordered: bool = True
    queries: tuple[str, ...] = ()
    label: str | None = None
    correlation_id: str | None = None


class OrderReport(BaseModel):
    """The final word on an order: why the run ended, every file's outcome, what went wrong."""

    order_id: int
    #: The order's status as last read from the server (UNKNOWN when it never was).
    status: str
    end: EndReason
    files: list[FileOutcome]
    #: Files the server itself has in ERROR: never listed, answered 422 by id.
    files_in_error: int = 0
    problems: list[str] = []
    warnings: list[str] = []
    #: The order a catalogue request created, when the run began with one (order-and-download).
    order: OrderCreated | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """How many files ended each way."""
        return {kind.value: sum(1 for f in self.files if f.outcome is kind) for kind in Outcome}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Every file of the order is at the target, verified, and nothing else went wrong."""
        return (
            self.end is EndReason.COMPLETE
            and not self.problems
            and all(f.outcome is not Outcome.FAILED for f in self.files)
        )

    def summary(self) -> str:
        """One line saying how the order ended."""
        failed = [f for f in self.files if f.outcome is Outcome.FAILED]
        parts = []
        if failed:
            shown = "; ".join(printable(f"{f.filename or f.key}: {f.error}") for f in failed[:3])
            more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
            parts.append(f"{len(failed)} of {files(len(self.files))} failed: {shown}{more}")
        parts.extend(printable(problem) for problem in self.problems)
        if not parts:
            counts = self.counts
            return (
                f"order {self.order_id} delivered: {files(len(self.files))} verified "
                f"({counts['downloaded']} downloaded, {counts['skipped']} already there)"
            )
        return f"order {self.order_id} not delivered: " + "; ".join(parts)
