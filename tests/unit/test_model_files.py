"""Model files: the trusted types cover the five algorithms and nothing runs code; the digest sees every change."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io

from tenantml.ml.algorithms import ALGORITHMS
from tenantml.ml.dataset import TrainingData
from tenantml.ml.model_files import TRUSTED_TYPES, UntrustedTypes, digest_folder, load_estimator, types_in

_X = np.random.default_rng(0).normal(size=(120, 3))


def _targets(task: str) -> list[np.ndarray]:
    if task == "regression":
        return [_X[:, 0] * 2.0]
    positive, three = _X[:, 0] > 0, np.digitize(_X[:, 1], [-0.5, 0.5])
    return [positive.astype(np.int64), np.asarray(np.where(positive, "a", "b"), dtype=object), positive,
            np.asarray(np.array(["x", "y", "z"])[three], dtype=object)]


def _variants(trainer: type) -> list[dict[str, object]]:
    choices = [{name: choice} for name, param in trainer.PARAMS.items() for choice in param.choices]
    small = {name: 5 for name in ("n_estimators", "max_iter") if name in trainer.PARAMS}
    small |= {"epochs": 1} if "epochs" in trainer.PARAMS else {}
    return [small | extra for extra in [{}, *choices]]


def _fitted(algorithm: str) -> list[object]:
    trainer_class = ALGORITHMS[algorithm]
    fitted = []
    for target in _targets(trainer_class.task):
        for params in _variants(trainer_class):
            trainer = trainer_class(params, TrainingData(_X, target, ("a", "b", "c"), ("float64",) * 3, "y"))
            while trainer.completed_steps < trainer.total_steps:
                trainer.advance()
            fitted.append(trainer.estimator)
    return fitted


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_model_of_every_algorithm_loads_with_the_trusted_types_alone(algorithm: str, tmp_path: Path) -> None:
    for index, estimator in enumerate(_fitted(algorithm)):
        file = tmp_path / f"{index}.skops"
        skops.io.dump(estimator, file)
        assert types_in(file) <= set(TRUSTED_TYPES)
        assert np.array_equal(load_estimator(file).predict(_X), estimator.predict(_X))  # type: ignore[attr-defined]


def _with_type(file: Path, module: str, name: str) -> Path:
    """The skops file with its top object's type replaced, as a crafted file would name it."""
    with zipfile.ZipFile(file) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    schema = json.loads(entries["schema.json"])
    schema["__module__"], schema["__class__"] = module, name
    entries["schema.json"] = json.dumps(schema).encode()
    crafted = file.with_name("crafted.skops")
    with zipfile.ZipFile(crafted, "w") as archive:
        for entry, content in entries.items():
            archive.writestr(entry, content)
    return crafted


def test_a_file_naming_a_type_outside_the_list_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    file = tmp_path / "model.skops"
    skops.io.dump(_fitted("sgd_classifier")[0], file)
    with pytest.raises(UntrustedTypes, match="os.system"):
        load_estimator(_with_type(file, "os", "system"))


def test_a_pickle_is_not_a_model_file(tmp_path: Path) -> None:
    import pickle

    file = tmp_path / "model.skops"
    file.write_bytes(pickle.dumps(os.getcwd))
    with pytest.raises(UntrustedTypes, match="not a skops file"):
        load_estimator(file)
    assert not zipfile.is_zipfile(io.BytesIO(file.read_bytes()))


def test_the_digest_changes_with_any_file_content_name_or_addition(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "sub" / "model.skops").write_bytes(b"one")
    first = digest_folder(tmp_path)
    assert first == digest_folder(tmp_path) and first.startswith("sha256:")
    (tmp_path / "sub" / "model.skops").write_bytes(b"two")
    changed = digest_folder(tmp_path)
    (tmp_path / "sub" / "model.skops").rename(tmp_path / "sub" / "other.skops")
    renamed = digest_folder(tmp_path)
    (tmp_path / "extra.txt").write_text("")
    added = digest_folder(tmp_path)
    assert len({first, changed, renamed, added}) == 4
