"""Targets the flow tests deliver to: a local folder, fsspec memory, and S3 on moto's server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.spec import AbstractFileSystem

from regards_order.paths import MANIFEST_NAME
from regards_order.record import RECORD_FOLDER
from regards_order.transfer import PARTIAL_SUFFIX


@dataclass
class DeliveryTarget:
    """A target URL with what a test needs to look at it from outside the pipeline."""

    kind: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    endpoint: str | None = None

    @property
    def fs(self) -> AbstractFileSystem:
        filesystem, _ = fsspec.core.url_to_fs(self.url, **self.storage_options)
        filesystem.invalidate_cache()
        return filesystem

    @property
    def root(self) -> str:
        _, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return str(root).rstrip("/")

    def read(self, name: str) -> bytes:
        data: bytes = self.fs.cat_file(f"{self.root}/{name}")
        return data

    def write(self, name: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.root}/{name}", data)

    def everything(self) -> list[str]:
        """Every file under the target's root, as paths relative to it."""
        fs = self.fs
        if not fs.exists(self.root):
            return []
        return sorted(p.removeprefix(self.root + "/") for p in fs.find(self.root))

    def names(self) -> set[str]:
        """The delivered files: everything but the delivery record and the MD5SUMS manifest."""
        return {
            p
            for p in self.everything()
            if not p.startswith(RECORD_FOLDER + "/") and p != MANIFEST_NAME
        }

    def leftovers(self) -> list[str]:
        return [p for p in self.everything() if p.endswith(PARTIAL_SUFFIX)]

    def pending_uploads(self) -> list[Any]:
        """Multipart uploads started and neither completed nor aborted (S3 only)."""
        if self.kind != "s3":
            return []
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint)
        bucket = self.root.split("/", 1)[0]
        uploads: list[Any] = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return uploads


def make_target(kind: str, local_root: str, s3_endpoint: str | None) -> DeliveryTarget:
    """A fresh, empty target of `kind` (a new bucket for S3)."""
    unique = uuid.uuid4().hex[:12]
    if kind == "local":
        return DeliveryTarget(kind, f"{local_root}/delivery")
    if kind == "memory":
        return DeliveryTarget(kind, f"memory://delivery-{unique}/order")
    assert s3_endpoint is not None
    options = {"endpoint_url": s3_endpoint}
    bucket = f"bucket-{unique}"
    target = DeliveryTarget(kind, f"s3://{bucket}/archive/regards", options, s3_endpoint)
    target.fs.mkdir(bucket)
    return target
