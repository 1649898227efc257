"""A registered model's files: their digest, and a loader that cannot run code.

Models are saved in the skops format and loaded with :func:`load_estimator`, which accepts only the
types listed in :data:`TRUSTED_TYPES`: the estimators of the five algorithms and the parts they are
made of. skops rebuilds objects from a JSON schema of known types, so a file that names any other
type (a function, ``os.system``, a class of the attacker's choosing) is refused before anything in
it is built. The list is ours, not the one MLflow writes into the model's ``MLmodel`` file: a file
that lists its own trusted types would let a crafted model trust anything.

:func:`digest_folder` is recorded on each version at registration and checked before every load,
so a file swapped in the artifact store after registration is refused as well.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["DIGEST_PREFIX", "SKOPS_FILE", "TRUSTED_TYPES", "UntrustedTypes", "digest_folder", "bytes_digest", "file_digest", "load_estimator"]

DIGEST_PREFIX = "sha256:"
SKOPS_FILE = "model.skops"
"""The file MLflow's sklearn flavour writes for ``serialization_format="skops"``."""

_CHUNK = 1024 * 1024

# Every type a fitted estimator of tenantml.ml.algorithms holds, found by dumping each of the five
# with every kind of target (tests/unit/test_model_files.py keeps it complete and no larger).
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.dict",
    "builtins.list",
    "builtins.str",
    "builtins.tuple",
    "numpy.float64",
    "numpy.int64",
    "numpy.ndarray",
    "numpy.random._generator.Generator",
    "numpy.random.mtrand.RandomState",
    "numpy.uint64",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.linear_model._sgd_fast.Hinge",
    "sklearn.linear_model._sgd_fast.ModifiedHuber",
    "sklearn.linear_model._sgd_fast.SquaredHinge",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
)


class UntrustedTypes(ValueError):
    """The skops file names types outside TRUSTED_TYPES (or is not a skops file); nothing was loaded."""


def digest_folder(folder: str | Path) -> str:
    """``sha256:<hex>`` over every file under ``folder``: its relative path, its size and its bytes.

    Sorted by path, so the same files give the same digest wherever they were downloaded; an added,
    removed, renamed or changed file changes it.
    """
    root = Path(folder)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + str(file.stat().st_size).encode() + b"\0")
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return DIGEST_PREFIX + digest.hexdigest()


def file_digest(file: str | Path) -> str:
    """``sha256:<hex>`` of one file's bytes."""
    digest = hashlib.sha256()
    with Path(file).open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return DIGEST_PREFIX + digest.hexdigest()


def bytes_digest(content: bytes) -> str:
    """``sha256:<hex>`` of ``content``."""
    return DIGEST_PREFIX + hashlib.sha256(content).hexdigest()


def types_in(file: str | Path) -> set[str]:
    """The fully qualified types a skops file's schema names, read without building any of them."""
    try:
        with zipfile.ZipFile(file) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise UntrustedTypes(f"not a skops file ({type(err).__name__})") from err
    found: set[str] = set()
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "__class__" in node or "__module__" in node:
                found.add(f"{node.get('__module__')}.{node.get('__class__')}")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def load_estimator(file: str | Path) -> Any:
    """Load a skops file holding only TRUSTED_TYPES; UntrustedTypes (naming them) otherwise."""
    import skops.io

    untrusted = sorted(types_in(file) - set(TRUSTED_TYPES))
    if untrusted:
        raise UntrustedTypes(f"the model file names types that are not trusted: {', '.join(untrusted[:10])}")
    return skops.io.load(file, trusted=list(TRUSTED_TYPES))
