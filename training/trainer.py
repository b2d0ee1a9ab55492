"""One solution version: read the data, check there is enough, train, measure, write the artifact.

The data is every interaction of the dataset group: bulk-imported rows plus the events
that came in through PutEvents (the archive). Metrics follow Personalize's protocol
(training.split.personalize_split): the version is trained on the split's training rows,
measured on the held-out ones, and that model is the one deployed (the held-out rows are
~1% of the data). Popularity-Count is measured on the same split, so the lift is visible.

An artifact is a directory at the location `artifacts/<solution>/<version id>` holding the
files every recipe has (kernel.artifact_files: the manifest, the vocabulary, users'
histories, popularity) and the recipe's own. It is written to a staging folder, then
published whole by kernel.artifact_store (renamed into the data dir, or uploaded to
OPZ_S3_BUCKET with the manifest last), with each file's SHA-256 in the manifest: it is whole
or absent.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernel.archive import ArchiveFiles
from kernel.archive_parts import ArchiveReader, archive_of
from kernel.artifact_files import (
    Common,
    read_item_ids,
    read_manifest,
    write_actions,
    write_common,
    write_manifest,
)
from kernel.artifact_store import ArtifactStore, artifact_location
from kernel.contract import EVENTS_PER_TYPE, ArtifactManifest
from kernel.datasets import DatasetStore, interactions_from_events
from kernel.hpo import AutoML, Search, automl_of, search_of
from kernel.recipes import RECIPES, Recipe, check_hyperparameters
from training import bought_together, popularity, similar_items, sims, trending
from training import next_best_action as nba
from training.interactions import (
    Interactions,
    TypedHistory,
    from_table,
    recode_items,
    typed_history,
    with_catalog,
    with_items,
)
from training.metrics import evaluate, rank, scored
from training.split import Split, personalize_split

if TYPE_CHECKING:
    from kernel.settings import Settings

MIN_INTERACTIONS = 1000  # Personalize's minimum for training
MIN_USERS = 25  # ... with at least two interactions each
MAX_HISTORY = 200  # newest interactions per user kept in the artifact (serving's starting point)
Progress = Callable[..., None]


class Trainer:
    """What the job runner calls for each solution version (the composition root builds it)."""

    def __init__(self, data_dir: Path, min_interactions: int = MIN_INTERACTIONS,
                 artifacts: ArtifactStore | None = None, datasets: DatasetStore | None = None,
                 archive: ArchiveReader | None = None) -> None:
        self.data_dir = data_dir
        self.artifacts = artifacts or ArtifactStore(data_dir)  # where artifacts are written and read
        self.datasets = datasets or DatasetStore(data_dir / "datasets")
        self.archive = archive or ArchiveFiles(data_dir / "archive")
        self.min_interactions = min_interactions

    @classmethod
    def of(cls, settings: Settings) -> Trainer:
        """Reading the datasets and the archive, writing artifacts, where the settings say."""
        return cls(settings.data_dir, settings.min_training_interactions, ArtifactStore.of(settings),
                   DatasetStore.of(settings), archive_of(settings))

    def interactions(self, dataset_group: str, event_type: str | None,
                     event_value_threshold: float | None) -> tuple[Interactions, dict[str, int]]:
        """The interactions to train on, and the rows left out that no recipe can use, counted by
        why (what the solution version's description shows; never a reason to fail)."""
        table, skipped = self.table(dataset_group)
        return from_table(table, event_type=event_type, event_value_threshold=event_value_threshold), skipped

    def table(self, dataset_group: str, context: bool = False) -> tuple[pa.Table, dict[str, int]]:
        """Every interaction of the group that names an item: bulk-imported rows, then archived
        PutEvents; and the rows left out, counted by why. `context` (the recipes that learn it):
        with the INTERACTIONS dataset's categorical fields too (context_fields), the events'
        from their properties."""
        bulk = self.datasets.read(dataset_group, "INTERACTIONS")
        fields = context_fields(bulk) if context else []
        events = interactions_from_events(self.archive.read(dataset_group), fields)
        columns = ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "IMPRESSION", *fields]
        tables = [t.select([c for c in columns if c in t.column_names]) for t in (bulk, events) if t.num_rows]
        if not tables:
            raise ValueError(f"dataset group {dataset_group} has no interactions: import an INTERACTIONS "
                             "dataset or send events with PutEvents first")
        table, without_item = with_items(pa.concat_tables(tables, promote_options="permissive"))
        return table, {"withoutItemId": without_item} if without_item else {}

    def check_enough(self, data: Interactions, event_type: str | None,
                     skipped: dict[str, int] | None = None) -> None:
        after = f" of event type {event_type!r}" if event_type else ""
        if len(data) < self.min_interactions:
            left_out = "".join(f"; {n} more left out ({why})" for why, n in (skipped or {}).items())
            raise ValueError(f"needs at least {self.min_interactions} interactions{after} after filtering, "
                             f"found {len(data)}{left_out}")
        users = int(np.sum(np.diff(data.offsets) >= 2))
        if users < MIN_USERS:
            raise ValueError(f"needs at least {MIN_USERS} users with 2 or more interactions{after}, "
                             f"found {users}")

    def train(self, *, version_arn: str, dataset_group: str, recipe_arn: str | None,
              hyperparameters: dict[str, str], event_type: str | None, event_value_threshold: float | None,
              parent: str | None, progress: Progress, search: dict[str, Any] | None = None,
              automl: dict[str, Any] | None = None,
              excluded: dict[str, list[str]] | None = None, textual: str | None = None) -> dict[str, Any]:
        """`search`: the solution's hpoConfig when it performs HPO (a FULL version: an UPDATE
        goes on with its parent's hyperparameters). `automl`: its autoMLConfig when it performs
        AutoML, which chooses the recipe (`recipe_arn` is None then), each with its defaults.
        `excluded`: the trainingDataConfig's excludedDatasetColumns, by dataset type. `textual`: the
        ITEMS schema's textual field (a description), read word by word."""
        started = time.monotonic()
        progress(message="reading interactions")
        context = recipe_arn is not None and RECIPES[recipe_arn].context
        table, skipped = self.table(dataset_group, context)
        use_case = RECIPES[recipe_arn].event_types if recipe_arn else ()
        data = from_table(of_types(table, use_case), event_type=event_type,
                          event_value_threshold=event_value_threshold,
                          context=[f for f in context_fields(table) if context
                                   and f not in (excluded or {}).get("INTERACTIONS", ())])
        self.check_enough(data, event_type, skipped)
        parent_dir = self.artifacts.local(parent) if parent else None
        if parent_dir is not None:  # keep the parent's item codes; new items come after them
            data = recode_items(data, np.asarray(read_item_ids(parent_dir), dtype=object))
        items = without(self.datasets.read(dataset_group, "ITEMS"), (excluded or {}).get("ITEMS", ()))
        if recipe_arn is not None and RECIPES[recipe_arn].metadata:  # catalogue-only items get codes
            data = with_catalog(data, similar_items.catalogue(items))
        if recipe_arn is not None and RECIPES[recipe_arn].model == "next_best_action":  # actions, not items
            return self._next_best_action(version_arn, dataset_group, RECIPES[recipe_arn], hyperparameters,
                                          table, data, items, skipped, progress, started)
        split = personalize_split(data)
        chosen: dict[str, Any] = {}
        if automl is not None:
            recipe, tried = self._choose(automl_of(automl), split, progress)
            hyperparameters = check_hyperparameters(recipe, {})
            chosen = {"recipeArn": recipe.arn, "autoMLResult": {"bestRecipeArn": recipe.arn},
                      "autoMLTrials": tried}
        else:
            assert recipe_arn is not None
            recipe = RECIPES[recipe_arn]
        trials: list[dict[str, Any]] = []
        if search is not None and parent_dir is None:
            hpo = search_of(recipe, search)
            hyperparameters, trials = self._search(recipe, hpo, split, hyperparameters, version_arn, progress,
                                                   items=items, textual=textual)
        progress(message=f"training {recipe.name} on {len(split.train):,} interactions")
        model, files_of = self._fit(recipe, split.train, hyperparameters, parent_dir, progress, items=items,
                                    textual=textual)
        progress(message="measuring")
        metrics, intervals = scored(rank(model, split), split.held_out, data.n_items)
        baseline = evaluate(popularity.fit(split.train), split, data.n_items)
        location = artifact_location(version_arn)
        tmp = self.artifacts.staging(location)
        common = common_of(table, data, items)
        files = {**write_common(tmp, common), **files_of(model, tmp, common)}
        write_manifest(tmp, ArtifactManifest(
            solution_version_arn=version_arn, recipe=recipe.name, created_at=time.time(),
            hidden_dimension=int(hyperparameters.get("hidden_dimension", 0)) or None,
            data_cut=int(data.time.max()), files=files, metrics=metrics))
        self.artifacts.publish(tmp, location)  # a re-run after a crash replaces the old one
        return {"artifact": location, "metrics": metrics, "baselineMetrics": {"popularity": baseline},
                "metricIntervals": intervals,
                "testSet": {"users": len(split.users), "interactions": int(sum(map(len, split.held_out)))},
                "trainingCurve": getattr(model, "loss_curve", []),
                "hyperparametersUsed": getattr(model, "used", {}),
                **({"hyperparametersChosen": hyperparameters, "hpoTrials": trials} if trials else {}),
                **chosen,
                "trainingHours": (time.monotonic() - started) / 3600,
                "dataCut": int(data.time.max()), "interactions": len(data),
                "skippedInteractions": skipped}

    def _next_best_action(self, version_arn: str, dataset_group: str, recipe: Recipe, params: dict[str, str],
                          table: pa.Table, data: Interactions, items: pa.Table, skipped: dict[str, int],
                          progress: Progress, started: float) -> dict[str, Any]:
        """aws-next-best-action (training/next_best_action.py): the actions of the ACTIONS dataset,
        learnt from the ACTION_INTERACTIONS dataset (bulk rows and PutActionInteractions events), the
        users described by the items of their item interactions (`data`, which Personalize requires
        1,000 of). Measured on the newest action interactions; deployed trained on all of them."""
        progress(message="reading actions and action interactions")
        actions = self.datasets.read(dataset_group, "ACTIONS")
        if not actions.num_rows:
            raise ValueError(f"{recipe.name} needs actions: import an ACTIONS dataset or add actions with "
                             "PutActions first")
        coded, left_out = nba.action_data(actions, self.datasets.read(dataset_group, "ACTION_INTERACTIONS"))
        period = int(params["action_optimization_period"])
        progress(message=f"training {recipe.name} on {len(coded):,} action interactions of "
                         f"{len(coded.action_ids):,} actions")
        model = nba.fit(coded, nba.user_items(data, coded.user_ids), data.n_items, period)
        progress(message="measuring")
        metrics, intervals, baseline, test = nba.measure(coded, data, period)
        location = artifact_location(version_arn)
        tmp = self.artifacts.staging(location)
        files = {**write_common(tmp, common_of(table, data, items)), **write_actions(tmp, model)}
        cut = int(max(data.time.max(), coded.time.max(initial=0)))
        write_manifest(tmp, ArtifactManifest(solution_version_arn=version_arn, recipe=recipe.name,
                                             created_at=time.time(), data_cut=cut, files=files,
                                             metrics=metrics))
        self.artifacts.publish(tmp, location)
        return {"artifact": location, "metrics": metrics, "baselineMetrics": {"popularity": baseline},
                "metricIntervals": intervals, "testSet": test, "hyperparametersUsed": {},
                "trainingHours": (time.monotonic() - started) / 3600, "dataCut": cut,
                "interactions": len(data),
                "actions": len(coded.action_ids), "actionInteractions": len(coded),
                "skippedInteractions": {**skipped, **left_out}}

    def _choose(self, automl: AutoML, split: Split,
                progress: Progress) -> tuple[Recipe, list[dict[str, Any]]]:
        """AutoML: the candidate recipe that scores best on a validation split of the training rows
        (the held-out rows the version is measured on take no part), and each one's score."""
        inner = personalize_split(split.train, seed=1)
        tried: list[dict[str, Any]] = []
        for n, recipe in enumerate(automl.recipes, 1):
            progress(message=f"AutoML: recipe {n} of {len(automl.recipes)} ({recipe.name})")
            metrics = self._validated(recipe, check_hyperparameters(recipe, {}), inner, progress)
            tried.append({"recipeArn": recipe.arn, "objective": automl.objective,
                          "value": metrics[automl.objective]})
        best = max(range(len(tried)), key=lambda i: tried[i]["value"])  # the first of equals
        tried[best]["best"] = True
        return automl.recipes[best], tried

    def _search(self, recipe: Recipe, search: Search, split: Split, defaults: dict[str, str], seed: str,
                progress: Progress, *, items: pa.Table | None = None,
                textual: str | None = None) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """The best of the search's trials and all of them. Each trains on the training rows less a
        validation split of them and is measured on that split, so the held-out rows that the
        version's metrics come from take no part in choosing."""
        inner = personalize_split(split.train, seed=1)
        names = [d.name for d in search.dimensions]
        trials: list[dict[str, Any]] = []
        for n, point in enumerate(search.points(defaults, seed), 1):
            shown = ", ".join(f"{k}={point[k]}" for k in names)
            progress(message=f"hyperparameter search: trial {n} of {search.trials} ({shown})")
            metrics = self._validated(recipe, point, inner, progress, items=items, textual=textual)
            trials.append({"hyperparameters": {k: point[k] for k in names}, "metrics": metrics,
                           "objective": search.objective, "value": metrics[search.objective]})
        best = trials[0]
        for trial in trials[1:]:
            if search.better(trial["value"], best["value"]):
                best = trial
        best["best"] = True
        return defaults | best["hyperparameters"], trials

    def _validated(self, recipe: Recipe, params: dict[str, str], inner: Split,
                   progress: Progress, *, items: pa.Table | None = None,
                   textual: str | None = None) -> dict[str, float]:
        """A trial: fit on the validation split's training rows, measured on its held-out ones
        (a trial's own progress lines are left out; the job may still be interrupted)."""
        model, _ = self._fit(recipe, inner.train, params, None, lambda **kw: progress(), items=items,
                             textual=textual)
        return scored(rank(model, inner), inner.held_out, inner.train.n_items)[0]

    def _fit(self, recipe: Recipe, train: Interactions, params: dict[str, str], parent: Path | None,
             progress: Progress, *, items: pa.Table | None = None, textual: str | None = None,
             ) -> tuple[Any, Callable[[Any, Path, Common], dict[str, str]]]:
        """The fitted model and how to write its own files into an artifact directory (beside the
        common ones: kernel.artifact_files). `items`: the ITEMS dataset that aws-similar-items
        learns from beside co-occurrence (without it, co-occurrence alone) and the v2 recipes as their
        item features; `textual`: the ITEMS schema's textual field, split into words there."""
        if recipe.model == "popularity":
            return popularity.fit(train), lambda m, d, common: {}
        if recipe.model == "trending":
            return trending.fit(train, params), lambda m, d, common: m.write(d)
        if recipe.model in ("sims", "similar_items", "bought_together"):  # item neighbours, one format
            if recipe.model == "similar_items":
                model = similar_items.fit(train, items, params, textual=textual)
            elif recipe.model == "bought_together":  # train holds the use case's Purchase rows
                model = bought_together.fit(train, params)
            else:
                model = sims.fit(train, params)

            def write_sims(m: sims.Sims, d: Path, common: Common) -> dict[str, str]:
                codes, scores = m.neighbours()
                np.save(d / "sims_neighbours.npy", codes)
                np.save(d / "sims_scores.npy", scores)
                return {"sims_neighbours": "sims_neighbours.npy", "sims_scores": "sims_scores.npy"}
            return model, write_sims
        try:
            from training import hrnn  # torch: imported only when an HRNN recipe trains
        except ImportError as exc:  # a serving-only install (no torch): say how to get it
            raise ValueError(f"{recipe.name} needs PyTorch, which this install lacks ({exc}): install "
                             "openpersonalize[train] or run `personalize trainer` where it is") from None

        if not recipe.learns_from_impressions:
            train = dataclasses.replace(train, impressions=None)
        def say(line: str) -> None:
            progress(message=line)

        items = items if recipe.metadata else None
        if parent is None:
            model = hrnn.fit(train, params, say, checkpoint=progress, items=items, textual=textual)
        else:
            cut = read_manifest(parent).data_cut
            model = hrnn.fit(train, params, say, parent=hrnn.load_for_update(parent), since=cut,
                             checkpoint=progress, items=items, textual=textual)
        return model, lambda m, d, common: {**m.export(d), **m.export_user_states(d, common.user_history)}


def common_of(table: pa.Table, data: Interactions, items: pa.Table) -> Common:
    """The files every artifact has (kernel.artifact_files), of the interactions trained on."""
    typed = typed_history(table, data, EVENTS_PER_TYPE)
    return Common(item_ids=data.item_ids.tolist(), user_ids=typed.user_ids.tolist(),
                  user_history=user_history(data, MAX_HISTORY, len(typed.user_ids)),
                  user_events=user_events(typed),
                  popularity=np.bincount(data.item, minlength=data.n_items).astype(np.float32),
                  item_created=item_created(data, items))


# INTERACTIONS fields that are not an event's context (kernel.dataset_schema's reserved ones)
NOT_CONTEXT = frozenset({"USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "IMPRESSION",
                         "RECOMMENDATION_ID", "EVENT_ATTRIBUTION_SOURCE", "CREATION_TIMESTAMP"})


def context_fields(table: pa.Table) -> list[str]:
    """The INTERACTIONS dataset's string metadata fields (DEVICE, ...), which the schema can only
    have categorical: what the recipes that learn context (kernel.recipes.Recipe.context) take
    as each event's context. Read from the imported rows' columns, as the importer writes the
    schema's fields."""
    return [f.name for f in table.schema if f.name not in NOT_CONTEXT
            and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]


def without(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """The table less the columns a trainingDataConfig's excludedDatasetColumns names: kept for
    filters, not learnt from."""
    return table.drop_columns([c for c in columns if c in table.column_names and c != "ITEM_ID"])


def of_types(table: pa.Table, event_types: tuple[str, ...]) -> pa.Table:
    """The rows of those event types (all rows when none are named): what a use case learns
    from. Compared without case, as people write Watch, watch and WATCH."""
    if not event_types or "EVENT_TYPE" not in table.column_names:
        return table
    wanted = pa.array([t.lower() for t in event_types])
    return table.filter(pc.is_in(pc.utf8_lower(table["EVENT_TYPE"]), value_set=wanted))


def item_created(data: Interactions, items: pa.Table) -> np.ndarray:
    """Per item, when it appeared: the items dataset's CREATION_TIMESTAMP, else its first interaction
    (how Personalize dates items for exploration's age cut-off)."""
    created = np.full(data.n_items, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(created, data.item, data.time)
    if "CREATION_TIMESTAMP" in items.column_names:
        code = {item: c for c, item in enumerate(data.item_ids.tolist())}
        ids, times = items["ITEM_ID"].to_pylist(), items["CREATION_TIMESTAMP"].to_pylist()
        for item, at in zip(ids, times, strict=True):
            if at is not None and item in code:
                created[code[item]] = int(at)
    return created


def user_history(data: Interactions, keep: int, n_users: int | None = None) -> dict[str, np.ndarray]:
    """Each user's newest `keep` interactions as of training (CSR: offsets, items, times), so
    serving knows users from bulk imports, not only those it saw events of. `n_users`: the
    artifact's users, `data`'s first; the others (only rows left out of training name them)
    have no history here, yet their user_events rows share these codes."""
    off = data.offsets
    starts = np.maximum(off[:-1], off[1:] - keep)
    rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, off[1:], strict=True)]) \
        if len(starts) else np.zeros(0, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(off[1:] - starts)]).astype(np.int64)
    offsets = np.concatenate([offsets, np.full((n_users or data.n_users) - data.n_users, offsets[-1])])
    return {"offsets": offsets, "items": data.item[rows].astype(np.int32),
            "times": data.time[rows].astype(np.int64)}


def user_events(typed: TypedHistory) -> dict[str, np.ndarray]:
    """The users' interactions by event type (CSR over the artifact's users), for Interactions filters."""
    return {"offsets": typed.offsets, "items": typed.items, "types": typed.types,
            "type_names": typed.type_names}
