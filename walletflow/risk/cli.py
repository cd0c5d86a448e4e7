"""``walletflow risk train | simulate | evaluate``."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from walletflow.settings import Settings, get_settings

risk_app = typer.Typer(help="Risk model: train, simulate traffic, evaluate.", no_args_is_help=True)
console = Console(stderr=True)


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise typer.BadParameter("seeds are comma-separated integers, e.g. 11,12") from exc


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )


def _simulated(seeds: list[int], rows: int) -> list:  # type: ignore[type-arg]
    from walletflow.risk.simulate import simulate

    out = []
    with _progress() as progress:
        task = progress.add_task("simulating", total=len(seeds) * rows)
        for seed in seeds:
            out += simulate(seed, rows)
            progress.advance(task, rows)
    return out


def _simulated_usage(seeds: list[int], rows: int) -> list:  # type: ignore[type-arg]
    from walletflow.risk.usage_simulate import simulate_usage

    out = []
    with _progress() as progress:
        task = progress.add_task("simulating usage", total=len(seeds) * rows)
        for seed in seeds:
            out += simulate_usage(seed, rows)
            progress.advance(task, rows)
    return out


@risk_app.command("simulate")
def simulate_cmd(
    seed: int = typer.Option(..., help="Random seed: the same seed gives the same traffic."),
    out: Path = typer.Option(..., help="CSV file to write (raw features and a label column)."),
    rows: int = typer.Option(10_000, min=1, help="How many top-ups."),
    usage_out: Path | None = typer.Option(None, help="Also write labelled usage periods (settlement) here."),
    usage_rows: int = typer.Option(10_000, min=1, help="How many usage periods."),
) -> None:
    """Generate labelled traffic: normal customers and every attack type (top-ups, and usage)."""
    from walletflow.risk.simulate import write_csv
    from walletflow.risk.usage_simulate import write_usage_csv

    written = write_csv(_simulated([seed], rows), out)
    typer.echo(f"wrote {written} rows to {out}")
    if usage_out is not None:
        written = write_usage_csv(_simulated_usage([seed], usage_rows), usage_out)
        typer.echo(f"wrote {written} usage periods to {usage_out}")


@risk_app.command("train")
def train_cmd(
    out: Path = typer.Option(..., help="Directory to write the new artifact under."),
    from_db: bool = typer.Option(False, "--from-db", help="Learn from scored top-ups and their outcomes."),
    csv: list[Path] = typer.Option([], "--csv", help="Labelled CSV (walletflow risk simulate makes one)."),
    simulate_seeds: str = typer.Option("", "--simulate-seeds", help="Also train on simulated traffic of these seeds."),
    rows: int = typer.Option(20_000, min=100, help="Rows per simulated seed."),
    settle_days: int = typer.Option(30, help="--from-db: credited top-ups count as normal after this many days."),
    max_iter: int = typer.Option(150, min=10, help="Boosting rounds."),
    usage_csv: list[Path] = typer.Option([], "--usage-csv", help="Labelled usage periods (simulate --usage-out)."),
    usage_rows: int = typer.Option(10_000, min=100, help="Usage periods per simulated seed."),
) -> None:
    """Train the top-up and the usage model and write one signed (or hash-printed) versioned artifact.

    The usage model learns from --usage-csv and from --simulate-seeds (usage periods of the same
    seeds). Without either the artifact has no usage section and workers score usage with the
    built-in usage model.
    """
    from walletflow.risk.artifact import save
    from walletflow.risk.model import TrainParams, train
    from walletflow.risk.simulate import read_csv
    from walletflow.risk.usage_model import train_usage
    from walletflow.risk.usage_simulate import read_usage_csv

    settings = get_settings()
    data = []
    sources = []
    for path in csv:
        data += read_csv(path)
        sources.append(str(path))
    if simulate_seeds:
        seeds = _seeds(simulate_seeds)
        data += _simulated(seeds, rows)
        sources.append(f"simulation seeds {seeds}")
    if from_db:
        found = asyncio.run(_db_rows(settings, settle_days))
        typer.echo(f"{len(found)} labelled top-ups in the database")
        data += found
        sources.append("database")
    if not sources:
        raise typer.BadParameter("give --from-db, --csv FILE or --simulate-seeds")
    started = time.perf_counter()
    with console.status(f"training on {len(data)} rows"):
        try:
            model = train(data, TrainParams(max_iter=max_iter))
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    model.training["source"] = ", ".join(sources)
    model.training["seconds"] = round(time.perf_counter() - started, 2)
    usage_data, usage_sources = [], []
    for path in usage_csv:
        usage_data += read_usage_csv(path)
        usage_sources.append(str(path))
    if simulate_seeds:
        usage_data += _simulated_usage(_seeds(simulate_seeds), usage_rows)
        usage_sources.append(f"simulated usage seeds {_seeds(simulate_seeds)}")
    if usage_data:
        started = time.perf_counter()
        with console.status(f"training the usage model on {len(usage_data)} periods"):
            try:
                model.usage = train_usage(usage_data, TrainParams(max_iter=max_iter))
            except ValueError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from exc
        model.usage.training["source"] = ", ".join(usage_sources)
        model.usage.training["seconds"] = round(time.perf_counter() - started, 2)
    key = settings.risk_model_signing_key.get_secret_value() if settings.risk_model_signing_key else None
    thresholds = {"model_review_score": settings.risk_model_review_score,
                  "model_reject_score": settings.risk_model_reject_score}
    path = save(model, out, key, extra={"thresholds": thresholds})
    typer.echo(f"trained on {len(data)} rows in {model.training['seconds']} s: {path}")
    if model.usage is not None:
        typer.echo(f"usage model trained on {len(usage_data)} periods in {model.usage.training['seconds']} s (same artifact)")
    else:
        typer.echo("no usage data (--usage-csv, --simulate-seeds): no usage section; workers use the built-in usage model")
    if key is None:
        from walletflow.risk.artifact import read_manifest

        typer.echo("no WALLETFLOW_RISK_MODEL_SIGNING_KEY: the artifact is unsigned; pin its hash to load it:")
        typer.echo(f"WALLETFLOW_RISK_MODEL_SHA256={read_manifest(path)['sha256']}")
    sys.stdout.flush()


async def _db_rows(settings: Settings, settle_days: int) -> list:  # type: ignore[type-arg]
    from walletflow.db.engine import create_engine
    from walletflow.db.types import utcnow
    from walletflow.risk.history import labelled_rows

    engine = create_engine(settings=settings)
    try:
        async with engine.connect() as conn:
            return await labelled_rows(conn, utcnow(), settle_days)
    finally:
        await engine.dispose()


@risk_app.command("evaluate")
def evaluate_cmd(
    model: str = typer.Option(..., help="Artifact directory, or 'builtin' for the built-in model."),
    seeds: str = typer.Option(..., help="Comma-separated seeds of fresh traffic (not used in training)."),
    rows: int = typer.Option(20_000, min=100, help="Top-ups per seed."),
    usage_rows: int = typer.Option(20_000, min=0, help="Usage periods per seed (0: skip the usage evaluation)."),
) -> None:
    """Precision, recall and ROC-AUC per attack type of the model plus rules, as the worker runs
    them: top-ups (credit model) and settlement usage periods (usage model)."""
    from walletflow.risk.evaluate import (
        TARGET_PRECISION,
        TARGET_RECALL,
        TARGET_RECALL_PER_ATTACK,
        report,
        score_all,
        usage_report,
    )
    from walletflow.risk.scoring import scorers_from

    settings = get_settings()
    if model == "builtin":
        settings = settings.model_copy(update={"risk_model_path": None, "risk_builtin_model": True})
    else:
        settings = settings.model_copy(update={"risk_model_path": model})
    scorer, usage_scorer = scorers_from(settings)
    seed_list = _seeds(seeds)
    data = _simulated(seed_list, rows)
    with _progress() as progress:
        task = progress.add_task("scoring", total=len(data))
        results = score_all(scorer, data, lambda n: progress.advance(task, n))
    result = report(data, results)
    out = Console(width=max(Console().width, 110))  # never truncate attack names
    table = Table(title=f"top-ups: model {scorer.model_version} on seeds {seed_list} ({len(data)} top-ups)")
    _metrics_table(table, "attack", [*result.per_attack, result.overall])
    out.print(table)
    typer.echo(f"normal payments approved: {result.normal_approved:.3%}")
    met = result.meets_target
    target = (f"(recall >= {TARGET_RECALL} at precision >= {TARGET_PRECISION}, every attack recall >= "
              f"{TARGET_RECALL_PER_ATTACK})")
    typer.echo(f"top-up target {target}: {'met' if met else 'NOT met'}")
    if usage_rows:
        usage_data = _simulated_usage(seed_list, usage_rows)
        with _progress() as progress:
            task = progress.add_task("scoring usage", total=len(usage_data))
            usage_results = []
            for i, (features, _, _) in enumerate(usage_data):
                usage_results.append(usage_scorer.score(features))
                if i % 500 == 499:
                    progress.advance(task, 500)
        usage = usage_report(usage_data, usage_results)
        table = Table(title=f"usage periods: model {usage_scorer.model_version} on seeds {seed_list} "
                            f"({len(usage_data)} periods)")
        _metrics_table(table, "usage scenario", [*usage.per_attack, usage.overall])
        out.print(table)
        normal_table = Table(title="usage periods: honest customers frozen (false alarms) per scenario")
        for column in ("normal scenario", "periods", "frozen", "share"):
            normal_table.add_column(column, justify="left" if column == "normal scenario" else "right")
        for name, (periods, frozen) in usage.per_normal.items():
            normal_table.add_row(name, str(periods), str(frozen), f"{frozen / max(1, periods):.3%}")
        out.print(normal_table)
        typer.echo(f"usage target {target}: {'met' if usage.meets_target else 'NOT met'}")
        met = met and usage.meets_target
    sys.stdout.flush()
    raise typer.Exit(0 if met else 1)


def _metrics_table(table: Table, first: str, rows: list) -> None:  # type: ignore[type-arg]
    for column in (first, "attacks", "caught", "false alarms", "precision", "recall", "ROC-AUC"):
        table.add_column(column, justify="left" if column == first else "right")
    for m in rows:
        table.add_row(m.kind, str(m.attacks), str(m.caught), str(m.false_alarms),
                      f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.roc_auc:.3f}")
