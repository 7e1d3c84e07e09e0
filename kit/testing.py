"""Test doubles, written once: micro Gemma 2 models, a tiny prepared dataset and seconds-long micro runs.

The tests (`tests/conftest.py` builds its fixtures from these), the
notebooks' smoke mode (`kit.notebook.smoke`) and the benchmarks' `--size tiny`
runs all use the models and data here. Everything builds in seconds on a CPU
and says that code runs, not how good a model is. The stage modules are
imported inside the functions, so importing this module loads no training
code; nothing in the kit imports it except `kit.notebook.smoke`
(tests/test_layering.py checks that).

Example:
    >>> MICRO.hidden_dim, MICRO.num_query_heads
    (16, 4)
"""

from __future__ import annotations

import random
from pathlib import Path

from kit.data.prompt import build_prompt, build_target
from kit.families import gemma2
from kit.model.tiny import TINY_FAMILY, TinySpec

# The fine-tune config that `micro_overrides` shrinks to a seconds-long run.
TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.toml"

# The tests' micro Gemma 2 (random weights, a few thousand parameters). 4 query
# and 4 key/value heads and an even hidden size, so the same model shards on a
# batch:2,model:4 mesh (sharded dims must divide evenly).
MICRO = TinySpec(
    vocab_size=400,
    num_layers=2,
    hidden_dim=16,
    intermediate_dim=32,
    num_query_heads=4,
    num_key_value_heads=4,
    head_dim=4,
    sliding_window_size=8,
    buckets=(32, 64),
    batch_size=8,
)
# MICRO's parameters less the embeddings (vocabulary * 16; the vocabulary comes from the tokenizer), pinned
# for the tests: per layer q/k/v 3*256 + output 256 + FFW 3*16*16 (GemmaDecoderBlock halves intermediate_dim:
# 32 -> 16) + 4 norms*16 = 1,856; 2 layers + final norm 16 = 3,728.
MICRO_NON_EMBEDDING = 3_728

# Smoke mode's tiny base (`kit.notebook.smoke.ensure_tiny_base`): pretrained for
# a handful of steps in one bucket (one compilation), ~10-20 s on 2 CPU cores.
SMOKE_TINY = TinySpec(
    vocab_size=1024,
    num_layers=2,
    hidden_dim=64,
    intermediate_dim=128,
    num_query_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    sliding_window_size=32,
    buckets=(128,),
    batch_size=16,
    max_steps=5,
    warmup_steps=1,
)

# The benchmarks' `--size tiny` Gemma 2 (`keras_hub.models.GemmaBackbone` arguments,
# no tokenizer): the 2B code path at a size that compiles in seconds.
MICRO_BACKBONE = gemma2.tiny_config(
    512,
    num_layers=2,
    num_query_heads=4,
    num_key_value_heads=2,
    hidden_dim=32,
    intermediate_dim=64,
    head_dim=8,
    sliding_window_size=16,
)

# --------------------------------------------------------------------------- a tiny prepared dataset
# Templated Russian reviews whose tone follows the rating and which mention the
# keywords, so a model trained on them has something learnable. Tests rely only
# on the column contract of `kit data prepare`.

RUBRICS = ["Кафе", "Ресторан", "Гостиница", "Супермаркет", "Музей", "Парикмахерская", "Аптека"]
NAMES = ["Кофемания", "Пятёрочка", "Вкусно и точка", "Азимут", "Эрмитаж", "Магнит", "Шоколадница"]
STREETS = ["Тверская улица", "Невский проспект", "улица Ленина", "проспект Мира", "Садовая улица"]
CITIES = ["Москва", "Санкт-Петербург", "Казань", "Екатеринбург", "Новосибирск"]
KEYWORDS = [
    "персонал",
    "цены",
    "кофе",
    "обслуживание",
    "чистота",
    "очередь",
    "завтрак",
    "номер",
    "выбор",
    "атмосфера",
    "десерт",
    "парковка",
    "экскурсия",
    "мастер",
    "интерьер",
]
OPENERS = {
    5: ["Отличное место!", "Очень понравилось.", "Всё супер, рекомендую.", "Прекрасное заведение."],
    4: ["Хорошее место.", "В целом понравилось.", "Неплохо, но есть нюансы."],
    3: ["Обычное место.", "Так себе, средне.", "Ничего особенного."],
    2: ["Не понравилось.", "Ожидали большего.", "Слабо."],
    1: ["Ужасное место!", "Никому не советую.", "Очень плохо, больше не придём."],
}
PRAISE = {5: "отличный", 4: "хороший", 3: "обычный", 2: "плохой", 1: "ужасный"}


def _review(rng: random.Random, rating: int, keywords: list[str]) -> str:
    parts = [rng.choice(OPENERS[rating])]
    for kw in keywords:
        parts.append(f"{kw.capitalize()} {PRAISE[rating]}.")
    if rng.random() < 0.3:
        parts.append("\nПридём ещё." if rating >= 4 else "\nБольше не придём.")
    return " ".join(parts)


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """`n` rows with the prepared columns (`org_id`, ..., `prompt`, `target`).

    Example:
        >>> make_rows(1)[0]["target"].endswith("<end_of_turn>")
        True
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rating = rng.choices([5, 4, 3, 2, 1], weights=[50, 15, 10, 10, 15])[0]
        rubrics = rng.sample(RUBRICS, rng.choice([1, 1, 2]))
        keywords = rng.sample(KEYWORDS, rng.choice([0, 1, 2, 3]))
        name = rng.choice(NAMES) if rng.random() < 0.9 else None
        address = f"{rng.choice(CITIES)}, {rng.choice(STREETS)}, {rng.randint(1, 99)}"
        text = _review(rng, rating, keywords)
        rows.append(
            {
                "org_id": f"org{i % max(n // 3, 1)}",
                "address": address,
                "name_ru": name,
                "rating": rating,
                "rubrics": rubrics,
                "text": text,
                "keywords": keywords,
                "prompt": build_prompt(rubrics=rubrics, rating=rating, keywords=keywords, name=name, address=address),
                "target": build_target(text),
            }
        )
    return rows


def make_prepared(path: str | Path, *, train: int = 48, validation: int = 16, test: int = 16, seed: int = 0):
    """Write a `datasets.DatasetDict` with the prepared columns to `path` and return it.

    Example:
        >>> import tempfile
        >>> dd = make_prepared(tempfile.mkdtemp() + "/p", train=4, validation=2, test=2)
        >>> dd["train"].num_rows
        4
    """
    import datasets

    rows = make_rows(train + validation + test, seed)
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows[:train]),
            "validation": datasets.Dataset.from_list(rows[train : train + validation]),
            "test": datasets.Dataset.from_list(rows[train + validation :]),
        }
    )
    dd.save_to_disk(str(path))
    return dd


# --------------------------------------------------------------------------- micro models and runs


def micro_lm(prepared: str | Path, spec: TinySpec = MICRO, *, family: str = TINY_FAMILY):
    """A random-weight micro causal LM of `family` with a tokenizer trained on `prepared`'s texts.

    Example:
        >>> import tempfile
        >>> data = tempfile.mkdtemp() + "/p"
        >>> _ = make_prepared(data, train=8, validation=2, test=2)
        >>> micro_lm(data).backbone.hidden_dim
        16
    """
    import datasets

    from kit.model.tiny import build_tiny_lm, train_tokenizer

    dd = datasets.load_from_disk(str(prepared))
    proto = train_tokenizer(list(dd["train"]["text"]) + list(dd["train"]["prompt"]), vocab_size=spec.vocab_size)
    return build_tiny_lm(proto, spec, family=family)


def save_micro_preset(
    path: str | Path, prepared: str | Path, *, family: str = TINY_FAMILY, spec: TinySpec = MICRO
) -> Path:
    """`micro_lm(prepared)` saved as a KerasHub preset dir at `path` (what `--set model.preset=` takes).

    Example:
        >>> save_micro_preset("models/micro", "data/prepared")  # doctest: +SKIP
        PosixPath('models/micro')
    """
    micro_lm(prepared, spec, family=family).save_to_preset(str(path))
    return Path(path)


def micro_overrides(out_dir: str | Path, preset: str | Path, data: str | Path, name: str = "micro", **extra) -> list:
    """`--set` overrides that turn configs/tiny.toml into a seconds-long run of the micro model.

    The run goes to `out_dir/runs/<name>`; `extra` (dotted keys, e.g.
    `**{"lora.enabled": "false"}`) adds or replaces overrides.

    Example:
        >>> micro_overrides("tmp", "models/micro", "data/prepared")[:2]
        ['run.name=micro', 'run.out_dir=tmp/runs']
    """
    values = {
        "run.name": name,
        "run.out_dir": str(Path(out_dir) / "runs"),
        "model.preset": str(preset),
        "data.dir": str(data),
        "data.buckets": "[64, 128]",
        "data.auto_buckets": 0,
        "data.rating_power": 1.0,
        "lora.rank": 4,
        "lora.targets": "all",
        "train.batch_size": 8,
        "train.grad_accum": 2,
        "train.steps": 8,
        "train.learning_rate": 1e-2,
        "train.warmup_steps": 2,
        "train.eval_every": 4,
        "train.checkpoint_every": 3,
        "train.keep_last": 2,
        "train.log_every": 1,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def train_micro_run(out_dir: str | Path, preset: str | Path, data: str | Path, name: str = "micro", **extra) -> Path:
    """Fine-tune the micro model on `data` (8 steps, a few seconds) and return its run dir, `out_dir/runs/<name>`.

    `extra` are `micro_overrides`' extra overrides, e.g. `**{"lora.enabled":
    "false"}` registers the base model as a run without training an adapter.

    Example:
        >>> train_micro_run(tmp, "models/micro", "data/prepared")  # doctest: +SKIP
        PosixPath('tmp/runs/micro')
    """
    from kit.config import load_config
    from kit.train import finetune

    finetune(load_config(TINY_CONFIG, micro_overrides(out_dir, preset, data, name=name, **extra)), progress=False)
    return Path(out_dir) / "runs" / name


def adapter_arrays(lm) -> list:
    """The LoRA kernels of `lm` as numpy arrays, in variable order (for comparisons).

    Example:
        >>> adapter_arrays(load_run("runs/micro"))[0].shape  # doctest: +SKIP
        (16, 4)
    """
    import numpy as np

    return [np.asarray(v.numpy()) for v in lm.backbone.weights if "lora_kernel" in v.path]
