"""Tenant and model names, and the rule that a tenant reads datasets only under its own prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantml.domain.names import check_model_name, check_tenant_name, registered_model_name
from tenantml.errors import DatasetNotFound, DatasetOutsideTenant, InvalidRequest
from tenantml.adapters.storage import TenantStorage


@pytest.mark.parametrize("name", ["acme", "a", "team-7", "0x", "a" * 63])
def test_valid_tenant_names_are_accepted(name: str) -> None:
    assert check_tenant_name(name) == name


@pytest.mark.parametrize("name", ["", "Acme", "-acme", "acme_corp", "acme.corp", "a/b", "a:b", "a" * 64, "acme\n"])
def test_invalid_tenant_name_is_refused_naming_it(name: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid tenant name") as caught:
        check_tenant_name(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", ["churn", "Churn_v2", "m-1", "9", "a" * 128])
def test_valid_model_names_are_accepted(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "_churn", "churn.v2", "a/b", "a:b", "a b", "a" * 129, "churn\n"])
def test_invalid_model_name_is_refused_naming_it(name: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid model name") as caught:
        check_model_name(name)
    assert repr(name) in str(caught.value)


def test_registered_model_name_carries_the_tenant() -> None:
    assert registered_model_name("acme", "churn") == "acme.churn"


@pytest.fixture
def storage(tmp_path: Path) -> TenantStorage:
    storage = TenantStorage(tmp_path / "datasets")
    for tenant in ("acme", "acme2", "globex"):
        (storage.prefix(tenant) / "nested").mkdir(parents=True)
        (storage.prefix(tenant) / "data.csv").write_text("x,y\n1,2\n")
        (storage.prefix(tenant) / "nested" / "more.csv").write_text("x,y\n1,2\n")
    return storage


def test_dataset_inside_the_prefix_resolves(storage: TenantStorage) -> None:
    inside = storage.prefix("acme") / "nested" / "more.csv"
    for dataset in ("nested/more.csv", "./nested/../nested/more.csv", str(inside), f"file://{inside}"):
        assert storage.resolve("acme", dataset) == inside


@pytest.mark.parametrize(
    "dataset",
    ["../globex/data.csv", "nested/../../globex/data.csv", "../acme2/data.csv", "/etc/hostname",
     "s3://bucket/acme/data.csv", "http://example.com/data.csv"],
)
def test_dataset_outside_the_prefix_is_refused_naming_it(storage: TenantStorage, dataset: str) -> None:
    with pytest.raises(DatasetOutsideTenant, match=str(storage.prefix("acme"))) as caught:
        storage.resolve("acme", dataset)
    assert repr(dataset) in str(caught.value)


def test_absolute_path_into_another_tenant_is_refused(storage: TenantStorage) -> None:
    for dataset in (str(storage.prefix("globex") / "data.csv"), f"file://{storage.prefix('acme2') / 'data.csv'}"):
        with pytest.raises(DatasetOutsideTenant):
            storage.resolve("acme", dataset)


def test_symlink_leading_out_of_the_prefix_is_refused(storage: TenantStorage) -> None:
    (storage.prefix("acme") / "sneaky.csv").symlink_to(storage.prefix("globex") / "data.csv")
    with pytest.raises(DatasetOutsideTenant, match="sneaky.csv"):
        storage.resolve("acme", "sneaky.csv")


@pytest.mark.parametrize("dataset", ["absent.csv", "nested", ""])
def test_missing_dataset_is_named(storage: TenantStorage, dataset: str) -> None:
    with pytest.raises(DatasetNotFound) as caught:
        storage.resolve("acme", dataset)
    assert repr(dataset) in str(caught.value)


def test_add_copies_a_file_into_the_tenant_prefix(storage: TenantStorage, tmp_path: Path) -> None:
    source = tmp_path / "upload.csv"
    source.write_text("a,b\n3,4\n")
    landed = storage.add("newco", source)
    assert landed == storage.prefix("newco") / "upload.csv" and landed.read_text() == "a,b\n3,4\n"
    renamed = storage.add("newco", source, "sub/renamed.csv")
    assert storage.resolve("newco", "sub/renamed.csv") == renamed


def test_add_refuses_a_name_outside_the_prefix_and_a_missing_source(storage: TenantStorage, tmp_path: Path) -> None:
    source = tmp_path / "upload.csv"
    source.write_text("a,b\n3,4\n")
    with pytest.raises(DatasetOutsideTenant):
        storage.add("acme", source, "../globex/data.csv")
    assert (storage.prefix("globex") / "data.csv").read_text() == "x,y\n1,2\n"
    with pytest.raises(DatasetNotFound, match="absent.csv"):
        storage.add("acme", tmp_path / "absent.csv")


def test_adding_another_tenants_stored_file_is_refused(tmp_path: Path) -> None:
    storage = TenantStorage(tmp_path / "datasets")
    theirs = storage.prefix("globex") / "secret.csv"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("x,label\n1,0\n")
    with pytest.raises(DatasetOutsideTenant, match="secret.csv"):
        storage.add("acme", theirs)
    assert not (storage.prefix("acme") / "secret.csv").exists()


@pytest.mark.parametrize("dataset", ["data\x00.csv", "data.csv\n", "da\tta.csv", "\x1b[31mdata.csv"])
def test_control_characters_in_a_dataset_are_refused_with_a_message(storage: TenantStorage, dataset: str) -> None:
    with pytest.raises(InvalidRequest, match="control characters"):
        storage.resolve("acme", dataset)


@pytest.mark.parametrize("name", [".", "sub/..", ".hidden.csv", "bad\x00.csv"])
def test_add_refuses_a_name_that_is_no_file_of_its_own(storage: TenantStorage, tmp_path: Path, name: str) -> None:
    source = tmp_path / "upload.csv"
    source.write_text("x,label\n1,0\n")
    with pytest.raises(InvalidRequest, match="invalid dataset name"):
        storage.add("acme", source, name)
    assert storage.prefix("acme").is_dir()  # the tenant's folder was not replaced by a file


def test_add_refuses_a_hard_link(storage: TenantStorage, tmp_path: Path) -> None:
    secret = tmp_path / "platform.db"
    secret.write_text("not yours")
    link = tmp_path / "innocent.csv"
    link.hardlink_to(secret)
    with pytest.raises(InvalidRequest, match="hard link"):
        storage.add("acme", link)
    assert not (storage.prefix("acme") / "innocent.csv").exists()
