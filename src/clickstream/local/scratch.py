"""A scratch copy of this project with a synthetic store registry (load tests, benchmarks).

The copy holds prefect.yaml, flows/ and dbt/ of this checkout plus ``n`` generated
stores/*.yaml, and its prefect.yaml store block is regenerated from them exactly as
``clickstream stores sync`` does. Point ``CLICKSTREAM_PROJECT_DIR`` at it and everything
(stack, deploy, flows, CLI) works on those stores instead of the real registry.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import yaml

from clickstream import settings
from clickstream.core.stores import Registry, Store
from clickstream.deploy.prefect_yaml import synced_text

# Time zones with different offsets and DST rules, so lanes do not share window bounds.
TIMEZONES = (
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Europe/London",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Europe/Berlin",
    "America/Sao_Paulo",
    "Asia/Kathmandu",
    "Pacific/Auckland",
)


def synthetic_stores(n: int, earliest_ds: date = date(2026, 1, 1)) -> list[Store]:
    return [
        Store(
            store_id=f"store-{i:02d}",
            display_name=f"Synthetic store {i:02d}",
            database=f"store_{i:02d}",
            timezone=TIMEZONES[(i - 1) % len(TIMEZONES)],
            earliest_ds=earliest_ds,
        )
        for i in range(1, n + 1)
    ]


def make_project(dest: Path, stores: list[Store]) -> Path:
    """Create (or replace) a scratch project at ``dest``; returns ``dest``."""
    src = settings.project_dir()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("target", "logs", "dbt_packages", "__pycache__", ".user.yml")
    for name in ("flows", "dbt"):
        shutil.copytree(src / name, dest / name, ignore=ignore)
    (dest / "stores").mkdir()
    for store in stores:
        data = store.model_dump(mode="json")
        (dest / "stores" / f"{store.store_id}.yaml").write_text(
            yaml.safe_dump(data, sort_keys=False), encoding="utf-8"
        )
    registry = Registry(stores=tuple(stores))
    text = (src / "prefect.yaml").read_text(encoding="utf-8")
    (dest / "prefect.yaml").write_text(synced_text(text, registry), encoding="utf-8")
    return dest
