"""A file in the authors' released record layout, end to end: list loader -> per-modification Adv
builder -> ``aletheia-eval score`` and ``aletheia-eval bias``.

Where the layout comes from (stored public sources, read with the search tools):
- field names and types: the dataset card of Aletheia-Bench/Aletheia-Train on the HF hub
  (``README.md`` ``dataset_info.features``, seen at
  fast.hugflare.com/datasets/Aletheia-Bench/Aletheia-Train/blob/main/README.md): prompt_id string,
  query string, generator string, language string, num_candidates int64, candidates list<string>,
  chosen_position int64, chosen_answer string, pass_rates list<float64>, easy_hard string,
  weak_strong string, source string, max_prompt_tokens int64, idx string (50,000 train rows);
- the Adv set: insait-institute/aletheia ``src/rq4_datagen.py`` maps each bias over the whole
  Heldout set, adds a ``modification`` string column named ``<bias>_rejected`` (applied to the
  incorrect candidates) or ``<bias>_chosen`` (to the correct one), concatenates the sets and
  renumbers ``idx`` as ``adv_{i}``; its six biases are authority, self-declared correctness and a
  reference-solution claim (rejected), reverse authority, misleading comments and self-declared
  incorrectness (chosen). (``src/listwise_eval_sets.py`` drops ``max_prompt_tokens`` from the
  evaluation splits; the card is the only layout with published types, so both files here keep it.)

The rows are the shipped fixture's real lists (humaneval_lists_dev.jsonl, the easy ones:
every wrong pass rate <= 0.5, so ``easy_hard=easy``; its one generator is weak). The authors'
``max_prompt_tokens`` counts DeepSeek-R1-Distill-Qwen-14B chat-template tokens, not available
offline: the stand-in here is the whitespace-token count of query + candidates (type exact, value a
stand-in). Verdicts come from a test baseline (longest candidate), not a model.
"""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aletheia_ray.data.lists import load_lists, save_lists
from aletheia_ray.data.report import BuildReport
from aletheia_ray.launch.eval import main as eval_main
from aletheia_ray.testbed.adversarial.per_modification import make_adversarial_per_modification
from fixture_paths import SHARED_DATA
from test_eval_bias import longest, write_verdicts

S = pa.string()
CARD = pa.schema([("prompt_id", S), ("query", S), ("generator", S), ("language", S),
                  ("num_candidates", pa.int64()), ("candidates", pa.list_(S)), ("chosen_position", pa.int64()),
                  ("chosen_answer", S), ("pass_rates", pa.list_(pa.float64())), ("easy_hard", S),
                  ("weak_strong", S), ("source", S), ("max_prompt_tokens", pa.int64()), ("idx", S)])
ADV = CARD.append(pa.field("modification", S))
AUTHORS_SIX = ["authority", "self_declared_correctness", "external_reference",  # on the rejected ones
               "reverse_authority", "misleading_comments", "self_declared_incorrectness"]  # on the chosen one


def _release_rows() -> list[dict]:
    rows = []
    for line in (SHARED_DATA / "humaneval_lists_dev.jsonl").read_text().splitlines():
        r = json.loads(line)
        if any(p > 0.5 for p in r["pass_rates"] if p < 1.0):
            continue
        rows.append({
            "prompt_id": r["prompt_id"], "query": r["query"], "generator": r["generator"], "language": r["language"],
            "num_candidates": r["num_candidates"], "candidates": r["candidates"],
            "chosen_position": r["chosen_position"], "chosen_answer": r["chosen_answer"],
            "pass_rates": r["pass_rates"], "easy_hard": "easy", "weak_strong": "weak", "source": r["source"],
            "max_prompt_tokens": len(r["query"].split()) + sum(len(c.split()) for c in r["candidates"]),
            "idx": f"heldout_{len(rows)}",
        })
    return rows


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    rows = _release_rows()
    pq.write_table(pa.Table.from_pylist(rows, schema=CARD), out / "heldout.parquet")
    assert pq.read_schema(out / "heldout.parquet").remove_metadata().equals(CARD)
    return out, rows


def test_loader_reads_the_release_layout_and_writes_its_types_back(release):
    out, rows = release
    lists = load_lists(out / "heldout.parquet")
    assert len(lists) == len(rows) > 50
    for lst, row in zip(lists, rows):
        for key in ("idx", "prompt_id", "query", "generator", "language", "num_candidates", "candidates",
                    "chosen_position", "chosen_answer", "pass_rates", "easy_hard", "weak_strong", "source"):
            assert getattr(lst, key) == row[key], key
        assert lst.extra == {"max_prompt_tokens": row["max_prompt_tokens"]}
    save_lists(lists, out / "roundtrip.parquet")
    written = pq.read_schema(out / "roundtrip.parquet")
    for field in CARD:  # every released column comes back with the released type
        assert written.field(field.name).type == field.type, field.name
    assert [l.to_row() for l in load_lists(out / "roundtrip.parquet")] == [l.to_row() for l in lists]


def test_release_heldout_through_adv_builder_score_and_bias(release, tmp_path):
    out, rows = release
    heldout = load_lists(out / "heldout.parquet")
    report = BuildReport()
    adv = make_adversarial_per_modification(heldout, AUTHORS_SIX, 0, report)
    assert len(adv) == 6 * len(heldout)  # comment modifications apply to every list
    adv_rows = []
    for i, a in enumerate(adv):  # the authors' Adv layout: no heldout_idx, modification <bias>_<target>
        row = {k: v for k, v in a.to_row().items() if k in CARD.names}
        row.update(idx=f"adv_{i}", modification=f"{a.extra['modification']}_{a.extra['modified_candidates']}")
        adv_rows.append(row)
    pq.write_table(pa.Table.from_pylist(adv_rows, schema=ADV), tmp_path / "adv.parquet")
    assert pq.read_schema(tmp_path / "adv.parquet").remove_metadata().equals(ADV)

    hp = write_verdicts(heldout, longest, tmp_path / "heldout_pred.jsonl")
    adv_loaded = load_lists(tmp_path / "adv.parquet")
    ap = write_verdicts(adv_loaded, longest, tmp_path / "adv_pred.jsonl")
    assert eval_main(["score", "--data", str(out / "heldout.parquet"), "--predictions", str(hp),
                      "--out", str(tmp_path / "metrics.json"), "--require-complete"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    expect_h = sum(longest(l) == r["chosen_position"] for l, r in zip(heldout, rows)) / len(rows)
    assert metrics["n_lists"] == len(rows) and metrics["parse_rate"] == 1.0
    assert metrics["list_acc"] == pytest.approx(expect_h)

    assert eval_main(["bias", "--heldout", str(out / "heldout.parquet"), str(hp), "--adv", str(tmp_path / "adv.parquet"),
                      str(ap), "--out", str(tmp_path / "bias.json")]) == 0
    bias = json.loads((tmp_path / "bias.json").read_text())
    assert bias["heldout"]["list_acc"] == pytest.approx(expect_h)
    assert sorted(bias["by_modification"]) == sorted(AUTHORS_SIX)
    for name, got in bias["by_modification"].items():
        mine = [a for a, r in zip(adv_loaded, adv_rows) if r["modification"].startswith(name + "_")]
        assert got["paired"] is False and got["list_acc_heldout"] == pytest.approx(expect_h)  # no heldout_idx
        assert got["direction"] == ("positive" if name in AUTHORS_SIX[:3] else "negative")
        assert got["list_acc_adv"] == pytest.approx(sum(longest(a) == a.chosen_position for a in mine) / len(mine))
