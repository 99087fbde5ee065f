"""Baskets of the simulator: dataset selections built from catalogue queries, as rs-order does.

A query added to a basket (``add_query``, BasketService.addSelection) becomes one dated items
selection in the selection of each dataset it finds orderable files in; a dataset selection
orders every product that any of its items' queries finds. Filters given to an auto-order apply
to every selection of the basket, including those that were there before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from regards_order.simulator.catalog import CatalogFile, CatalogProduct, DatasetEntry, SimCatalog
from regards_order.simulator.lucene import QueryError

JSON = dict[str, Any]

# rs-order's messages, which an auto-order's refusal shows as "<exception>: <message>".
EMPTY_SELECTION = "EmptySelectionException: This selection contains no file that can be ordered"
CATALOG_SEARCH = (
    "CatalogSearchException: Error applying search queries. Please correct your requests. "
    "Maybe your queries contains unknown attributes"
)
_QUICKLOOKS = frozenset({"QUICKLOOK_SD", "QUICKLOOK_MD", "QUICKLOOK_HD"})


class SelectionRefused(Exception):
    """A query the basket cannot take: ``message`` as an auto-order answers it."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


@dataclass
class ItemsSelection:
    """One query added to a dataset selection, with what it found there."""

    date: str
    query: str
    objects_count: int
    files_count: int
    files_size: int

    def view(self) -> JSON:
        request = {
            "engineType": "legacy",
            "searchParameters": {"q": [self.query]},
            "selectionDate": self.date,
        }
        return {
            "date": self.date,
            "selectionRequest": request,
            "objectsCount": self.objects_count,
            "filesCount": self.files_count,
            "filesSize": self.files_size,
            "quota": 0,
        }


@dataclass
class DatasetSelection:
    id: int
    dataset: DatasetEntry
    items: list[ItemsSelection] = field(default_factory=list)
    # fileSelectionDescription: {"fileTypes": ["RAWDATA", "QUICKLOOK"], "fileNamePattern": ...}
    file_filter: JSON | None = None

    def products(self, catalog: SimCatalog) -> list[CatalogProduct]:
        """Every product of the dataset that one of the items' queries finds."""
        tests = [catalog.matcher(item.query) for item in self.items]
        return [
            p
            for p in catalog.products
            if p.dataset == self.dataset and any(test(p.document) for test in tests)
        ]

    def files(self, catalog: SimCatalog) -> Iterator[tuple[CatalogProduct, CatalogFile]]:
        """The files an order of this selection holds: orderable, and through the filters."""
        types, pattern = _filter(self.file_filter)
        for product in self.products(catalog):
            for f in product.orderable_files():
                if types and not _type_allowed(f.data_type, types):
                    continue
                if pattern is not None and pattern.fullmatch(f.filename) is None:
                    continue
                yield product, f

    def view(self, catalog: SimCatalog) -> JSON:
        products = self.products(catalog)
        files = [f for p in products for f in p.orderable_files()]
        selection: JSON = {
            "id": self.id,
            "datasetIpid": self.dataset.id,
            "datasetLabel": self.dataset.label,
            "objectsCount": len(products),
            "filesCount": len(files),
            "filesSize": sum(f.size for f in files),
            "quota": 0,
            "itemsSelections": [item.view() for item in self.items],
        }
        if self.file_filter is not None:
            selection["fileSelectionDescription"] = self.file_filter
        return selection


@dataclass
class Basket:
    id: int
    owner: str
    selections: list[DatasetSelection] = field(default_factory=list)

    def view(self, catalog: SimCatalog) -> JSON:
        return {
            "id": self.id,
            "owner": self.owner,
            "datasetSelections": [s.view(catalog) for s in self.selections],
            "quota": 0,
        }


def add_query(
    basket: Basket, query: str, catalog: SimCatalog, date: str, next_id: Iterator[int]
) -> None:
    """Add ``query`` to ``basket``; ``SelectionRefused`` as rs-order refuses it."""
    try:
        found = catalog.select(query)
    except QueryError as exc:
        # The catalogue answers 400; rs-order only says its search failed.
        raise SelectionRefused(CATALOG_SEARCH, "INTERNAL_ERROR") from exc
    per_dataset: dict[str, list[CatalogProduct]] = {}
    for product in found:
        if any(True for _ in product.orderable_files()):
            per_dataset.setdefault(product.dataset.id, []).append(product)
    if not per_dataset:
        raise SelectionRefused(EMPTY_SELECTION, "EMPTY_ORDER")
    for dataset in catalog.datasets:
        products = per_dataset.get(dataset.id)
        if not products:
            continue
        selection = next((s for s in basket.selections if s.dataset == dataset), None)
        if selection is None:
            selection = DatasetSelection(next(next_id), dataset)
            basket.selections.append(selection)
        files = [f for p in products for f in p.orderable_files()]
        selection.items.append(
            ItemsSelection(date, query, len(products), len(files), sum(f.size for f in files))
        )


def file_filter(data_types: list[str], filename_regexp: str | None) -> JSON:
    """The fileSelectionDescription an auto-order's ``filters`` set."""
    described: JSON = {"fileTypes": sorted(set(data_types))}
    if filename_regexp is not None:
        described["fileNamePattern"] = filename_regexp
    return described


def _filter(described: JSON | None) -> tuple[frozenset[str], re.Pattern[str] | None]:
    if described is None:
        return frozenset(), None
    pattern = described.get("fileNamePattern")
    return frozenset(described["fileTypes"]), re.compile(pattern) if pattern else None


def _type_allowed(data_type: str, types: frozenset[str]) -> bool:
    light = "QUICKLOOK" if data_type in _QUICKLOOKS else data_type
    return light in types
