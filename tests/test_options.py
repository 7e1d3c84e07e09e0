"""Absurd values are refused with exit 2 and one line naming the value and the allowed range, before a model loads."""

from __future__ import annotations

import pytest

from kit.cli import main
from kit.errors import UserError

# A model that cannot load: when the refusal names the value, it came before any loading.
NO_MODEL = "no/such/model-dir"
REQUEST = ["--rubrics", "Кафе", "--rating", "5"]


def refused(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert "no/such/model-dir" not in err  # the value was refused, not the model
    return err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["generate", "--model", NO_MODEL, *REQUEST, "--max-new-tokens", "1000000000"], "from 1 to 4095"),
        (["generate", "--model", NO_MODEL, *REQUEST, "--max-new-tokens", "0"], "from 1 to 4095, received '0'"),
        (["generate", "--model", NO_MODEL, *REQUEST, "--n", "0"], "--n: expected a positive integer, received '0'"),
        (["generate", "--model", NO_MODEL, *REQUEST, "--n", "-2"], "--n: expected a positive integer"),
        (["generate", "--model", NO_MODEL, *REQUEST, "--batch-size", "0"], "--batch-size: expected a positive"),
        (["evaluate", "--models", NO_MODEL, "--out", "r", "--limit", "0"], "--limit: expected a positive integer"),
        (["evaluate", "--models", NO_MODEL, "--out", "r", "--limit", "-5"], "--limit: expected a positive integer"),
        (["evaluate", "--models", NO_MODEL, "--out", "r", "--batch-size", "0"], "--batch-size: expected a positive"),
        (["evaluate", "--models", NO_MODEL, "--out", "r", "--max-new-tokens", "99999"], "from 1 to 4095"),
        (["tiny", "--out", "t", "--batch-size", "0"], "--batch-size: expected a positive integer"),
        (["data", "prepare", "--input", "x.tskv", "--out", "o", "--max-rows", "0"], "--max-rows: expected a positive"),
        (["data", "synth", "--out", "x.tskv", "--rows", "0"], "--rows: expected a positive integer"),
    ],
)
def test_counts_and_lengths_out_of_range_are_refused_while_parsing(argv, needle, capsys):
    assert needle in refused(argv, capsys)


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["data.buckets=[128, 16384]"], "data.buckets must be lengths within the model's 8192-token context"),
        (["train.patience=2", "train.eval_every=0"], "train.eval_every must be ≥ 1 when train.patience is 2"),
        (["train.batch_size=0"], "train.batch_size must be ≥ 1, received 0"),
    ],
)
def test_a_set_that_makes_the_config_inconsistent_is_refused_before_loading(sets, needle, capsys):
    argv = ["finetune", "--config", "configs/tiny.toml", "--set", f"model.preset={NO_MODEL}"]
    for s in sets:
        argv += ["--set", s]
    assert needle in refused(argv, capsys)


def test_max_new_tokens_beyond_the_context_after_the_prompt_is_refused_before_generating(tiny_preset):
    from kit.generate import Generator, Request
    from kit.model.loader import load_causal_lm

    gen = Generator(load_causal_lm(str(tiny_preset), dtype="float32"), batch_size=2)
    request = Request.create(rubrics="Кафе", rating=5, keywords="кофе")
    prompt_tokens = 1 + len(gen.encoder.sp.encode(request.prompt()))
    room = 4096 - prompt_tokens
    gen.lm.generate_function = None

    def no_generation(*args, **kwargs):
        raise AssertionError("refused only after generating")

    gen._run = no_generation
    with pytest.raises(UserError) as err:
        gen.generate([request], max_new_tokens=room + 1)
    assert str(err.value) == (
        f"--max-new-tokens {room + 1} does not fit: the longest prompt takes {prompt_tokens} of the "
        f"kit's 4096-token generation limit (prompt + review), so the allowed range is 1 to {room}."
    )
    with pytest.raises(AssertionError, match="only after generating"):  # the largest that fits goes through
        gen.generate([request], max_new_tokens=room)


def test_library_options_refuse_the_same_values():
    from kit.eval import EvalOptions
    from kit.generate import GenerateOptions

    with pytest.raises(UserError, match="max_new_tokens must be between 1 and 4095, received 1000000000"):
        GenerateOptions(max_new_tokens=10**9)
    with pytest.raises(UserError, match="n must be ≥ 1, received 0"):
        GenerateOptions(n=0)
    with pytest.raises(UserError, match="--max-new-tokens must be between 1 and 4095, received 5000"):
        EvalOptions(max_new_tokens=5000)
    with pytest.raises(UserError, match="--limit must be ≥ 1, received 0"):
        EvalOptions(limit=0)


def test_sampler_and_tiny_options_are_checked_by_their_metadata():
    from kit.generate import SamplerSpec
    from kit.model.tiny import TinySpec

    with pytest.raises(UserError, match=r"^--top-p must be > 0 and ≤ 1, received 1\.5\.$"):
        SamplerSpec(name="top_p", p=1.5)
    with pytest.raises(UserError, match="--temperature must be > 0, received nan"):  # NaN is no temperature
        SamplerSpec(temperature=float("nan"))
    with pytest.raises(UserError, match="--alpha must be between 0 and 1, received -0.1"):
        SamplerSpec(alpha=-0.1)
    # The rule between two fields stays explicit: k = 0 is "no cap" for top_p, but top_k needs a k.
    assert SamplerSpec(name="top_p", k=0).k == 0
    with pytest.raises(UserError, match="--top-k must be ≥ 1 for the top_k sampler, received 0"):
        SamplerSpec(name="top_k", k=0)
    with pytest.raises(UserError, match=r"--documents must be one of reviews, pages, pages\+cards, received 'prompts'"):
        TinySpec(documents="prompts")
    with pytest.raises(UserError, match="--batch-size must be ≥ 1, received 0"):
        TinySpec(batch_size=0)
