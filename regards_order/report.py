"""What became of each file and of the order: the records a run returns and prints."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field

from regards_order.errors import RegardsOrderError
from regards_order.models import OrderFile, printable


class Outcome(StrEnum):
    """The end of one file's journey in one run."""

    DOWNLOADED = "downloaded"
    SKIPPED = "skipped"  # already at the target and verified: nothing fetched
    FAILED = "failed"


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
        )


class OrderReport(BaseModel):
    """The final word on an order: its status, every file's outcome, and why it is not done."""

    order_id: int
    status: str
    files: list[FileOutcome]
    problems: list[str] = []
    warnings: list[str] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        """How many files ended each way."""
        return {kind.value: sum(1 for f in self.files if f.outcome is kind) for kind in Outcome}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Every file of the order is at the target, verified, and nothing else went wrong."""
        return not self.problems and all(f.outcome is not Outcome.FAILED for f in self.files)

    def summary(self) -> str:
        """One line saying how the order ended."""
        failed = [f for f in self.files if f.outcome is Outcome.FAILED]
        parts = []
        if failed:
            shown = "; ".join(printable(f"{f.filename or f.key}: {f.error}") for f in failed[:3])
            more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
            parts.append(f"{len(failed)} of {len(self.files)} files failed: {shown}{more}")
        parts.extend(printable(problem) for problem in self.problems)
        if not parts:
            counts = self.counts
            return (
                f"order {self.order_id} delivered: {len(self.files)} files verified "
                f"({counts['downloaded']} downloaded, {counts['skipped']} already there)"
            )
        return f"order {self.order_id} not delivered: " + "; ".join(parts)


class DeliveryIncomplete(RegardsOrderError):
    """Raised at the end of a run that did not deliver every file; carries the full report."""

    def __init__(self, report: OrderReport) -> None:
        super().__init__(report.summary())
        self.report = report

    def __reduce__(self) -> tuple[object, ...]:
        return (DeliveryIncomplete, (self.report,))
