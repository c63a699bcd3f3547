"""Labels of a particle table and the train/validation/test split.

Labels come from ``rlnClassNumber`` (1-based; 0 = unlabelled) and/or ``cmClassName``:

- with class numbers, the model's class order is the sorted distinct numbers; names come from
  ``cmClassName`` when present (each number must carry one name), else ``class<N>``;
- with names only, the class order is the sorted distinct names.

The split goes to a ``cmSplit`` column (``train``, ``val``, ``test``). A table that already has
one is used as given, so a split can be fixed from outside.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cryomine_core.errors import TableError
from cryomine_core.io import table as T
from cryomine_core.io.columns import SPLIT

log = logging.getLogger("cryomine")

SPLITS = ("train", "val", "test")
MIN_PER_CLASS = 10


def table_labels(df: pd.DataFrame, *, source: str = "particle table") -> tuple[np.ndarray, list[str], list[int]]:
    """0-based label of every row (-1: unlabelled), class names and class numbers, in model order."""
    has_num, has_name = T.CLASS in df.columns, T.CLASS_NAME in df.columns
    if not (has_num or has_name):
        raise TableError(f"{source}: no labels. Give each subtomogram its class in {T.CLASS} (1, 2, ...) and/or "
                         f"{T.CLASS_NAME}.")
    if has_num:
        nums = pd.to_numeric(df[T.CLASS], errors="coerce").fillna(0).astype(int).to_numpy()
        if (nums < 0).any():
            raise TableError(f"{source}: negative {T.CLASS} in row {int(np.flatnonzero(nums < 0)[0]) + 1}; classes "
                             "are 1, 2, ... (0 = unlabelled).")
        numbers = sorted(int(n) for n in np.unique(nums[nums > 0]))
        names = []
        for n in numbers:
            if has_name:
                found = sorted({str(s) for s in df.loc[nums == n, T.CLASS_NAME]})
                if len(found) != 1:
                    raise TableError(f"{source}: class {n} carries several names {found} in {T.CLASS_NAME}; give each "
                                     "class number one name.")
                names.append(found[0])
            else:
                names.append(f"class{n}")
        dupes = sorted({x for x in names if names.count(x) > 1})
        if dupes:
            raise TableError(f"{source}: the name(s) {dupes} are used by several class numbers; give each class "
                             "one name.")
        index = {n: i for i, n in enumerate(numbers)}
        labels = np.array([index.get(int(n), -1) for n in nums], dtype=np.int64)
    else:
        raw = df[T.CLASS_NAME].astype(str).str.strip()
        unl = raw.isin(["", "nan", "None"])
        names = sorted(set(raw[~unl]))
        numbers = list(range(1, len(names) + 1))
        index = {c: i for i, c in enumerate(names)}
        labels = np.array([-1 if u else index[c] for c, u in zip(raw, unl)], dtype=np.int64)
    return labels, names, numbers


def check_labels(labels: np.ndarray, names: list[str], *, min_per_class: int = MIN_PER_CLASS,
                 source: str = "particle table") -> dict[str, int]:
    """Refuse fewer than two classes or a class with fewer than ``min_per_class`` examples."""
    counts = np.bincount(labels[labels >= 0], minlength=len(names))
    if not names:
        raise TableError(f"{source}: no subtomogram is labelled (every {T.CLASS} is 0 or empty, which means "
                         f"unlabelled). Give each training subtomogram its class, 1, 2, ... in {T.CLASS} or a name in "
                         f"{T.CLASS_NAME}.")
    if len(names) < 2:
        raise TableError(f"{source}: only one class ({names[0]}) is labelled; a classifier "
                         "needs at least two. Add subtomograms of other classes (e.g. an 'empty' class of "
                         "background boxes).")
    small = [(n, int(c)) for n, c in zip(names, counts) if c < min_per_class]
    if small:
        listing = ", ".join(f"'{n}' has {c}" for n, c in small)
        raise TableError(f"{source}: too few examples: {listing} (at least {min_per_class} per class are needed to "
                         "split train/validation/test). Add examples, drop the class, or lower --min-per-class.")
    return {n: int(c) for n, c in zip(names, counts)}


def stratified_split(labels: np.ndarray, test_fraction: float = 0.2, val_fraction: float = 0.2,
                     seed: int = 0) -> np.ndarray:
    """``'train'``/``'val'``/``'test'`` per item: per class, ``test_fraction`` to test, then
    ``val_fraction`` of the rest to validation (rounded; at least one training item per class).
    Unlabelled items (-1) get ``''``."""
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1):
        raise TableError(f"split fractions test={test_fraction}, val={val_fraction}: each must be in [0, 1).")
    rng = np.random.default_rng(seed)
    out = np.full(len(labels), "", dtype=object)
    for c in np.unique(labels[labels >= 0]):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        n_test = min(int(round(n * test_fraction)), n - 1)
        n_val = min(int(round((n - n_test) * val_fraction)), n - n_test - 1)
        out[idx[:n_test]] = "test"
        out[idx[n_test:n_test + n_val]] = "val"
        out[idx[n_test + n_val:]] = "train"
    return out


def given_split(df: pd.DataFrame, labels: np.ndarray, *, source: str = "particle table") -> np.ndarray | None:
    """The table's own ``cmSplit`` column, checked, or None when it has none."""
    if SPLIT not in df.columns:
        return None
    split = df[SPLIT].astype(str).str.strip().str.lower().to_numpy(dtype=object)
    bad = [i for i, (s, y) in enumerate(zip(split, labels)) if y >= 0 and s not in SPLITS]
    if bad:
        raise TableError(f"{source}: {SPLIT} in row {bad[0] + 1} is '{split[bad[0]]}'; use train, val or test (or "
                         f"remove the column to split automatically).")
    if not (split[labels >= 0] == "train").any():
        raise TableError(f"{source}: {SPLIT} puts no labelled item in 'train'.")
    return np.where(labels >= 0, split, "")
