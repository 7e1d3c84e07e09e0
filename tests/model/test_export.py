"""Export round trips on a micro Gemma 2 with a trained (non-zero) LoRA adapter.

Tolerances (float32 logits, micro model, 40 tokens: longer than its 8-token
sliding window, so local and global layers both matter):
  merged KerasHub preset vs base + adapter:          max abs diff < 1e-5
  transformers Gemma2ForCausalLM vs KerasHub:        max abs diff < 1e-4
  KerasHub HF converter (from the export) vs run:    max abs diff < 1e-5
while the adapter moves the logits by far more than that (> 1e-3).
"""

import inspect
import json
import socket
from pathlib import Path

import keras_hub
import numpy as np
import pytest

from kit.cli import main
from kit.errors import UserError
from kit.model import load_causal_lm, load_run
from kit.model.export import export_run, push
from kit.model.hf_checkpoint import GEMMA_DEFAULTS, GEMMA_SIZES, hf_config, hf_config_from
from kit.testing import adapter_arrays, train_micro_run

TOKENS = np.array([[2, *range(5, 395, 10)]], dtype=np.int32)  # 40 ids < the micro vocabulary


def logits(lm, ids=TOKENS) -> np.ndarray:
    return np.asarray(lm({"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}))


def _go_offline(monkeypatch) -> None:
    """Every new socket connection fails, as with no network: what the kit's pre-checks see offline."""

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)


@pytest.fixture(scope="module")
def run_logits(micro_run, tiny_preset) -> np.ndarray:
    lm = load_run(micro_run)
    assert all(np.abs(a).max() > 0 for a in adapter_arrays(lm))  # A and B trained: the merge matters
    ref = logits(lm)
    assert np.abs(ref - logits(load_causal_lm(str(tiny_preset)))).max() > 1e-3
    return ref


@pytest.mark.slow
def test_keras_export_is_merged_and_identical(micro_run, run_logits, tmp_path):
    info = export_run(micro_run, "keras", tmp_path / "keras")
    merged = keras_hub.models.GemmaCausalLM.from_preset(str(tmp_path / "keras"))
    assert not any(getattr(layer, "lora_enabled", False) for layer in merged.backbone._flatten_layers())
    assert np.abs(logits(merged) - run_logits).max() < 1e-5
    assert info["format"] == "keras" and info["lora_merged"]["rank"] == 4
    assert json.loads((tmp_path / "keras" / "kit_export.json").read_text())["run"] == str(micro_run)


@pytest.mark.slow
def test_hf_export_config(micro_run, tmp_path):
    export_run(micro_run, "hf", tmp_path / "hf")
    files = {p.name for p in (tmp_path / "hf").iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    } <= files
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["model_type"] == "gemma2" and cfg["architectures"] == ["Gemma2ForCausalLM"]
    assert (cfg["final_logit_softcapping"], cfg["attn_logit_softcapping"]) == (30.0, 50.0)
    assert cfg["sliding_window"] == 8 and cfg["layer_types"] == ["sliding_attention", "full_attention"]
    assert (cfg["head_dim"], cfg["num_key_value_heads"], cfg["query_pre_attn_scalar"]) == (4, 4, 4)
    assert cfg["hidden_activation"] == "gelu_pytorch_tanh" and cfg["tie_word_embeddings"] is True
    assert cfg["intermediate_size"] == 16 and cfg["vocab_size"] % 64 == 0
    gen_cfg = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert gen_cfg["eos_token_id"][0] == 1 and len(gen_cfg["eos_token_id"]) == 2


def test_hf_config_reads_gemma_backbone_arguments_with_keras_hub_defaults():
    params = inspect.signature(keras_hub.models.GemmaBackbone.__init__).parameters
    assert {k: params[k].default for k in GEMMA_DEFAULTS} == GEMMA_DEFAULTS
    assert all(params[k].default is inspect.Parameter.empty for k in GEMMA_SIZES)


def test_hf_config_from_a_preset_config_equals_the_backbone_s(tiny_preset):
    """What bench builds from a preset's config.json is what `kit export --to hf` writes for its backbone."""
    backbone = load_causal_lm(str(tiny_preset)).backbone
    ours = hf_config(backbone)
    cfg = json.loads((Path(tiny_preset) / "config.json").read_text())["config"]
    assert hf_config_from(cfg, torch_dtype=ours["torch_dtype"]) == ours
    assert ours["layer_types"][0] == "sliding_attention"  # the micro model exercises the Gemma 2 switches


def test_hf_config_refuses_gemma_1_and_missing_sizes():
    gemma2 = {
        "vocabulary_size": 64,
        "num_layers": 2,
        "num_query_heads": 2,
        "num_key_value_heads": 1,
        "hidden_dim": 8,
        "intermediate_dim": 32,
        "head_dim": 4,
        "use_post_ffw_norm": True,
        "use_post_attention_norm": True,
    }
    assert hf_config_from(gemma2)["intermediate_size"] == 16
    with pytest.raises(UserError, match="no post-norms"):
        hf_config_from({**gemma2, "use_post_ffw_norm": False})
    with pytest.raises(UserError, match="lacks head_dim"):
        hf_config_from({k: v for k, v in gemma2.items() if k != "head_dim"})


@pytest.mark.slow
def test_hf_export_matches_transformers_and_loads_back(micro_run, run_logits, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "hf"
    export_run(micro_run, "hf", out)

    model = transformers.Gemma2ForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        hf = model(torch.tensor(TOKENS, dtype=torch.long)).logits.numpy()
    assert np.abs(hf - run_logits).max() < 1e-4

    # KerasHub's own Hugging Face converter, from the local directory (no Hub)
    back = keras_hub.models.GemmaCausalLM.from_preset(str(out), dtype="float32")
    assert np.abs(logits(back) - run_logits).max() < 1e-5

    # the tokenizer files give the same ids as the model's SentencePiece
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    lm = load_run(micro_run)
    text = "<start_of_turn>user\nНапиши отзыв о месте.\nРубрики: Кафе<end_of_turn>\n<start_of_turn>model\n"
    assert tok(text)["input_ids"] == [2, *np.asarray(lm.preprocessor.tokenizer(text)).tolist()]


@pytest.mark.slow
def test_export_cli_and_offline_push(micro_run, tmp_path, monkeypatch, capsys):
    _go_offline(monkeypatch)
    out = tmp_path / "k"
    code = main(["export", "--run", str(micro_run), "--to", "keras", "--out", str(out), "--push", "hf://me/micro"])
    captured = capsys.readouterr()
    assert code == 2 and (out / "config.json").is_file()  # the export itself is complete
    assert "Exported" in captured.out
    assert captured.err.count("\n") == 1 and "no network connection to huggingface.co" in captured.err
    with pytest.raises(UserError, match="no network connection to www.kaggle.com"):
        push(out, "kaggle://me/micro/keras/v1", fmt="keras")
    with pytest.raises(UserError, match="Kaggle Models takes KerasHub presets"):
        push(out, "kaggle://me/micro/keras/v1", fmt="hf")

    assert main(["export", "--run", str(tmp_path / "nope"), "--to", "hf", "--out", str(tmp_path / "x")]) == 2
    assert "Run not found" in capsys.readouterr().err
    assert main(["export", "--run", str(micro_run), "--to", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "invalid choice" in capsys.readouterr().err


# --------------------------------------------------------------------------- PEFT adapter, card, chat template


@pytest.fixture(scope="module")
def base_hf(micro_run, tiny_preset, tiny_prepared, tmp_path_factory) -> Path:
    """The kit's HF export of the micro run's base (registered as a run with no adapter)."""
    tmp = micro_run.parent.parent
    base = train_micro_run(tmp, tiny_preset, tiny_prepared, "micro-base", **{"lora.enabled": "false"})
    out = tmp_path_factory.mktemp("base") / "hf"
    export_run(base, "hf", out)
    return out


@pytest.mark.slow
def test_peft_adapter_round_trip_matches_the_merged_export(micro_run, run_logits, base_hf, tmp_path):
    """PeftModel(kit's HF base export + kit's adapter export) == kit's merged HF export, max abs diff < 1e-5."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    merged_dir, adapter_dir = tmp_path / "merged", tmp_path / "peft"
    export_run(micro_run, "hf", merged_dir)
    info = export_run(micro_run, "peft", adapter_dir, base_model=str(base_hf))
    assert {p.name for p in adapter_dir.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    # 4 query heads x Keras rank 4: every module at rank 16 (smaller ones zero-padded), scaling alpha/rank kept
    lora = info["lora_merged"]
    assert (cfg["r"], cfg["lora_alpha"], cfg["rank_pattern"]) == (16, 16 * lora["alpha"] / lora["rank"], {})
    assert cfg["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert info["peft"]["r"] == 16 and cfg["base_model_name_or_path"] == str(base_hf)

    def hf_logits(model):
        model.eval()
        with torch.no_grad():
            return model(torch.tensor(TOKENS, dtype=torch.long)).logits.numpy()

    load = transformers.AutoModelForCausalLM.from_pretrained
    base = load(str(base_hf), dtype=torch.float32)
    base_out = hf_logits(base)
    with_adapter = hf_logits(peft.PeftModel.from_pretrained(base, str(adapter_dir)))
    merged = hf_logits(load(str(merged_dir), dtype=torch.float32))
    assert np.abs(with_adapter - base_out).max() > 1e-3  # the adapter matters ...
    assert np.abs(with_adapter - merged).max() < 1e-5  # ... and is converted exactly
    assert np.abs(with_adapter - run_logits).max() < 1e-4  # the kit's own logits, as for the merged export


@pytest.mark.slow
def test_peft_export_refuses_a_base_run_and_names_the_fix(base_hf, micro_run, tmp_path):
    with pytest.raises(UserError, match="no adapter.*--to hf"):
        export_run(micro_run.parent / "micro-base", "peft", tmp_path / "p")
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_hf_export_chat_template_card_and_stops(micro_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    from kit.data.prompt import build_prompt
    from kit.model.card import user_message

    report = tmp_path / "report"
    report.mkdir()
    result = {
        "columns_order": ["micro", "human"],
        "requests": {"n": 12},
        "synthetic": True,
        "metrics": {"columns": {"micro": {"rating_accuracy": {"value": 0.5, "low": 0.4, "high": 0.6}}, "human": {}}},
    }
    (report / "metrics.json").write_text(json.dumps(result))
    out = tmp_path / "hf"
    assert main(["export", "--run", str(micro_run), "--to", "hf", "--out", str(out), "--report", str(report)]) == 0
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    prompt = build_prompt(rubrics=["Кафе"], rating=4, keywords=["кофе"], name="Кофемания")
    chat = tok.apply_chat_template(
        [{"role": "user", "content": user_message(prompt)}], add_generation_prompt=True, tokenize=False
    )
    assert chat == "<bos>" + prompt  # the chat template builds exactly the prompt the model trained on
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [1, tok.convert_tokens_to_ids("<end_of_turn>")]
    card = (out / "README.md").read_text()
    head = card.split("---")[1]
    assert "license: gemma" in head and "language:" in head and "base_model" not in head  # local base: no repo
    assert "SYNTHETIC" in card and "<start_of_turn>user" in card
    assert "| rating acc. ↑ | 0.500 [0.400, 0.600] | — |" in card and "12 requests" in card


def test_card_names_the_hub_base_and_the_real_dataset():
    from kit.model.card import card_text

    meta, body = card_text(
        kind="peft",
        name="gemma2-2b-lora",
        base_model="google/gemma-2-2b",
        preset="gemma2_2b_en",
        synthetic=False,
        lora={"rank": 8, "alpha": 16.0, "targets": "qv"},
    )
    assert meta["base_model"] == "google/gemma-2-2b" and meta["license"] == "gemma"
    assert meta["datasets"] == ["d0rj/geo-reviews-dataset-2023"] and meta["library_name"] == "peft"
    assert "PeftModel.from_pretrained" in body and "LoRA rank 8" in body and "## Evaluation" not in body


@pytest.mark.slow
def test_peft_push_offline_is_one_line(micro_run, tmp_path, monkeypatch, capsys):
    _go_offline(monkeypatch)
    out = tmp_path / "p"
    code = main(["export", "--run", str(micro_run), "--to", "peft", "--out", str(out), "--push", "hf://me/micro"])
    err = capsys.readouterr().err
    assert code == 2 and (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()
    assert err.count("\n") == 1 and "no network connection to huggingface.co" in err


@pytest.mark.slow
def test_hf_repo_in_the_hub_cache_loads_offline(micro_run, run_logits, tmp_path, monkeypatch):
    """hf://me/micro with no network: the loader finds the Hub cache's snapshot (here: the kit's HF export)."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    commit = "0" * 40
    export_run(micro_run, "hf", cache / "models--me--micro" / "snapshots" / commit)
    (cache / "models--me--micro" / "refs").mkdir()
    (cache / "models--me--micro" / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    _go_offline(monkeypatch)
    lm = load_causal_lm("hf://me/micro", dtype="float32")
    assert np.abs(logits(lm) - run_logits).max() < 1e-5
    with pytest.raises(UserError, match="no copy in the Hugging Face cache"):
        load_causal_lm("hf://me/other")
