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


@risk_app.command("simulate")
def simulate_cmd(
    seed: int = typer.Option(..., help="Random seed: the same seed gives the same traffic."),
    out: Path = typer.Option(..., help="CSV file to write (raw features and a label column)."),
    rows: int = typer.Option(10_000, min=1, help="How many top-ups."),
) -> None:
    """Generate labelled traffic: normal customers and every attack type."""
    from walletflow.risk.simulate import write_csv

    written = write_csv(_simulated([seed], rows), out)
    typer.echo(f"wrote {written} rows to {out}")


@risk_app.command("train")
def train_cmd(
    out: Path = typer.Option(..., help="Directory to write the new artifact under."),
    from_db: bool = typer.Option(False, "--from-db", help="Learn from scored top-ups and their outcomes."),
    csv: list[Path] = typer.Option([], "--csv", help="Labelled CSV (walletflow risk simulate makes one)."),
    simulate_seeds: str = typer.Option("", "--simulate-seeds", help="Also train on simulated traffic of these seeds."),
    rows: int = typer.Option(20_000, min=100, help="Rows per simulated seed."),
    settle_days: int = typer.Option(30, help="--from-db: credited top-ups count as normal after this many days."),
    max_iter: int = typer.Option(150, min=10, help="Boosting rounds."),
) -> None:
    """Train the model and write a signed (or hash-printed) versioned artifact."""
    from walletflow.risk.artifact import save
    from walletflow.risk.model import TrainParams, train
    from walletflow.risk.simulate import read_csv

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
    key = settings.risk_model_signing_key.get_secret_value() if settings.risk_model_signing_key else None
    thresholds = {"model_review_score": settings.risk_model_review_score,
                  "model_reject_score": settings.risk_model_reject_score}
    path = save(model, out, key, extra={"thresholds": thresholds})
    typer.echo(f"trained on {len(data)} rows in {model.training['seconds']} s: {path}")
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
    rows: int = typer.Option(20_000, min=100, help="Rows per seed."),
) -> None:
    """Precision, recall and ROC-AUC per attack type of the model plus rules, as the worker runs them."""
    from walletflow.risk.evaluate import TARGET_PRECISION, TARGET_RECALL, TARGET_RECALL_PER_ATTACK, report, score_all
    from walletflow.risk.scoring import scorer_from

    settings = get_settings()
    if model == "builtin":
        settings = settings.model_copy(update={"risk_model_path": None, "risk_builtin_model": True})
    else:
        settings = settings.model_copy(update={"risk_model_path": model})
    scorer = scorer_from(settings)
    seed_list = _seeds(seeds)
    data = _simulated(seed_list, rows)
    with _progress() as progress:
        task = progress.add_task("scoring", total=len(data))
        results = score_all(scorer, data, lambda n: progress.advance(task, n))
    result = report(data, results)
    table = Table(title=f"model {scorer.model_version} on seeds {seed_list} ({len(data)} top-ups)")
    for column in ("attack", "attacks", "caught", "false alarms", "precision", "recall", "ROC-AUC"):
        table.add_column(column, justify="left" if column == "attack" else "right")
    for m in [*result.per_attack, result.overall]:
        table.add_row(m.kind, str(m.attacks), str(m.caught), str(m.false_alarms),
                      f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.roc_auc:.3f}")
    Console(width=max(Console().width, 110)).print(table)  # never truncate attack names
    typer.echo(f"normal payments approved: {result.normal_approved:.3%}")
    verdict = "met" if result.meets_target else "NOT met"
    typer.echo(f"target (recall >= {TARGET_RECALL} at precision >= {TARGET_PRECISION}, every attack recall >= "
               f"{TARGET_RECALL_PER_ATTACK}): {verdict}")
    sys.stdout.flush()
    raise typer.Exit(0 if result.meets_target else 1)
