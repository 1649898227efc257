"""Which tenant a caller acts as, the operator's tenant, quota and dataset commands, on a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tenantml.adapters.storage import TenantStorage
from tenantml.adapters.store import Store
from tenantml.domain.scheduling import Policy, Running, Waiting, plan
from tenantml.domain.tenant import Quota, effective_limits
from tenantml.errors import InvalidRequest, NotFound, TenantExists, UnknownTenant
from tenantml.services import tenancy

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def key(store: Store, tenant_name: str) -> str:
    """The API key of a new tenant named ``tenant_name``."""
    return tenancy.create_tenant(store, tenant_name, NOW)


def test_a_new_tenants_key_is_shown_once_and_stored_only_as_its_digest(store: Store, tenant_name: str,
                                                                       key: str) -> None:
    assert key.startswith("tml_")
    assert tenancy.tenant_for_key(store, key) == tenant_name
    assert tenancy.tenant_for_key(store, key + "x") is None
    assert store.tenant_for_key(key) is None  # looked up by SHA-256, never in clear


def test_only_an_operator_creates_tenants(store: Store, key: str) -> None:
    with pytest.raises(InvalidRequest, match="operator command: unset TENANTML_API_KEY"):
        tenancy.create_tenant(store, "another", NOW, api_key=key)
    assert "another" not in store.list_tenants()


def test_a_tenant_name_is_checked_and_taken_once(store: Store, tenant_name: str, key: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid tenant name 'Not Valid'"):
        tenancy.create_tenant(store, "Not Valid", NOW)
    with pytest.raises(TenantExists):
        tenancy.create_tenant(store, tenant_name, NOW)


def test_an_operator_acts_for_the_tenant_it_names_or_for_all(store: Store) -> None:
    assert tenancy.acting_tenant(store, None, "acme") == "acme"
    assert tenancy.acting_tenant(store, None, None) is None
    with pytest.raises(InvalidRequest, match="name the tenant with --tenant T"):
        tenancy.required_tenant(store, None, None)


def test_a_key_acts_as_its_own_tenant_and_sees_no_other(store: Store, tenant_name: str, key: str) -> None:
    assert tenancy.acting_tenant(store, key, None) == tenancy.required_tenant(store, key, tenant_name) == tenant_name
    with pytest.raises(NotFound, match="tenant 'other' is not visible with this API key"):
        tenancy.acting_tenant(store, key, "other")


def test_an_unknown_key_is_refused_saying_how_to_act_as_operator(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="not a known tenant key: check the key, or unset it"):
        tenancy.acting_tenant(store, "tml_nobody", None)


def test_a_key_lists_only_its_own_tenant(store: Store, tenant_name: str, key: str) -> None:
    tenancy.create_tenant(store, "zz-other", NOW)
    assert tenancy.list_tenants(store, None) == sorted([tenant_name, "zz-other"])
    assert tenancy.list_tenants(store, key) == [tenant_name]


def test_a_dataset_is_copied_under_the_tenants_prefix(store: Store, tenant_name: str, key: str,
                                                      tmp_path: Path) -> None:
    storage = TenantStorage(tmp_path / "datasets")
    source = tmp_path / "churn.csv"
    source.write_text("x,y\n1,0\n")
    relative, path = tenancy.add_dataset(store, storage, tenant_name, source, "in/churn.csv")
    assert relative == Path("in/churn.csv")
    assert path == storage.prefix(tenant_name) / "in" / "churn.csv" and path.read_text() == "x,y\n1,0\n"
    assert storage.resolve(tenant_name, str(relative)) == path


def test_a_dataset_of_an_unknown_tenant_is_refused_before_anything_is_copied(store: Store, tmp_path: Path) -> None:
    storage = TenantStorage(tmp_path / "datasets")
    (tmp_path / "churn.csv").write_text("x,y\n1,0\n")
    with pytest.raises(UnknownTenant, match="tenantml tenant create nobody"):
        tenancy.add_dataset(store, storage, "nobody", tmp_path / "churn.csv")
    assert not (tmp_path / "datasets").exists()


def test_an_operator_sets_and_clears_a_tenant_s_running_limit(store: Store, tenant_name: str, key: str) -> None:
    assert store.running_limit(tenant_name) is None
    assert tenancy.set_running_limit(store, tenant_name, 2) == 2
    assert store.running_limit(tenant_name) == 2
    assert store.queue_limit(tenant_name) is None  # the queued limit is a separate quota
    assert tenancy.set_running_limit(store, tenant_name, 0) == 0  # 0: admitted requests all wait
    assert tenancy.set_running_limit(store, tenant_name, None) is None


def test_a_running_limit_is_refused_below_zero_for_an_unknown_tenant_or_with_a_tenant_key(
    store: Store, tenant_name: str, key: str
) -> None:
    with pytest.raises(InvalidRequest, match="invalid --max-running -1: give a count of 0 or more, or 'none'"):
        tenancy.set_running_limit(store, tenant_name, -1)
    with pytest.raises(UnknownTenant, match="unknown tenant 'nobody'"):
        tenancy.set_running_limit(store, "nobody", 1)
    with pytest.raises(UnknownTenant):
        store.running_limit("nobody")
    with pytest.raises(InvalidRequest, match="quotas are set by the operator"):
        tenancy.set_running_limit(store, tenant_name, 1, api_key=key)
    assert store.running_limit(tenant_name) is None


def test_running_limits_reads_every_tenant_s_own_limit_at_once(store: Store, tenant_name: str, key: str) -> None:
    tenancy.create_tenant(store, "zz-other", NOW)
    tenancy.set_running_limit(store, "zz-other", 3)
    assert store.running_limits() == {tenant_name: None, "zz-other": 3}


def test_a_tenant_s_own_running_limit_wins_and_a_tenant_with_none_at_all_is_left_out() -> None:
    own = {"capped": 1, "frozen": 0, "default": None}
    assert effective_limits(own, 4) == {"capped": 1, "frozen": 0, "default": 4}
    assert effective_limits(own, None) == {"capped": 1, "frozen": 0}
    assert effective_limits({}, 4) == {}


def test_the_scheduler_holds_the_running_limits_read_from_the_store(store: Store, key: str, tenant_name: str) -> None:
    tenancy.create_tenant(store, "zz-other", NOW)
    tenancy.set_running_limit(store, tenant_name, 1)
    policy = Policy(limits=effective_limits(store.running_limits(), 2))
    waiting = [Waiting(f"{tenant}-{n}", tenant, "small", NOW) for tenant in (tenant_name, "zz-other") for n in range(3)]
    running = [Running(f"{tenant_name}-old", tenant_name, "large", NOW)]  # a limit counts every class
    starts = plan(waiting, running, {"small": 6, "large": 0}, NOW, policy).starts
    assert sorted(start.tenant for start in starts) == ["zz-other", "zz-other"]


def test_quotas_show_every_tenant_s_own_limits_to_an_operator_and_its_own_to_a_key(
    store: Store, tenant_name: str, key: str
) -> None:
    tenancy.create_tenant(store, "zz-other", NOW)
    tenancy.set_queue_limit(store, "zz-other", 5)
    tenancy.set_running_limit(store, "zz-other", 1)
    assert tenancy.quotas(store, None) == {tenant_name: Quota(), "zz-other": Quota(max_queued=5, max_running=1)}
    assert tenancy.quotas(store, None, "zz-other") == {"zz-other": Quota(5, 1)}
    assert tenancy.quotas(store, key) == {tenant_name: Quota()}
    with pytest.raises(NotFound):
        tenancy.quotas(store, key, "zz-other")
    with pytest.raises(UnknownTenant):
        tenancy.quotas(store, None, "nobody")
