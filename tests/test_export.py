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
from tiny_models import adapter_arrays, micro_overrides

from kit.cli import main
from kit.config import load_config
from kit.errors import UserError
from kit.model import load_causal_lm, load_run
from kit.model.export import (
    GEMMA_DEFAULTS,
    GEMMA_SIZES,
    export_run,
    hf_config,
    hf_config_from,
    push,
)
from kit.train import finetune

ROOT = Path(__file__).resolve().parent.parent
TOKENS = np.array([[2, *range(5, 395, 10)]], dtype=np.int32)  # 40 ids < the micro vocabulary


def logits(lm, ids=TOKENS) -> np.ndarray:
    return np.asarray(lm({"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}))


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory, tiny_preset, tiny_prepared) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    finetune(
        load_config(ROOT / "configs" / "tiny.toml", micro_overrides(tmp, tiny_preset, tiny_prepared)), progress=False
    )
    return tmp / "runs" / "micro"


@pytest.fixture(scope="module")
def run_logits(micro_run, tiny_preset) -> np.ndarray:
    lm = load_run(micro_run)
    assert all(np.abs(a).max() > 0 for a in adapter_arrays(lm))  # A and B trained: the merge matters
    ref = logits(lm)
    assert np.abs(ref - logits(load_causal_lm(str(tiny_preset)))).max() > 1e-3
    return ref


def test_keras_export_is_merged_and_identical(micro_run, run_logits, tmp_path):
    info = export_run(micro_run, "keras", tmp_path / "keras")
    merged = keras_hub.models.GemmaCausalLM.from_preset(str(tmp_path / "keras"))
    assert not any(getattr(layer, "lora_enabled", False) for layer in merged.backbone._flatten_layers())
    assert np.abs(logits(merged) - run_logits).max() < 1e-5
    assert info["format"] == "keras" and info["lora_merged"]["rank"] == 4
    assert json.loads((tmp_path / "keras" / "kit_export.json").read_text())["run"] == str(micro_run)


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


def test_export_cli_and_offline_push(micro_run, tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
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
