"""Training time that adds up: a run stopped and resumed equals the same run uninterrupted (tiny BERT, real trainer)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="training needs torch: pip install '.[train]' (make test installs it)")
transformers = pytest.importorskip("transformers")

from guardrail_models.training import checkpoint as ck  # noqa: E402
from guardrail_models.training.train import main as train_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "models/zoo/minilm-l6-embed/tokenizer.json"


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with the shipped WordPiece vocabulary: seconds per step, same code path."""
    out = tmp_path_factory.mktemp("tiny_bert")
    tok = transformers.BertTokenizerFast(tokenizer_file=str(TOKENIZER))
    tok.save_pretrained(out)
    config = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def groups(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("groups") / "groups.jsonl.gz"
    rows = []
    for i in range(48):
        label = ["entailment", "neutral", "contradiction", "not_entailment"][i % 4]
        rows.append({"mode": "single", "pairs": [[f"The tower is {i} metres tall.", f"The tower is {i} m tall."]],
                     "claim": [0], "label": label, "source": "toy", "split": "train"})
        rows.append({"mode": "mil", "pairs": [[f"Window {i} one.", "Claim a."], [f"Window {i} two.", "Claim a."],
                                              [f"Window {i} one.", "Claim b."]], "claim": [0, 0, 1],
                     "label": "entailment" if i % 2 else "not_entailment", "source": "toy", "split": "train"})
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def _args(groups: Path, backbone: Path, run: Path, *extra: str) -> list[str]:
    return ["--groups", str(groups), "--backbone-dir", str(backbone), "--run-dir", str(run), "--no-mirror",
            "--name", "tiny-test", "--total-steps", "8", "--pairs-per-batch", "8", "--warmup-steps", "2",
            "--max-length", "32", "--threads", "1", "--no-bf16", "--lr", "1e-3", "--no-export", *extra]


def _final_weights(run: Path) -> dict:
    newest = ck.newest([run])
    assert newest is not None and newest.stem == "ckpt-8"
    return torch.load(newest, map_location="cpu", weights_only=False)


def test_a_resumed_run_equals_an_uninterrupted_one(tiny_backbone, groups, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ck, "SEED_DIR", tmp_path / "no-seeds")
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_main(_args(groups, tiny_backbone, straight))
    train_main(_args(groups, tiny_backbone, split, "--stop-at-step", "3"))
    assert [p.name for p in ck.checkpoints(split)] == ["ckpt-3.pt"]
    train_main(_args(groups, tiny_backbone, split, "--stop-at-step", "5"))
    train_main(_args(groups, tiny_backbone, split))
    a, b = _final_weights(straight), _final_weights(split)
    assert a["step"] == b["step"] == 8 and a["seen"] == b["seen"]
    assert a["model"].keys() == b["model"].keys()
    assert not any(ck.is_frozen(k) for k in a["model"]), "frozen word embeddings are never saved"
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["loss_ema"] == pytest.approx(b["loss_ema"], abs=1e-9)
    start = torch.load(ck.checkpoints(split)[0], map_location="cpu", weights_only=False)
    assert any(not torch.equal(start["model"][k], a["model"][k]) for k in a["model"]), "training changed nothing"


def test_resume_picks_the_newest_copy_and_refuses_other_settings(tiny_backbone, groups, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ck, "SEED_DIR", tmp_path / "no-seeds")
    run, mirror = tmp_path / "run", tmp_path / "mirror"
    base = [a for a in _args(groups, tiny_backbone, run) if a != "--no-mirror"]
    train_main([*base, "--mirror", str(mirror), "--stop-at-step", "4", "--checkpoint-steps", "2"])
    assert [p.name for p in ck.checkpoints(mirror)] == ["ckpt-2.pt", "ckpt-4.pt"]
    for p in ck.checkpoints(run):
        p.unlink()  # the work tree copy is gone (a fresh checkout): the mirror carries the run
    train_main([*base, "--mirror", str(mirror), "--stop-at-step", "6"])
    assert ck.newest([run]).stem == "ckpt-6"
    with pytest.raises(ck.RunMismatchError, match="lr"):
        train_main([*[a if a != "1e-3" else "2e-3" for a in base], "--mirror", str(mirror)])


def test_the_committed_seed_restarts_a_lost_run(tiny_backbone, groups, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ck, "SEED_DIR", tmp_path / "seeds")
    run = tmp_path / "run"
    seed = tmp_path / "seeds" / "tiny-test.pt"
    train_main(_args(groups, tiny_backbone, run, "--stop-at-step", "4", "--write-seed", str(seed)))
    blob = torch.load(seed, map_location="cpu", weights_only=False)
    assert blob["step"] == 4
    assert all(v.dtype == torch.float16 for v in blob["model"].values() if v.is_floating_point())
    assert not any(ck.is_frozen(k) for k in blob["model"])
    for p in ck.checkpoints(run):
        p.unlink()
    train_main(_args(groups, tiny_backbone, run))
    assert ck.newest([run]).stem == "ckpt-8"
    assert torch.load(ck.newest([run]), map_location="cpu", weights_only=False)["step"] == 8


def test_a_seed_is_written_from_the_newest_checkpoint_alone(tiny_backbone, groups, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ck, "SEED_DIR", tmp_path / "no-seeds")
    run = tmp_path / "run"
    train_main(_args(groups, tiny_backbone, run, "--stop-at-step", "3"))
    seed = ck.seed_from_run(run, None, tmp_path / "seed.pt")
    blob = torch.load(seed, map_location="cpu", weights_only=False)
    state = torch.load(ck.newest([run]), map_location="cpu", weights_only=False)["model"]
    assert blob["step"] == 3 and blob["run"] == json.loads((run / "run.json").read_text())
    assert blob["model"].keys() == state.keys()
    for key, value in state.items():
        torch.testing.assert_close(blob["model"][key].float(), value.float(), atol=1e-2, rtol=1e-2)



def test_a_seed_warm_starts_a_new_run_with_its_weights(tiny_backbone, groups, tmp_path, monkeypatch) -> None:
    """A run replaced by another (new data, new schedule) hands its training on: the seed, materialized as an HF
    checkpoint, is the new run's `--init`, classifier included."""
    monkeypatch.setattr(ck, "SEED_DIR", tmp_path / "no-seeds")
    run = tmp_path / "run"
    train_main(_args(groups, tiny_backbone, run, "--stop-at-step", "3"))
    seed = ck.seed_from_run(run, None, tmp_path / "seed.pt")
    out = tmp_path / "warm"
    assert ck.materialize(seed, tiny_backbone, out) == 3
    assert json.loads((out / "seed.json").read_text())["step"] == 3
    warm = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).state_dict()
    trained = torch.load(ck.newest([run]), map_location="cpu", weights_only=False)["model"]
    assert "classifier.weight" in trained
    for key, value in trained.items():
        torch.testing.assert_close(warm[key], value.float(), atol=1e-2, rtol=1e-2)
    fresh = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(tiny_backbone), num_labels=3).state_dict()
    assert not torch.allclose(fresh["classifier.weight"], warm["classifier.weight"])
    new_run = tmp_path / "run2"
    train_main(_args(groups, tiny_backbone, new_run, "--init", str(out), "--stop-at-step", "1"))
    assert json.loads((new_run / "run.json").read_text())["init"] == str(out)


def test_a_run_moves_between_machines_with_and_without_bf16(tiny_backbone, groups, tmp_path, monkeypatch) -> None:
    """bf16 autocast exists on some CPUs only: a stretch on another machine resumes the same run."""
    monkeypatch.setattr(ck, "SEED_DIR", tmp_path / "no-seeds")
    run = tmp_path / "run"
    train_main([a for a in _args(groups, tiny_backbone, run, "--stop-at-step", "2") if a != "--no-bf16"] + ["--bf16"])
    config = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(config | {"bf16": True}))  # as the first runs wrote it
    train_main(_args(groups, tiny_backbone, run, "--stop-at-step", "3"))
    assert ck.newest([run]).stem == "ckpt-3"
