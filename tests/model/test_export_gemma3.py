"""Gemma 3 exports on a micro Gemma 3 with a trained LoRA adapter: transformers, PEFT and KerasHub agree.

The micro Gemma 3 has six layers (five sliding-window layers, then a global
one), an 8-token window, 4 query heads on 2 key/value heads (GQA) and random
norm scales (a fresh model's are all zero, which would hide a swapped norm
in the weight mapping). The prompts run from shorter than the window to
several windows long, so the sliding mask, the global layer and both RoPE
bases all shape the logits. Tolerances, float32 logits:

  transformers Gemma3ForCausalLM (the kit's hf export) vs the kit:   max abs diff <= 1e-5
  PeftModel(HF export of the base + the kit's peft export) vs merged: max abs diff <= 1e-5
  KerasHub's HF converter (from the export) vs the kit:               max abs diff <= 1e-5
while the adapter, and every switch of the config (window size +-1, which
layers are global, RoPE bases and scaling, query scaling), moves them by far
more than that (> 1e-3).
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from kit.cli import main
from kit.families import family_named
from kit.model import load_causal_lm, load_run
from kit.model.export import export_run
from kit.model.hf_checkpoint import write_hf_checkpoint
from kit.model.tiny import TinySpec
from kit.testing import adapter_arrays, micro_lm, train_micro_run

WINDOW = 8
G3_MICRO = TinySpec(
    vocab_size=400,
    num_layers=6,  # layer 5 is global
    hidden_dim=16,
    intermediate_dim=32,  # halved for Gemma 3: 16-wide gated projections
    num_query_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    sliding_window_size=WINDOW,
    buckets=(32, 64),
    batch_size=8,
)
GEMMA3 = family_named("gemma3")
TOL = 1e-5


def logits(lm, ids) -> np.ndarray:
    ids = np.asarray([ids], dtype=np.int32)
    return np.asarray(lm({"token_ids": ids, "padding_mask": np.ones_like(ids, dtype=bool)}))


def hf_logits(model, ids) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids], dtype=torch.long)).logits.numpy()


def hf_model(path, config=None):
    import torch
    import transformers

    kwargs = {} if config is None else {"config": config}
    return transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **kwargs)


def worst(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def first_difference(a: np.ndarray, b: np.ndarray, tol: float = 1e-4) -> int:
    """The first position whose logits differ by more than `tol` (len when none does)."""
    per_position = np.abs(a - b).max(axis=(0, 2))
    over = np.nonzero(per_position > tol)[0]
    return int(over[0]) if over.size else per_position.size


@pytest.fixture(scope="module")
def g3_preset(tiny_prepared, tmp_path_factory) -> Path:
    """The micro Gemma 3 preset dir, every RMSNorm scale random so the weight mapping of each norm is checked."""
    lm = micro_lm(tiny_prepared, G3_MICRO, family="gemma3")
    rng = np.random.default_rng(3)
    norms = [v for v in lm.backbone.weights if v.path.endswith("/scale")]
    assert len(norms) == 6 * 6 + 1  # 4 block norms + query/key norms per layer, and the final norm
    for v in norms:
        v.assign(rng.uniform(-0.5, 0.5, v.shape).astype("float32"))
    path = tmp_path_factory.mktemp("g3-models") / "g3-micro"
    lm.save_to_preset(str(path))
    return path


@pytest.fixture(scope="module")
def g3_run(g3_preset, tiny_prepared, tmp_path_factory) -> Path:
    """A micro Gemma 3 LoRA run (8 steps, all targets, rank 4)."""
    return train_micro_run(tmp_path_factory.mktemp("g3-run"), g3_preset, tiny_prepared, "g3")


@pytest.fixture(scope="module")
def g3_lm(g3_run):
    lm = load_run(g3_run)
    assert GEMMA3.classes().backbone is type(lm.backbone)
    assert all(np.abs(a).max() > 0 for a in adapter_arrays(lm))  # A and B trained: the merge matters
    return lm


@pytest.fixture(scope="module")
def prompts(g3_lm) -> list[list[int]]:
    """Token ids: shorter than the window, just over two windows, 40 tokens, and a real kit prompt."""
    from kit.data.prompt import build_prompt

    prompt = build_prompt(rubrics=["Кафе"], rating=4, keywords=["кофе"], name="Кофемания")
    real = [2, *np.asarray(g3_lm.preprocessor.tokenizer(prompt)).tolist()]
    assert len(real) > 3 * WINDOW
    return [[2, 5, 15, 25, 35], [2, *range(7, 7 + 5 * 2 * WINDOW, 5)], [2, *range(5, 395, 10)], real]


@pytest.fixture(scope="module")
def run_logits(g3_lm, g3_preset, prompts) -> list[np.ndarray]:
    ref = [logits(g3_lm, p) for p in prompts]
    base = load_causal_lm(str(g3_preset), dtype="float32")
    assert worst(ref, [logits(base, p) for p in prompts]) > 1e-3
    return ref


@pytest.fixture(scope="module")
def hf_export(g3_run, tmp_path_factory) -> Path:
    """`kit export --to hf` of the run."""
    out = tmp_path_factory.mktemp("g3-hf") / "hf"
    assert main(["export", "--run", str(g3_run), "--to", "hf", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_gemma3_hf_export_config(hf_export):
    files = {p.name for p in hf_export.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"} <= files
    assert {"generation_config.json", "README.md", "special_tokens_map.json"} <= files
    cfg = json.loads((hf_export / "config.json").read_text())
    assert cfg["model_type"] == "gemma3_text" and cfg["architectures"] == ["Gemma3ForCausalLM"]
    assert cfg["layer_types"] == ["sliding_attention"] * 5 + ["full_attention"]
    assert cfg["sliding_window"] == WINDOW  # same window semantics in both libraries: no off-by-one to correct
    assert cfg["rope_parameters"] == {
        "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
    }
    assert (cfg["final_logit_softcapping"], cfg["attn_logit_softcapping"]) == (None, None)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (4, 2, 8)
    assert cfg["query_pre_attn_scalar"] == 8 and cfg["intermediate_size"] == 16


@pytest.mark.slow
def test_gemma3_hf_export_matches_transformers_and_loads_back(hf_export, prompts, run_logits):
    transformers = pytest.importorskip("transformers")
    model = hf_model(hf_export)
    assert isinstance(model, transformers.Gemma3ForCausalLM)
    assert worst([hf_logits(model, p) for p in prompts], run_logits) <= TOL

    # KerasHub's own Hugging Face converter, from the local directory (no Hub), through the kit's loader
    back = load_causal_lm(str(hf_export), dtype="float32")
    assert type(back.backbone) is GEMMA3.classes().backbone
    assert worst([logits(back, p) for p in prompts], run_logits) <= TOL


@pytest.mark.slow
def test_parity_sees_the_window_boundary_and_each_gemma3_switch(hf_export, g3_lm, prompts, run_logits):
    """Both libraries let query i see keys i-W+1 .. i (W tokens, itself included); every config switch matters.

    A test on the window must be able to tell W from W +- 1: with a window of
    W-1 the first position that changes is W-1 (it loses key 0), with W+1 it
    is W (it gains key 0), and with a window longer than the prompt also W, on
    either side.
    """
    transformers = pytest.importorskip("transformers")
    long, ref = prompts[2], run_logits[2]

    def variant(**changes) -> np.ndarray:
        config = transformers.AutoConfig.from_pretrained(str(hf_export))
        for key, value in changes.items():
            setattr(config, key, value)
        return hf_logits(hf_model(hf_export, config), long)

    assert first_difference(variant(sliding_window=WINDOW - 1), ref) == WINDOW - 1
    assert first_difference(variant(sliding_window=WINDOW + 1), ref) == WINDOW
    # the kit's side on its own: the same weights with a window longer than the prompt first differ at W, too
    # (not `use_sliding_window_attention=False`: that also turns every layer's RoPE base to the global one)
    config = {**g3_lm.backbone.get_config(), "sliding_window_size": 1024}
    config = {k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")}
    unwindowed = GEMMA3.build_backbone(config, "float32")
    unwindowed.set_weights(load_causal_lm(str(hf_export), dtype="float32").backbone.get_weights())
    lm = GEMMA3.causal_lm(unwindowed, g3_lm.preprocessor.tokenizer, 64)
    assert first_difference(logits(lm, long), ref) == WINDOW

    # the global layer, the two RoPE bases and the query scaling each move the logits
    rope = copy.deepcopy(transformers.AutoConfig.from_pretrained(str(hf_export)).rope_parameters)
    rope["full_attention"]["rope_theta"], rope["sliding_attention"]["rope_theta"] = 10_000.0, 1_000_000.0
    for changes in (
        {"layer_types": ["sliding_attention"] * 6},
        {"rope_parameters": rope},
        {"query_pre_attn_scalar": 16},
    ):
        assert np.abs(variant(**changes) - ref).max() > 1e-3, changes


@pytest.mark.parametrize(
    ("changes", "matters"),
    [
        ({"global_rope_scaling_factor": 8.0}, True),  # gemma3_4b's linear scaling of the global layers
        ({"local_rope_scaling_factor": 2.0, "global_rope_scaling_factor": 4.0}, True),
        ({"use_sliding_window_attention": False}, True),  # every layer global (window and RoPE base)
        ({"final_logit_soft_cap": 0.5}, True),  # small, so that it bites on the micro model's logits
        # KerasHub 0.32's Gemma3DecoderBlock ignores the flag (always 1/sqrt(head_dim)); if a KerasHub
        # release honours it, this fails and `gemma3.hf_config_from`'s query_pre_attn_scalar must follow.
        ({"query_head_dim_normalize": False}, False),
    ],
)
def test_gemma3_config_switches_round_trip(g3_preset, tmp_path, changes, matters):
    """A Gemma 3 with each switch off its micro default: transformers and KerasHub's converter give its logits."""
    lm0 = load_causal_lm(str(g3_preset), dtype="float32")
    config = {k: v for k, v in lm0.backbone.get_config().items() if k not in ("name", "trainable", "dtype")}
    backbone = GEMMA3.build_backbone({**config, **changes}, "float32")
    backbone.set_weights(lm0.backbone.get_weights())
    lm = GEMMA3.causal_lm(backbone, lm0.preprocessor.tokenizer, 64)
    ids = [2, *range(5, 395, 10)]
    ref = logits(lm, ids)
    assert (np.abs(ref - logits(lm0, ids)).max() > 1e-3) == matters

    write_hf_checkpoint(lm, tmp_path)
    assert np.abs(hf_logits(hf_model(tmp_path), ids) - ref).max() <= TOL
    assert np.abs(logits(load_causal_lm(str(tmp_path), dtype="float32"), ids) - ref).max() <= TOL


def test_gemma3_hf_config_refuses_what_transformers_cannot_express():
    from kit.errors import UserError

    arch = GEMMA3.tiny_config(
        64, num_layers=6, num_query_heads=2, num_key_value_heads=1, hidden_dim=16, intermediate_dim=16, head_dim=8
    )
    assert GEMMA3.hf_config_from({**arch, "sliding_window_size": 8})["sliding_window"] == 8
    assert GEMMA3.hf_config_from({**arch, "query_head_dim_normalize": False})["query_pre_attn_scalar"] == 8
    with pytest.raises(UserError, match="transformers' Gemma 3 ignores"):
        GEMMA3.hf_config_from({**arch, "attention_logit_soft_cap": 50.0})
    for norm in ("use_query_key_norm", "use_post_attention_norm", "use_post_ffw_norm"):
        with pytest.raises(UserError, match=f"{norm} off"):
            GEMMA3.hf_config_from({**arch, norm: False})


def test_embedding_scale_rounds_like_transformers_in_bfloat16(tmp_path):
    """sqrt(24) is not a bfloat16: both libraries round it to 4.90625 before scaling the embedding rows."""
    import keras
    import torch
    import transformers

    from kit.model.tiny import train_tokenizer

    arch = GEMMA3.tiny_config(
        320, num_layers=1, num_query_heads=2, num_key_value_heads=1, hidden_dim=24, intermediate_dim=16, head_dim=12
    )
    backbone = GEMMA3.build_backbone(arch, "bfloat16")
    lm = GEMMA3.causal_lm(backbone, GEMMA3.tokenizer(train_tokenizer(["Хорошее место."] * 30, vocab_size=300)), 16)
    ids = np.asarray([[2, 5, 9, 40, 77, 300]], dtype=np.int32)
    # the scaled embeddings are what the first decoder block takes in
    embed = keras.Model(backbone.inputs, backbone.get_layer("decoder_block_0").input[0])
    ours = np.asarray(embed({"token_ids": ids, "padding_mask": np.ones_like(ids)})).astype(np.float32)

    write_hf_checkpoint(lm, tmp_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.bfloat16)
    with torch.no_grad():
        theirs = model.model.embed_tokens(torch.tensor(ids, dtype=torch.long)).float().numpy()
    assert np.array_equal(ours, theirs)
    rows = torch.tensor(np.asarray(backbone.get_layer("token_embedding").embeddings.numpy()[ids[0]], np.float32))
    unrounded = (rows * float(np.sqrt(24))).to(torch.bfloat16).float().numpy()
    assert np.abs(unrounded - ours).max() > 0  # the rounding of the scale shows on this input


@pytest.mark.slow
def test_gemma3_chat_template_stops_and_card(hf_export, g3_lm):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from kit.data.prompt import build_prompt
    from kit.model.card import user_message

    tok = transformers.AutoTokenizer.from_pretrained(str(hf_export))
    prompt = build_prompt(rubrics=["Кафе", "Кофейня"], rating=5, keywords=["кофе", "десерт"], name="Кофемания")
    chat = tok.apply_chat_template(
        [{"role": "user", "content": user_message(prompt)}], add_generation_prompt=True, tokenize=False
    )
    assert chat == "<bos>" + prompt  # the kit's prompt; <bos> is the token the kit's preprocessor adds
    kit_ids = [2, *np.asarray(g3_lm.preprocessor.tokenizer(prompt)).tolist()]
    assert tok(chat, add_special_tokens=False)["input_ids"] == kit_ids

    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    gen = transformers.GenerationConfig.from_pretrained(str(hf_export))
    assert list(gen.eos_token_id) == [1, end_of_turn] and end_of_turn != tok.unk_token_id
    model = hf_model(hf_export)
    for stop in (1, end_of_turn):  # pushed to that token, generation ends right after it
        out = model.generate(torch.tensor([kit_ids]), max_new_tokens=6, do_sample=False, sequence_bias={(stop,): 100.0})
        assert out[0, len(kit_ids) :].tolist() == [stop]

    card = (hf_export / "README.md").read_text()
    head, body = card.split("---")[1], card.split("---", 2)[2]
    assert "- gemma3" in head and "license: gemma" in head
    assert "# g3: Russian place reviews from Gemma 3" in body and "A Gemma 3 checkpoint (transformers)" in body
    assert "Gemma 2" not in card


@pytest.fixture(scope="module")
def base_hf(g3_run, g3_preset, tiny_prepared, tmp_path_factory) -> Path:
    """The kit's HF export of the micro Gemma 3 base (registered as a run with no adapter)."""
    base = train_micro_run(g3_run.parent.parent, g3_preset, tiny_prepared, "g3-base", **{"lora.enabled": "false"})
    out = tmp_path_factory.mktemp("g3-base") / "hf"
    export_run(base, "hf", out)
    return out


@pytest.mark.slow
def test_gemma3_peft_adapter_round_trip(g3_run, hf_export, base_hf, prompts, run_logits, tmp_path):
    """PeftModel(the kit's HF base export + the kit's adapter export) == the kit's merged HF export."""
    peft = pytest.importorskip("peft")
    adapter = tmp_path / "peft"
    assert (
        main(["export", "--run", str(g3_run), "--to", "peft", "--out", str(adapter), "--base-model", str(base_hf)]) == 0
    )
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    # 4 query heads x Keras rank 4: every module at rank 16 (smaller ones zero-padded)
    assert cfg["r"] == 16 and cfg["base_model_name_or_path"] == str(base_hf)
    assert cfg["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    base = hf_model(base_hf)
    base_out = [hf_logits(base, p) for p in prompts]
    with_adapter = peft.PeftModel.from_pretrained(base, str(adapter))
    adapted = [hf_logits(with_adapter, p) for p in prompts]
    merged = hf_model(hf_export)
    assert worst(adapted, base_out) > 1e-3  # the adapter matters ...
    assert worst(adapted, [hf_logits(merged, p) for p in prompts]) <= TOL  # ... and is converted exactly
    assert worst(adapted, run_logits) <= TOL
    card = (adapter / "README.md").read_text()
    assert "- gemma3" in card.split("---")[1] and "Gemma 3" in card
