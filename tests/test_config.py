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


# The checks are derived from each key's option(...) metadata: one case per kind of refusal,
# each naming the key as a config or --set writes it, the value received and what is allowed.
@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.batch_size=0", "Config key train.batch_size must be ≥ 1, received 0."),  # below minimum
        ("train.learning_rate=0", "Config key train.learning_rate must be > 0, received 0.0."),  # not above
        ("data.auto_buckets=33", "Config key data.auto_buckets must be between 0 and 32, received 33."),  # above
        ("train.min_lr_ratio=1.5", "Config key train.min_lr_ratio must be between 0 and 1, received 1.5."),
        ("train.decay=step", "Config key train.decay must be one of cosine, linear, constant, received 'step'."),
        ('lora.rank="4"', "Config key lora.rank must be int, received '4'."),  # wrong type
        ("lora.rank=4.5", "Config key lora.rank must be int, received 4.5."),
        ("train.batch_size=true", "Config key train.batch_size must be int, received True."),
        ("lora.alpha=true", "Config key lora.alpha must be float, received True."),
        ("data.buckets=[64, 1.5]", "Config key data.buckets must be list of int, received [64, 1.5]."),
        ("run.name=a/b", "Config key run.name must be a non-empty name without '/', received 'a/b'."),  # a rule
        ("data.buckets=[]", "Config key data.buckets must be a non-empty increasing list of lengths > 1, received []."),
    ],
)
def test_derived_checks_refuse_each_kind_of_bad_value_naming_the_key(item, message):
    with pytest.raises(UserError) as err:
        load_config(None, [item])
    assert str(err.value) == message


def test_a_section_built_in_python_is_checked_like_a_file():
    from kit.config import TrainConfig

    with pytest.raises(UserError, match=r"Config key train\.grad_accum must be ≥ 1, received 0\."):
        Config(train=TrainConfig(grad_accum=0))
    with pytest.raises(UserError, match=r"Config key train\.steps must be int, received '5'\."):
        Config(train=TrainConfig(steps="5"))


def test_every_config_key_is_an_option_with_help():
    import dataclasses

    from kit.options import is_option

    for section in dataclasses.fields(Config):
        for field in dataclasses.fields(section.default_factory):
            assert is_option(field), f"{section.name}.{field.name} is not declared with option(...)"
            assert len(field.metadata["help"]) > 10, f"{section.name}.{field.name} has no help"


def test_every_default_passes_its_own_checks():
    # Config() runs every check; a default outside its own range would fail here, not in a user's run.
    assert Config() == from_dict({})


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["train.epochs=0"], "Config key train.epochs must be > 0 when train.steps is 0, received 0.0."),
        (["distribution.mode=model"], "Config key distribution.mesh must be set for mode 'model'"),
        (["train.unlikelihood_context=3"], "train.unlikelihood must be > 0 when train.unlikelihood_context is 3"),
    ],
)
def test_rules_between_keys_name_the_key_and_the_other_value(sets, message):
    with pytest.raises(UserError) as err:
        load_config(None, sets)
    assert message in str(err.value)
    assert load_config(None, ["train.epochs=0", "train.steps=5"]).train.steps == 5  # steps given: epochs unused
