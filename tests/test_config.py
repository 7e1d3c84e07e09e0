"""Config loading: defaults, TOML, --set overrides, unknown keys and wrong types."""

from pathlib import Path

import pytest

from kit.config import Config, from_dict, load_config
from kit.errors import UserError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_defaults_are_valid_and_serialisable():
    cfg = Config()
    d = cfg.to_dict()
    assert d["data"]["buckets"] == [128, 256, 512]
    assert from_dict(d) == cfg  # the saved dict loads back to the same config


@pytest.mark.parametrize("name", ["tiny.toml", "tiny_base.toml", "gemma2_2b_gpu.toml", "gemma2_2b_tpu.toml"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.run.name


def test_tiny_base_config_registers_a_base_model():
    assert not load_config(CONFIGS / "tiny_base.toml").lora_active
    assert load_config(CONFIGS / "tiny.toml").lora_active
    assert not load_config(None, ["lora.rank=0"]).lora_active


def test_toml_file_and_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[lora]\nrank = 4\n[train]\nlearning_rate = 1\n[data]\nbuckets = [64, 128]\n")
    cfg = load_config(
        f,
        [
            "lora.rank=16",
            "run.name=my-run",
            "train.weight_decay=0",
            'model.preset="hf://x/y"',
            "data.buckets=[32, 64]",
            "lora.enabled=false",
        ],
    )
    assert cfg.lora.rank == 16
    assert cfg.run.name == "my-run"  # bare strings need no quotes
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.weight_decay == 0.0
    assert cfg.model.preset == "hf://x/y"
    assert cfg.data.buckets == (32, 64)
    assert cfg.lora.enabled is False


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"lora": {"rnak": 4}}, "lora.rnak"),
        ({"loraa": {"rank": 4}}, "loraa"),
        ({"lora": {"rank": "4"}}, "lora.rank"),
        ({"lora": {"rank": 4.5}}, "lora.rank"),
        ({"lora": {"enabled": 1}}, "lora.enabled"),
        ({"train": {"batch_size": True}}, "train.batch_size"),
        ({"data": {"buckets": 128}}, "data.buckets"),
        ({"data": {"buckets": [256, 128]}}, "data.buckets"),
        ({"lora": {"targets": "qkv"}}, "lora.targets"),
        ({"train": {"decay": "step"}}, "train.decay"),
        ({"model": {"dtype": "int8"}}, "model.dtype"),
        ({"distribution": {"mode": "model"}}, "distribution.mesh"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"lora": 3}, "lora"),
        ({"train": {"max_minutes": -5}}, "train.max_minutes"),
    ],
)
def test_bad_values_name_the_key(raw, needle):
    with pytest.raises(UserError, match=needle.replace(".", r"\.")):
        from_dict(raw)


@pytest.mark.parametrize("item", ["lora.rank", "rank=4", "a.b.c=1", ".x=1"])
def test_bad_set_syntax(item):
    with pytest.raises(UserError, match="--set"):
        load_config(None, [item])


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[lora\nrank=")
    with pytest.raises(UserError, match="invalid TOML"):
        load_config(bad)


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.lora.rank = 3  # type: ignore[misc]


@pytest.mark.parametrize("value", [-1, 33])
def test_auto_buckets_range(value):
    with pytest.raises(UserError, match="data.auto_buckets"):
        load_config(None, [f"data.auto_buckets={value}"])
