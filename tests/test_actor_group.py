"""ActorGroup (actors/group.py) on a real local Ray: placement, timeouts, shutdown; and that the pools
that use it (LearnerGroup, RolloutPool) report an unschedulable placement group the same way."""
import shutil
import tempfile
import time

import pytest

ray = pytest.importorskip("ray")

from aletheia_ray.actors.group import ActorGroup  # noqa: E402


@ray.remote
def _placement_group_id():
    return ray.get_runtime_context().get_placement_group_id()


@ray.remote
class Probe:
    def placement_group_id(self):
        return ray.get_runtime_context().get_placement_group_id()

    def child_placement_group_id(self):
        """Where a task started by this actor runs (captured into our group or not)."""
        return ray.get(_placement_group_id.options(num_cpus=0.1).remote())


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    temp_dir = tempfile.mkdtemp(prefix="ray-agroup-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def assert_dies(handle, timeout_s: float = 30.0) -> None:
    """``ray.kill`` is asynchronous: a call made right after it may still be served. The actor must
    be gone (calls raise ``RayActorError``) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(handle.placement_group_id.remote(), timeout=timeout_s)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.2)
    pytest.fail(f"actor still answers {timeout_s:g}s after it was killed")


def pg_state(pg) -> str:
    return ray.util.placement_group_table(pg)["state"]


def wait_removed(pg, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while pg_state(pg) != "REMOVED" and time.monotonic() < deadline:
        time.sleep(0.1)
    return pg_state(pg)


def live_placement_groups() -> list[str]:
    """Ids of placement groups not (yet) removed; every test leaves none behind."""
    deadline = time.monotonic() + 10.0
    while True:
        live = [pg_id for pg_id, info in ray.util.placement_group_table().items() if info["state"] != "REMOVED"]
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.1)


def test_actor_lands_in_the_requested_bundle_and_captures_its_children():
    group = ActorGroup("probe", [{"CPU": 0.2}, {"CPU": 0.5}], "PACK", ready_timeout_s=60)
    try:
        pg_id = group.placement_group.id.hex()
        # 0.5 CPU fits bundle 1 only: the actor starting at all shows it went to bundle 1
        big = group.launch(Probe, bundle_index=1, options={"num_cpus": 0.5})
        assert ray.get(big.placement_group_id.remote(), timeout=60) == pg_id
        small = group.launch(Probe, bundle_index=0, capture_child_tasks=True, options={"num_cpus": 0.1})
        assert ray.get(small.child_placement_group_id.remote(), timeout=60) == pg_id
        assert group.actors == [big, small]
        strategy = group.scheduling(1, capture_child_tasks=True)
        assert strategy.placement_group_bundle_index == 1 and strategy.placement_group_capture_child_tasks
        with pytest.raises(ValueError, match="bundle index 2 out of range"):
            group.launch(Probe, bundle_index=2)
        with pytest.raises(ValueError, match="needs bundle_index"):
            group.launch(Probe)
        with pytest.raises(ValueError, match="scheduling_strategy comes from the placement group"):
            group.launch(Probe, bundle_index=0, options={"scheduling_strategy": "SPREAD"})
    finally:
        group.shutdown()
    assert live_placement_groups() == []


def test_several_placement_groups_one_actor_each():
    group = ActorGroup("probe", [{"CPU": 0.25}], "PACK", count=2, ready_timeout_s=60)
    try:
        assert len(group.placement_groups) == 2
        with pytest.raises(ValueError, match="has 2 placement groups"):
            group.placement_group  # noqa: B018
        probes = [group.launch(Probe, bundle_index=0, placement_group_index=i, options={"num_cpus": 0.25})
                  for i in range(2)]
        got = ray.get([p.placement_group_id.remote() for p in probes], timeout=60)
        assert got == [pg.id.hex() for pg in group.placement_groups]
        assert all(pg.bundle_specs == [{"CPU": 0.25}] for pg in group.placement_groups)
    finally:
        group.shutdown()
    assert live_placement_groups() == []


def test_unschedulable_bundles_time_out_naming_them_and_leave_nothing_behind():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^probe placement group \[\{'CPU': 64\}\] \(PACK\) not schedulable "
                                           r"within 1s; cluster has \{.*'CPU': 2\.0"):
        ActorGroup("probe", [{"CPU": 64}], "PACK", ready_timeout_s=1)
    assert time.monotonic() - start < 30
    # one of two fits, the other does not: both are removed
    with pytest.raises(TimeoutError, match=r"^1 of 2 probe placement groups \(\[\{'CPU': 1\.5\}\], STRICT_PACK\) "
                                           r"not schedulable within 1s"):
        ActorGroup("probe", [{"CPU": 1.5}], "STRICT_PACK", count=2, ready_timeout_s=1)
    assert live_placement_groups() == []


def test_shutdown_kills_actors_removes_own_placement_group_and_is_idempotent():
    group = ActorGroup("probe", [{"CPU": 0.2}], "PACK", ready_timeout_s=60)
    pg = group.placement_group
    probe = group.launch(Probe, bundle_index=0, options={"num_cpus": 0.2})
    assert ray.get(probe.placement_group_id.remote(), timeout=60) == pg.id.hex()
    assert group.owns_placement_groups
    group.shutdown()
    assert_dies(probe)
    assert wait_removed(pg) == "REMOVED"
    assert group.actors == [] and group.placement_groups == [] and group.placement_group is None
    group.shutdown()  # again: nothing left to do, no error


def test_adopted_placement_group_is_used_but_left_to_its_owner():
    pg = ray.util.placement_group([{"CPU": 0.2}, {"CPU": 0.2}], strategy="PACK")
    ray.get(pg.ready(), timeout=60)
    try:
        group = ActorGroup("probe", placement_group=pg)
        assert group.placement_group is pg and not group.owns_placement_groups
        probe = group.launch(Probe, bundle_index=1, options={"num_cpus": 0.2})
        assert ray.get(probe.placement_group_id.remote(), timeout=60) == pg.id.hex()
        group.shutdown()
        assert_dies(probe)
        time.sleep(0.5)
        assert pg_state(pg) == "CREATED"
        with pytest.raises(ValueError, match="not both"):
            ActorGroup("probe", [{"CPU": 0.1}], placement_group=pg)
    finally:
        ray.util.remove_placement_group(pg)
    assert live_placement_groups() == []


def test_group_without_placement_group_tracks_launch_and_kill():
    """The SandboxPool use: actors placed by their own options, restarted via kill + launch."""
    group = ActorGroup("sandbox")
    assert group.placement_group is None
    first = group.launch(Probe, options={"num_cpus": 0.1, "scheduling_strategy": "SPREAD"})
    second = group.launch(Probe, options={"num_cpus": 0.1})
    assert ray.get([first.placement_group_id.remote(), second.placement_group_id.remote()], timeout=60) == [None, None]
    group.kill(first)
    assert group.actors == [second]
    assert_dies(first)
    with pytest.raises(ValueError, match="has no placement group"):
        group.launch(Probe, bundle_index=0)
    group.shutdown()
    assert_dies(second)


def test_pools_report_unschedulable_placement_groups_through_the_group(tmp_path):
    from aletheia_ray.actors.learner import LearnerGroup
    from aletheia_ray.actors.rollout import RolloutPool

    with pytest.raises(TimeoutError, match=r"^learner placement group \[\{'CPU': 64\}, \{'CPU': 64\}\] \(PACK\) "
                                           r"not schedulable within 1s; cluster has"):
        LearnerGroup(2, str(tmp_path), num_cpus_per_rank=64, lr=1e-3, micro_batch_size=1, ready_timeout_s=1)
    small = ray.util.placement_group([{"CPU": 0.1}])
    try:
        with pytest.raises(ValueError, match="placement group has 1 bundles for 2 learner ranks"):
            LearnerGroup(2, str(tmp_path), placement_group=small, lr=1e-3, micro_batch_size=1)
    finally:
        ray.util.remove_placement_group(small)
    with pytest.raises(TimeoutError, match=r"^2 of 2 rollout placement groups \(\[\{'CPU': 64\}\], PACK\) "
                                           r"not schedulable within 1s; cluster has"):
        RolloutPool(2, str(tmp_path), num_cpus_per_engine=64, ready_timeout_s=1)
    assert live_placement_groups() == []
