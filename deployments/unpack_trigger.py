"""The trigger that runs the unpack-archive deployment for each archive delivered.

    deployment = unpack_archive.to_deployment("unpack-archive", triggers=[unpack_trigger()])

It reacts to `regards-order.file.delivered` events whose resource name (the file's name)
ends in one of the suffixes regards_order.unpack reads. Prefect's server matches label values
as glob patterns (`*` is any run of characters, case counts), so `*.tar.gz` is the files
whose name ends so. Each parameter is a Jinja template rendered from the event; a template
that is one `{{ expression }}` keeps the value's JSON type, and `.get(label, '')` gives an
empty text for a label the event does not carry. Parameters left out (storage_options) keep the
deployment's own values: a triggered run's parameters are merged over them.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.events import DeploymentEventTrigger
from prefect.events.schemas.automations import Posture

from regards_order.unpack import ARCHIVE_SUFFIXES

#: The event the download flow emits once a file is verified at its target.
DELIVERED_EVENT = "regards-order.file.delivered"


def unpack_trigger(*, enabled: bool = True) -> DeploymentEventTrigger:
    """One run of the deployment per delivered archive, with its target and REGARDS ids."""
    return DeploymentEventTrigger(
        name="unpack-delivered-archives",
        description="Unpack each delivered .zip, .tar, .tar.gz or .tgz beside it.",
        enabled=enabled,
        expect={DELIVERED_EVENT},
        match={
            "prefect.resource.id": "regards-order.file.*",
            "prefect.resource.name": [f"*{suffix}" for suffix in ARCHIVE_SUFFIXES],
        },
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
        parameters={
            "target": "{{ event.payload.target }}",
            "order_id": "{{ event.resource.get('regards.order.id', '') }}",
            "file_id": "{{ event.resource.get('regards.file.id', '') }}",
            "product_id": "{{ event.resource.get('regards.product.id', '') }}",
        },
    )
