"""How a store run invokes dbt: prefect-dbt's ``PrefectDbtRunner``, in one of two modes.

- **full** (regular and manual store runs, the default): the runner as prefect-dbt intends it
  inside a flow run. Every dbt node (model, test, unit test) becomes a Prefect task with its
  own state and logs, and each model a materializing task that emits asset events. It costs
  a few API calls and events per node (bench/RESULTS.md has the measured price).
- **lean** (backfill children: the orchestrator passes ``dbt_mode="lean"``): the same runner,
  invoked outside any Prefect run context, so it creates no task at all. prefect-dbt creates
  per-node tasks exactly when it finds a flow or task run context
  (``PrefectDbtRunner.invoke``: ``in_flow_or_task_run``); running ``invoke`` inside a fresh,
  empty ``contextvars.Context`` is that public "outside a flow" path, without the private
  ``_disable_callbacks`` switch. What the per-node tasks would have given is made up for
  here: one flow-log line per node result, a failure message naming every failing node, and
  one asset materialization event per model, emitted once after the build (the same event
  names, resources and upstream links that prefect-dbt's materializing tasks emit).

tests/harness/test_store_flow.py fails the day either mode stops doing what this says (task runs counted
through the API, events read back), so a prefect-dbt upgrade cannot change it silently.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clickstream.core.states import DBT_MODES, DbtMode

FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})


class DbtBuildError(RuntimeError):
    """dbt ran and reported failing nodes, or could not run at all."""


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    resource_type: str
    name: str
    status: str
    execution_time: float
    message: str

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def line(self) -> str:
        text = f"{self.resource_type} {self.name}: {self.status} in {self.execution_time:.2f}s"
        if self.failed and self.message:
            text += f": {self.message.strip()[:500]}"
        return text


@dataclass(frozen=True)
class DbtOutcome:
    success: bool
    nodes: list[NodeResult]

    @property
    def failed_nodes(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.failed]

    @property
    def execution_seconds(self) -> float:
        return sum(n.execution_time for n in self.nodes)


def node_results(res) -> list[NodeResult]:
    out = []
    for r in getattr(getattr(res, "result", None), "results", None) or []:
        node = r.node
        out.append(
            NodeResult(
                unique_id=node.unique_id,
                resource_type=str(node.resource_type),
                name=node.name,
                status=str(r.status).lower(),
                execution_time=float(r.execution_time or 0.0),
                message=str(r.message or ""),
            )
        )
    return out


def failure_message(outcome: DbtOutcome, exception: BaseException | None = None) -> str:
    """Names every failing node; or dbt's own error when it could not run at all."""
    failing = outcome.failed_nodes
    if failing:
        return "dbt build failed: " + "; ".join(n.line() for n in failing)
    return (
        f"dbt build failed: {type(exception).__name__}: {exception}"
        if exception
        else ("dbt build failed (no node reported a failure)")
    )


def invoke_dbt(
    args: Sequence[str],
    *,
    mode: DbtMode,
    project_dir: Path,
    logger: logging.Logger | logging.LoggerAdapter,
) -> DbtOutcome:
    """Run one ``dbt build`` through PrefectDbtRunner; raise DbtBuildError naming failing nodes."""
    from prefect_dbt.core.runner import PrefectDbtRunner
    from prefect_dbt.core.settings import PrefectDbtSettings

    if mode not in DBT_MODES:
        raise ValueError(f"dbt_mode must be one of {', '.join(DBT_MODES)}, got {mode!r}")
    settings = PrefectDbtSettings(project_dir=project_dir, profiles_dir=project_dir)
    runner = PrefectDbtRunner(settings=settings, raise_on_failure=False)
    res = None
    try:
        if mode == "full":
            res = runner.invoke(list(args))
        else:
            # No Prefect context inside: prefect-dbt makes no task per node (see module doc).
            # --quiet: the node lines go to the flow log below, not to the worker's stdout.
            res = contextvars.Context().run(runner.invoke, [*args, "--quiet"])
    except ValueError as exc:  # prefect-dbt raises when dbt could not run (compile errors...)
        outcome = DbtOutcome(False, node_results(res))
        raise DbtBuildError(failure_message(outcome, exc)) from exc
    outcome = DbtOutcome(bool(res.success), node_results(res))
    if mode == "lean":
        for node in outcome.nodes:
            level = logging.ERROR if node.failed else logging.INFO
            logger.log(level, "%s", node.line())
        _emit_asset_events(runner, outcome, logger)
    if not outcome.success:
        raise DbtBuildError(failure_message(outcome, res.exception))
    return outcome


def _emit_asset_events(runner, outcome: DbtOutcome, logger) -> None:
    """One materialization event per model of this build, as prefect-dbt's tasks emit them."""
    from prefect.assets import Asset, AssetProperties
    from prefect.context import AssetContext
    from prefect.states import Completed, Failed
    from prefect_dbt.utilities import format_asset_name, format_resource_id

    try:
        manifest = runner.manifest
        adapter = manifest.metadata.adapter_type
        by_id = {n.unique_id: n for n in outcome.nodes}

        def asset(node) -> Asset | None:
            if not getattr(node, "relation_name", None):
                return None
            props = {"name": format_asset_name(node.relation_name)}
            if node.description:
                props["description"] = node.description
            return Asset(
                key=format_resource_id(adapter, node.relation_name),
                properties=AssetProperties(**props),
            )

        for uid, result in by_id.items():
            node = manifest.nodes.get(uid)
            if node is None or result.resource_type != "model" or result.status == "skipped":
                continue
            target = asset(node)
            if target is None:
                continue
            upstream = {
                a
                for dep in node.depends_on.nodes
                if (parent := manifest.nodes.get(dep) or manifest.sources.get(dep)) is not None
                and (a := asset(parent)) is not None
            }
            ctx = AssetContext(
                downstream_assets={target},
                upstream_assets=upstream,
                materialized_by="dbt",
            )
            ctx.emit_events(Failed() if result.failed else Completed())
    except Exception as exc:  # events are reporting; never fail a good build for them
        logger.warning("could not emit asset events for this build: %s", exc)
