"""The model card (`README.md`) of a Hugging Face or PEFT export, and Gemma's chat template.

The card's YAML header is what the Hub indexes: base model, licence `gemma`
(the Gemma terms bind every derivative), language, dataset, library. Its
body says what the model does, the exact prompt format it was trained on
(`kit.data.prompt`), how to load it, and the headline of an evaluation
report when one is given. `huggingface_hub.ModelCard` writes it when that
package is installed (it is with keras-hub); otherwise the same text is
written directly.
"""

from __future__ import annotations

from pathlib import Path

from kit.data.prompt import END_OF_TURN, START_OF_TURN, build_prompt
from kit.errors import UserError
from kit.families import common, family_of_preset

GEMMA_CHAT_TEMPLATE = common.GEMMA_CHAT_TEMPLATE  # the kit's prompt as user/model turns
REAL_DATASET = "d0rj/geo-reviews-dataset-2023"
DATASET_URL = "https://github.com/yandex/geo-reviews-dataset-2023"


def user_message(prompt: str) -> str:
    """The user turn's content of a kit prompt: what a chat client sends as the user message.

    Example:
        >>> user_message(build_prompt(rubrics=["Кафе"], rating=5)).splitlines()
        ['Напиши отзыв о месте.', 'Рубрики: Кафе', 'Оценка: 5 из 5']
    """
    head = f"{START_OF_TURN}user\n"
    body = prompt.removeprefix(head)
    return body.split(END_OF_TURN, 1)[0]


def card_text(
    *,
    kind: str,
    name: str,
    base_model: str | None,
    preset: str,
    synthetic: bool,
    lora: dict | None,
    evaluation: str | None = None,
) -> tuple[dict, str]:
    """`(metadata, markdown body)` of the model card.

    Args:
        kind: `hf` (a merged transformers checkpoint) or `peft` (an adapter).
        name: The run's name.
        base_model: The HF repo of the base model, or None for a local base.
        preset: The KerasHub preset the run trained from.
        synthetic: Whether it trained on the bundled SYNTHETIC sample.
        lora: `{"rank", "alpha", "targets"}` of the adapter, None for a base model.
        evaluation: Markdown headline of an evaluation report (`kit evaluate`), if any.

    Example:
        >>> meta, body = card_text(kind="hf", name="x", base_model="google/gemma-2-2b", preset="gemma2_2b_en",
        ...                        synthetic=False, lora=None)
        >>> meta["license"], meta["base_model"], meta["datasets"]
        ('gemma', 'google/gemma-2-2b', ['d0rj/geo-reviews-dataset-2023'])
    """
    try:
        family = family_of_preset(preset)
        title, tag = family.TITLE, family.NAME
    except UserError:  # a base whose family cannot be told from its name or dir
        title, tag = "Gemma", "gemma"
    meta = {
        "license": "gemma",
        "language": ["ru"],
        "library_name": "peft" if kind == "peft" else "transformers",
        "pipeline_tag": "text-generation",
        "tags": [tag, "lora", "reviews", "geo-reviews-kit"] + (["synthetic-data"] if synthetic else []),
    }
    if base_model:
        meta["base_model"] = base_model
    if not synthetic:
        meta["datasets"] = [REAL_DATASET]
    example = build_prompt(rubrics=["Кафе", "Кофейня"], rating=5, keywords=["кофе", "десерт"], name="Кофемания")
    # Capitalised by hand below: str.capitalize() would lower the family's title ("a gemma 3 checkpoint").
    what = "a LoRA adapter (PEFT)" if kind == "peft" else f"a {title} checkpoint (transformers)"
    tuned = (
        f"LoRA rank {lora['rank']}, alpha {lora['alpha']:g}, targets `{lora['targets']}`"
        + (", merged into the weights" if kind == "hf" else "")
        if lora
        else "no adapter (the base model itself)"
    )
    data = (
        "the kit's bundled **SYNTHETIC** sample (generated reviews, not Yandex data): this model shows that "
        "the pipeline runs, not how good a review writer it is"
        if synthetic
        else f"Yandex's geo-reviews-dataset-2023 ([GitHub]({DATASET_URL}), [Hub](https://huggingface.co/datasets/{REAL_DATASET}), MIT)"
    )
    base = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else f"`{preset}` (a local base)"
    load = (
        "```python\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'base = AutoModelForCausalLM.from_pretrained("{base_model or "BASE_DIR"}")\n'
        'model = PeftModel.from_pretrained(base, "THIS_DIR")\n'
        f'tok = AutoTokenizer.from_pretrained("{base_model or "BASE_DIR"}")\n```'
        if kind == "peft"
        else "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'model = AutoModelForCausalLM.from_pretrained("THIS_DIR")\ntok = AutoTokenizer.from_pretrained("THIS_DIR")\n'
        'ids = tok.apply_chat_template([{"role": "user", "content": REQUEST}], add_generation_prompt=True, '
        'return_tensors="pt")\nout = model.generate(ids, max_new_tokens=192, do_sample=True, top_k=5)\n```'
    )
    body = [
        f"# {name}: Russian place reviews from {title}",
        "",
        f"{what[0].upper()}{what[1:]} fine-tuned with the geo-reviews kit (KerasHub, JAX) to write a Russian review "
        "of a place from a request: rubric(s), a rating from 1 to 5, keywords and optionally a name and an address.",
        "",
        f"- Base model: {base}",
        f"- Fine-tuning: {tuned}",
        f"- Data: {data}",
        "- Licence: the [Gemma terms of use](https://ai.google.dev/gemma/terms)",
        "",
        "## Prompt format",
        "",
        "Gemma's chat turns with Russian field labels; optional lines (keywords, name, address) are left out "
        "when empty. The tokenizer's chat template builds it from a user message holding the lines below. "
        "Generation stops at `<end_of_turn>` or `<eos>` (`generation_config.json`).",
        "",
        "```",
        f"<bos>{example}",
        "```",
        "",
        "## Use",
        "",
        load,
    ]
    if evaluation:
        body += ["", "## Evaluation", "", evaluation.strip()]
    return meta, "\n".join(body) + "\n"


def write_card(out: str | Path, meta: dict, body: str) -> Path:
    """Write `README.md` with a YAML header into `out` (via `huggingface_hub.ModelCard` when installed)."""
    path = Path(out) / "README.md"
    try:
        from huggingface_hub import ModelCard, ModelCardData

        ModelCard(f"---\n{ModelCardData(**meta).to_yaml()}\n---\n\n{body}").save(str(path))
    except ImportError:
        path.write_text(f"---\n{_yaml(meta)}---\n\n{body}", encoding="utf-8")
    return path


def _yaml(meta: dict) -> str:
    lines = []
    for key, value in meta.items():
        if isinstance(value, list):
            lines += [f"{key}:"] + [f"- {v}" for v in value]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"
