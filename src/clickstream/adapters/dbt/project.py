"""The dbt project's own settings, read from dbt_project.yml as YAML (no dbt import: planning
and the CLI check them before anything is submitted; dbt itself reads them in each build)."""

from __future__ import annotations

from pathlib import Path

import yaml

from clickstream import settings


def project_vars(project_dir: Path | None = None) -> dict[str, object]:
    """The vars a build of this project sees when the flows pass none of them (the flows pass
    only store_id, database and landing_dir): dbt_project.yml's global ``vars``, overridden by
    the ones scoped to the project itself (``vars: {<project name>: {...}}``)."""
    path = (project_dir or settings.dbt_project_dir()) / "dbt_project.yml"
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        return {}
    found = data.get("vars") or {}
    if not isinstance(found, dict):
        return {}
    scoped = found.get(data.get("name"))
    merged = {k: v for k, v in found.items() if k != data.get("name") or not isinstance(v, dict)}
    if isinstance(scoped, dict):
        merged.update(scoped)
    return merged
