"""Reading tables and preparing them for training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tenantml.errors import DatasetNotFound, InvalidDataset
from tenantml.ml.dataset import fingerprint_file, prepare, read_columns, read_table


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31, 45, 27, 52],
            "income": [1.5, 2.25, 0.75, 3.0],
            "member": [True, False, True, False],
            "churned": ["yes", "no", "no", "yes"],
        }
    )


@pytest.mark.parametrize("name", ["data.csv", "data.parquet", "data.pq", "DATA.CSV"])
def test_read_table_reads_csv_and_parquet(tmp_path: Path, frame: pd.DataFrame, name: str) -> None:
    path = tmp_path / name
    if name.lower().endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    table = read_table(str(path))
    assert list(table.columns) == list(frame.columns)
    assert table["income"].tolist() == frame["income"].tolist()
    assert read_columns(path) == list(frame.columns)


def test_read_columns_leaves_out_a_saved_pandas_index(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "indexed.parquet"
    frame.set_index(pd.Index([10, 20, 30, 40], name="row")).to_parquet(path)
    assert read_columns(path) == list(frame.columns) == list(read_table(path).columns)


def test_missing_file_raises_dataset_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "absent.csv"
    for read in (read_table, read_columns, fingerprint_file):
        with pytest.raises(DatasetNotFound, match="absent.csv"):
            read(missing)


def test_unsupported_suffix_is_named_with_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("a,b\n1,2\n")
    for read in (read_table, read_columns):
        with pytest.raises(InvalidDataset, match=r"unsupported suffix '\.xlsx'.*\.csv, \.parquet, \.pq"):
            read(path)


@pytest.mark.parametrize(("name", "content"), [("empty.csv", b""), ("broken.parquet", b"not parquet")])
def test_unreadable_content_raises_invalid_dataset(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidDataset, match=name) as caught:
        read_table(path)
    assert caught.value.__cause__ is not None
    with pytest.raises(InvalidDataset, match=name):
        read_columns(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "parts.parquet"
    folder.mkdir()
    with pytest.raises(InvalidDataset, match="is a directory"):
        read_table(folder)


def test_prepare_splits_numeric_features_from_the_target(frame: pd.DataFrame) -> None:
    data = prepare(frame, "churned")
    assert data.n_rows == 4
    assert data.feature_names == ("age", "income", "member")
    assert data.feature_types == ("int64", "float64", "bool")
    assert data.features.dtype == np.float64 and data.features.shape == (4, 3)
    assert data.features[:, 2].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert data.target.tolist() == ["yes", "no", "no", "yes"]
    assert data.target_name == "churned"


def test_prepare_keeps_a_numeric_target_numeric(frame: pd.DataFrame) -> None:
    data = prepare(frame.drop(columns="churned"), "income")
    assert data.target.dtype == np.float64
    assert prepare(frame.drop(columns="churned"), "age").target.dtype == np.int64


def test_prepare_refuses_missing_target_naming_it_and_the_columns(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidDataset, match=r"'label' is not in .*'age', 'income', 'member', 'churned'"):
        prepare(frame, "label")


def test_prepare_truncates_a_long_column_listing() -> None:
    wide = pd.DataFrame({f"c{i}": [1.0] for i in range(50)})
    with pytest.raises(InvalidDataset, match=r"'c19', \.\.\. \(30 more\)") as caught:
        prepare(wide, "label")
    assert "'c20'" not in str(caught.value)


def test_prepare_refuses_non_numeric_features_naming_them(frame: pd.DataFrame) -> None:
    frame["city"] = ["Oslo", "Lima", "Pune", "Kiev"]
    with pytest.raises(InvalidDataset, match=r"feature columns must be numeric; non-numeric: 'city' \("):
        prepare(frame, "churned")


def test_prepare_refuses_a_frame_without_rows(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidDataset, match="dataset has no rows"):
        prepare(frame.iloc[0:0], "churned")


def test_prepare_refuses_a_frame_with_only_the_target(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidDataset, match="only the target column 'churned'"):
        prepare(frame[["churned"]], "churned")


@pytest.mark.parametrize("column", ["income", "churned"])
def test_prepare_refuses_missing_values_naming_the_column(frame: pd.DataFrame, column: str) -> None:
    frame.loc[2, column] = None
    with pytest.raises(InvalidDataset, match=f"missing values .*'{column}'"):
        prepare(frame, "churned")


def test_prepare_refuses_infinite_values_naming_the_column(frame: pd.DataFrame) -> None:
    frame.loc[1, "income"] = np.inf
    with pytest.raises(InvalidDataset, match="infinite values .*'income'"):
        prepare(frame, "churned")


def test_prepare_refuses_duplicated_column_names(frame: pd.DataFrame) -> None:
    frame.columns = ["age", "age", "member", "churned"]
    with pytest.raises(InvalidDataset, match="duplicated column names: 'age'"):
        prepare(frame, "churned")


def test_fingerprint_is_the_sha256_of_the_bytes_and_follows_the_content(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n")
    first = fingerprint_file(path)
    assert first == hashlib.sha256(b"a,b\n1,2\n").hexdigest() == fingerprint_file(str(path))
    path.write_bytes(b"a,b\n1,3\n")
    assert fingerprint_file(path) != first


def test_fingerprint_streams_files_larger_than_one_chunk(tmp_path: Path) -> None:
    content = bytes(range(256)) * 9000  # a little over 2 MiB
    path = tmp_path / "big.parquet"
    path.write_bytes(content)
    assert fingerprint_file(path) == hashlib.sha256(content).hexdigest()


def test_rows_are_measured_with_the_fingerprint_in_one_pass(tmp_path: Path) -> None:
    from tenantml.ml.dataset import measure_file

    with_break, without = tmp_path / "a.csv", tmp_path / "b.csv"
    with_break.write_bytes(b"x,y\n1,2\n3,4\n")
    without.write_bytes(b"x,y\n1,2\n3,4")
    assert measure_file(with_break) == (hashlib.sha256(with_break.read_bytes()).hexdigest(), 2)
    assert measure_file(without)[1] == 2
    parquet = tmp_path / "c.parquet"
    pd.DataFrame({"x": range(7), "y": range(7)}).to_parquet(parquet)
    assert measure_file(parquet)[1] == 7
