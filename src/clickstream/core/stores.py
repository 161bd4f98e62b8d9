"""The store registry: one YAML file per store under ``stores/``, one pydantic model.

The registry is the source of truth; the store deployments in prefect.yaml are generated
from it (``clickstream stores sync``) and checked against it (``clickstream stores check``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clickstream import settings

STORE_ID_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
# A database name doubles as a DuckDB file stem and a Postgres database/schema name, so it
# must be a plain lowercase SQL identifier: no quoting, no path separators, no dots.
DATABASE_PATTERN = r"^[a-z][a-z0-9_]*$"

CollisionStrategy = Literal["ENQUEUE", "CANCEL_NEW"]


class Store(BaseModel):
    """One store: its own warehouse database and its own local day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_id: str = Field(
        min_length=2,
        max_length=40,
        pattern=STORE_ID_PATTERN,
        description="Slug; also the name of the store's deployment.",
    )
    display_name: str = Field(min_length=1, max_length=120)
    database: str = Field(
        min_length=1,
        max_length=63,
        pattern=DATABASE_PATTERN,
        description="Warehouse database (DuckDB file stem / Postgres database).",
    )
    timezone: str = Field(description="IANA time zone; defines the store-local day `ds`.")
    active: bool = True
    schedule_interval_seconds: int = Field(
        default=1800, ge=60, le=86400, description="Interval of the regular schedule."
    )
    collision_strategy: CollisionStrategy = Field(
        default="ENQUEUE",
        description="ENQUEUE queues overlapping runs; CANCEL_NEW keeps latest-only.",
    )
    earliest_ds: date = Field(description="First store-local date that may be backfilled.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _zones():
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'America/New_York')")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - tzdata gap
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @property
    def deployment_name(self) -> str:
        return self.store_id


_ZONES: set[str] | None = None


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones()
    return _ZONES


class RegistryError(ValueError):
    """A store file is invalid. The message names the file and the field."""


@dataclass(frozen=True)
class Registry:
    stores: tuple[Store, ...]

    def __iter__(self) -> Iterator[Store]:
        return iter(self.stores)

    def __len__(self) -> int:
        return len(self.stores)

    @property
    def ids(self) -> list[str]:
        return [s.store_id for s in self.stores]

    @property
    def active(self) -> list[Store]:
        return [s for s in self.stores if s.active]

    def get(self, store_id: str) -> Store:
        for store in self.stores:
            if store.store_id == store_id:
                return store
        raise RegistryError(
            f"unknown store {store_id!r}; known stores: {', '.join(self.ids) or '(none)'}"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a store file must not."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_store_file(path: Path) -> Store:
    """Load and validate one store file; errors read ``<file>: <field>: <problem>``."""
    label = _label(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except yaml.YAMLError as exc:
        raise RegistryError(f"{label}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RegistryError(f"{label}: expected a mapping of fields, got {type(raw).__name__}")
    try:
        store = Store.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(file)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown key (allowed: {', '.join(Store.model_fields)})"
            elif err["type"] == "string_pattern_mismatch" and field == "store_id":
                msg = "must be a lowercase slug like 'us-flagship' (letters, digits, dashes)"
            elif err["type"] == "string_pattern_mismatch" and field == "database":
                msg = (
                    "must be a safe identifier: lowercase letters, digits and '_', "
                    "starting with a letter"
                )
            problems.append(f"{label}: {field}: {msg}")
        raise RegistryError("\n".join(problems)) from exc
    if path.stem != store.store_id:
        raise RegistryError(
            f"{label}: store_id: {store.store_id!r} must match the file name ({path.stem}.yaml)"
        )
    return store


def load_registry(directory: Path | None = None) -> Registry:
    """Load every ``*.yaml`` under ``directory`` (default: ``stores/``), sorted by store_id."""
    directory = directory or settings.stores_dir()
    if not directory.is_dir():
        raise RegistryError(f"{directory}: store registry folder does not exist")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    errors: list[str] = []
    stores: list[Store] = []
    seen: dict[str, Path] = {}
    seen_db: dict[str, Path] = {}
    for path in files:
        try:
            store = parse_store_file(path)
        except RegistryError as exc:
            errors.append(str(exc))
            continue
        if store.store_id in seen:
            errors.append(
                f"{_label(path)}: store_id: duplicate {store.store_id!r} "
                f"(also in {_label(seen[store.store_id])})"
            )
            continue
        if store.database in seen_db:
            errors.append(
                f"{_label(path)}: database: {store.database!r} is already used by "
                f"{_label(seen_db[store.database])}"
            )
            continue
        seen[store.store_id] = path
        seen_db[store.database] = path
        stores.append(store)
    if errors:
        raise RegistryError("\n".join(errors))
    return Registry(tuple(sorted(stores, key=lambda s: s.store_id)))


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(settings.project_dir()))
    except ValueError:
        return str(path)
