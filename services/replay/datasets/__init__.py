"""Registry of the public datasets that ``cartwheel replay`` can publish.

Each entry names an adapter module (one per dataset) that turns the raw files
into Cartwheel events in event-time order and catalog items, and the default
location of the files. The REES46 default is the sample committed under
``data/rees46/``; the others live in a data folder that is configured with
``CARTWHEEL_REPLAY_DATA_DIR``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.replay.datasets import (
    diginetica,
    otto,
    rees46,
    retailrocket,
    taobao,
    yoochoose,
)
from services.replay.datasets.base import AdapterSummary, Dataset
from services.replay.errors import (
    DatasetFileError,
    DatasetUnavailableError,
    UnknownDatasetError,
)

__all__ = [
    "COMMITTED_DATA_DIR",
    "DATASETS",
    "REES46_SAMPLE",
    "REPO_ROOT",
    "AdapterSummary",
    "Dataset",
    "DatasetInfo",
    "get_dataset",
    "load_dataset",
    "replayable_names",
]

# LIMITATION(L-15): paths are found from the source checkout, as with the
# editable install that the Makefile makes. A wheel install does not ship
# data/, so rees46 then needs --path, and the other datasets need --path or
# CARTWHEEL_REPLAY_DATA_DIR.
REPO_ROOT = Path(__file__).resolve().parents[3]
COMMITTED_DATA_DIR = REPO_ROOT / "data"
REES46_SAMPLE = COMMITTED_DATA_DIR / "rees46" / "events_2019-10-01_0000-0240utc.csv.gz"

# How many entries of a data folder an error lists when the dataset is missing.
_LISTED_NAMES = 8


@dataclass(frozen=True)
class DatasetInfo:
    """One registered dataset.

    Attributes:
        name: the name given to ``cartwheel replay``.
        description: what the data holds, in one or two sentences.
        relative_path: the default file or folder, relative to the data folder;
            ignored when ``committed_path`` is set.
        loader: the adapter's ``load(path)``, or None when the dataset has no
            events, with ``unavailable_reason`` saying why.
        committed_path: a default that ships with the repository.
    """

    name: str
    description: str
    relative_path: str
    loader: Callable[[Path], Dataset] | None
    unavailable_reason: str | None = None
    committed_path: Path | None = None

    def default_path(self, data_dir: Path) -> Path:
        """Return where the dataset's files are when no path is given."""
        if self.committed_path is not None:
            return self.committed_path
        return data_dir / self.relative_path


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name=rees46.NAME,
            description=(
                "REES46 multi-category store (Open CDP): views, carts and purchases "
                "with category, brand, price and session; the committed sample "
                "covers 2019-10-01 00:00-02:40 UTC"
            ),
            relative_path="rees46-multicategory-store/events_2019-10-01_0000-0240utc.csv.gz",
            loader=rees46.load,
            committed_path=REES46_SAMPLE,
        ),
        DatasetInfo(
            name=retailrocket.NAME,
            description=(
                "Retailrocket: views, add-to-carts and transactions of a visitor "
                "sample, the category tree and numeric item properties (price)"
            ),
            relative_path="retailrocket",
            loader=retailrocket.load,
        ),
        DatasetInfo(
            name=taobao.NAME,
            description=(
                "Taobao UserBehavior (Tianchi): page views, carts and buys with "
                "item categories; favourites are skipped"
            ),
            relative_path=(
                "taobao-userbehavior/UserBehavior_sample_before-2017-12-02cst.csv.gz"
            ),
            loader=taobao.load,
        ),
        DatasetInfo(
            name=yoochoose.NAME,
            description=(
                "YOOCHOOSE (RecSys Challenge 2015): click sessions, and buys when "
                "yoochoose-buys.dat is present; sessions double as users"
            ),
            relative_path="yoochoose-recsys2015/yoochoose-clicks-100k_train_full.tsv.gz",
            loader=yoochoose.load,
        ),
        DatasetInfo(
            name=diginetica.NAME,
            description=(
                "DIGINETICA (CIKM Cup 2016): item views, purchases with order "
                "numbers and product categories"
            ),
            relative_path="diginetica-cikm2016",
            loader=diginetica.load,
        ),
        DatasetInfo(
            name=otto.NAME,
            description=(
                "OTTO (Kaggle 2022): clicks, carts and orders per visitor, ids only"
            ),
            relative_path="otto-recsys/otto_sample_before-2022-08-21T22Z.jsonl.gz",
            loader=otto.load,
        ),
        DatasetInfo(
            name="olist",
            description=(
                "Olist Brazilian e-commerce: product, seller and payment tables only"
            ),
            relative_path="olist-brazilian-ecommerce-partial",
            loader=None,
            unavailable_reason=(
                "the available Olist tables (products, sellers, payments, category "
                "names) hold no user events and no timestamps, and the orders and "
                "order-items tables that would link products to customers are "
                "missing, so there is nothing to replay"
            ),
        ),
    )
}


def replayable_names() -> list[str]:
    """Return the sorted names of the datasets that have events to replay."""
    return [name for name, info in sorted(DATASETS.items()) if info.loader is not None]


def get_dataset(name: str) -> DatasetInfo:
    """Return the registry entry of ``name``.

    Raises:
        UnknownDatasetError: the name is not registered.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"dataset {name!r} is not registered; expected one of "
            f"{', '.join(replayable_names())}"
        ) from None


def load_dataset(
    name: str,
    data_dir: Path,
    path: Path | None = None,
    *,
    path_option: str | None = None,
    data_dir_source: str | None = None,
) -> Dataset:
    """Load a registered dataset from ``path`` or from its default location.

    Args:
        name: the registered dataset name.
        data_dir: the folder of the datasets, for the default location.
        path: the dataset's file or folder, in place of the default location.
        path_option: the caller's option that sets ``path``, such as
            ``--path``, or None when the caller has none; named in errors.
        data_dir_source: the option (starting with ``--``) or environment
            variable that set ``data_dir``, or None; named in errors.

    Raises:
        UnknownDatasetError: the name is not registered.
        DatasetUnavailableError: the dataset has no events.
        DatasetFileError: the files are missing or have another layout, or
            they contain no event of this dataset.
    """
    info = get_dataset(name)
    if info.loader is None:
        raise DatasetUnavailableError(
            f"dataset {name!r} cannot be replayed: {info.unavailable_reason}"
        )
    source = path if path is not None else info.default_path(data_dir)
    advice = _file_advice(info, path is not None, path_option, data_dir_source)
    if path is None and info.committed_path is None and not source.exists():
        # Checked before the adapter runs, because its "file not found" reads
        # as a wrong path when the data folder merely lacks the dataset.
        raise DatasetFileError(
            f"dataset {name!r} not found: looked for {info.relative_path!r} in "
            f"the data folder {str(data_dir)!r}, "
            f"{_missing_part(data_dir, source)}; {advice}"
        )
    try:
        dataset = info.loader(source)
    except DatasetFileError as exc:
        raise DatasetFileError(f"{exc}; {advice}") from exc
    if not dataset.events:
        raise DatasetFileError(
            f"no {name} events in {str(source)!r} ({_unused_rows(dataset)}); check "
            f"that the path contains the {name} dataset's files, or name the "
            "dataset they belong to"
        )
    return dataset


def _missing_part(data_dir: Path, source: Path) -> str:
    """Describe the deepest existing folder on the way to ``source``."""
    folder = data_dir
    missing = source.relative_to(data_dir).parts
    while len(missing) > 1 and (folder / missing[0]).is_dir():
        folder, missing = folder / missing[0], missing[1:]
    if folder.exists() and not folder.is_dir():
        return "which is a file, not a folder"
    if not folder.is_dir():
        return "which does not exist"
    where = "which" if folder == data_dir else f"but {str(folder)!r}"
    try:
        names = sorted(entry.name for entry in folder.iterdir())
    except OSError as exc:
        return f"{where} cannot be listed: {exc.strerror or exc}"
    if not names:
        return f"{where} is empty"
    listing = ", ".join(names[:_LISTED_NAMES])
    if len(names) > _LISTED_NAMES:
        listing += f" and {len(names) - _LISTED_NAMES} more"
    return f"{where} has no {missing[0]!r} (it contains {listing})"


def _unused_rows(dataset: Dataset) -> str:
    """Describe why an adapter turned no row into an event."""
    summary = dataset.summary
    parts = [f"{sum(summary.rows_read.values())} rows read"]
    for label, counts in (
        ("unparseable", summary.unparseable),
        ("skipped event types", summary.skipped_event_types),
    ):
        if counts:
            details = ", ".join(
                f"{key} {count}" for key, count in sorted(counts.items())
            )
            parts.append(f"{label}: {details}")
    return "; ".join(parts)


def _file_advice(
    info: DatasetInfo,
    is_path_given: bool,
    path_option: str | None,
    data_dir_source: str | None,
) -> str:
    """Return what to change when a dataset's files cannot be read."""
    if is_path_given:
        if path_option is None:
            return "check the path"
        return f"check the file or folder given with {path_option}"
    choices = []
    if path_option is not None:
        choices.append(f"pass {path_option} with the dataset's file or folder")
    if data_dir_source is not None and info.committed_path is None:
        if data_dir_source.startswith("--"):
            choices.append(f"pass {data_dir_source} with the folder of the datasets")
        else:
            choices.append(f"set {data_dir_source} to the folder of the datasets")
    if not choices:
        return "check that the dataset's files are in place"
    return ", or ".join(choices)
