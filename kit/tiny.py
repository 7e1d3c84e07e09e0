"""`kit tiny`: build and pretrain a tiny Gemma 2 base so the whole kit runs offline on a CPU.

1. A SentencePiece BPE tokenizer is trained in memory on the train reviews
   plus the prompts (so field labels, rubrics and addresses become whole
   pieces), with Gemma's special ids (pad 0, eos 1, bos 2, unk 3) and the
   `<start_of_turn>`/`<end_of_turn>` turn markers as single pieces.
2. A small `GemmaBackbone` with every Gemma 2 feature (query-head-dim
   normalisation, post-attention/post-FFW norms, logit soft caps, alternating
   sliding-window attention) is pretrained as a plain language model on the
   train review texts. Never on prompts, the instruction or the chat template,
   so following a request is exactly what LoRA fine-tuning has to teach, as
   with the real Gemma 2 2B. `documents="pages"` (`kit tiny --documents
   pages`) lays the same reviews out as web pages instead (`kit.data.pages`:
   organisation pages with star lines, topic words and quotes, review
   listings), the way Gemma 2 saw reviews: the base then reads a rating and
   uses the words given before a review, at ~2.5x the time. Small batches
   (`kit tiny --batch-size 4`, as `make demo` runs it) give ~8x the optimizer
   steps in about the same time; the base needs them to learn to copy a word.
3. It is saved with `save_to_preset`, so `GemmaCausalLM.from_preset(dir)` and
   every other stage load it like any KerasHub preset.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import keras_hub
import numpy as np

import kit  # noqa: F401
from kit.atomic import atomic_dir, write_json
from kit.batching import Encoder, plan_batches
from kit.data.pages import pretraining_documents
from kit.data.prompt import END_OF_TURN, START_OF_TURN
from kit.engine import Engine, LoopOptions
from kit.errors import UserError
from kit.model import parameter_counts
from kit.optim import make_optimizer

TINY_INFO = "tiny_base.json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TinySpec:
    """Size and pretraining budget of the tiny base (defaults: ~5 minutes on a 2-core CPU).

    Attributes:
        vocab_size: Upper bound for the BPE vocabulary (small corpora get fewer pieces).
        num_layers: Decoder blocks (even, so local and global attention alternate).
        hidden_dim: Model width.
        intermediate_dim: Feed-forward width (gated, so the FFW has 3 matrices).
        num_query_heads: Query heads.
        num_key_value_heads: Key/value heads (grouped-query attention like Gemma 2).
        head_dim: Per-head size.
        sliding_window_size: Local attention window of the even layers.
        buckets: Sequence lengths for pretraining batches.
        batch_size: Reviews per batch.
        epochs: Passes over the train reviews.
        max_steps: Hard cap on optimizer steps (0 = none).
        learning_rate: Peak AdamW learning rate.
        warmup_steps: Linear warm-up steps.
        seed: Initialisation and data-order seed.
        documents: `reviews` (each bare review text is a document) or `pages`
            (the web-page layout of `kit.data.pages`).
        listing_share: With `pages`, the share of documents that are review listings.
    """

    vocab_size: int = 4096
    num_layers: int = 4
    hidden_dim: int = 128
    intermediate_dim: int = 384
    num_query_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    sliding_window_size: int = 64
    buckets: tuple[int, ...] = (64, 128, 256)
    batch_size: int = 32
    epochs: float = 2.0
    max_steps: int = 0
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    seed: int = 0
    documents: str = "reviews"
    listing_share: float = 0.5


def train_tokenizer(texts: Sequence[str], *, vocab_size: int = 4096) -> bytes:
    """Train a Gemma-compatible SentencePiece BPE model in memory; returns the proto bytes.

    Settings mirror Gemma's tokenizer: no dummy prefix, whitespace kept, digits
    split, byte fallback (no unknown characters), newline as its own piece.

    Example:
        >>> proto = train_tokenizer(["Отличное место!", "Плохо."] * 50, vocab_size=300)
        >>> keras_hub.models.GemmaTokenizer(proto=proto).end_token_id
        1
    """
    import sentencepiece as spm

    texts = [t for t in texts if t]
    if not texts:
        raise UserError("No texts to train the tiny tokenizer on: the train split is empty.")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buf,
        model_type="bpe",  # unigram collapses on small, repetitive corpora
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=[START_OF_TURN, END_OF_TURN, "\n"],
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=True,
        max_sentence_length=16384,
        num_threads=2,
        minloglevel=2,
    )
    return buf.getvalue()


def build_tiny_lm(proto: bytes, spec: TinySpec = TinySpec()) -> keras_hub.models.GemmaCausalLM:
    """A randomly initialised Gemma 2 architecture `GemmaCausalLM` around `proto`.

    Example:
        >>> lm = build_tiny_lm(train_tokenizer(["Хорошо."] * 20, vocab_size=300),
        ...                    TinySpec(num_layers=2, hidden_dim=16, intermediate_dim=32, head_dim=8))
        >>> lm.backbone.use_post_ffw_norm
        True
    """
    keras.utils.set_random_seed(spec.seed)
    tokenizer = keras_hub.models.GemmaTokenizer(proto=proto)
    # Embedding rows rounded up to a multiple of 64 (as Gemma pads its 256k
    # vocabulary): the vocab axis is sharded under ModelParallel and must divide
    # evenly; the extra ids are never produced by the tokenizer.
    vocab = -(-tokenizer.vocabulary_size() // 64) * 64
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=vocab,
        num_layers=spec.num_layers,
        num_query_heads=spec.num_query_heads,
        num_key_value_heads=spec.num_key_value_heads,
        hidden_dim=spec.hidden_dim,
        intermediate_dim=spec.intermediate_dim,
        head_dim=spec.head_dim,
        query_head_dim_normalize=True,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        final_logit_soft_cap=30.0,
        attention_logit_soft_cap=50.0,
        use_sliding_window_attention=True,
        sliding_window_size=spec.sliding_window_size,
        dtype="float32",
    )
    preprocessor = keras_hub.models.GemmaCausalLMPreprocessor(tokenizer=tokenizer, sequence_length=spec.buckets[-1])
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=preprocessor)


def pretrain(
    lm: keras_hub.models.GemmaCausalLM,
    train_texts: Sequence[str],
    val_texts: Sequence[str] = (),
    spec: TinySpec = TinySpec(),
    *,
    progress: bool = True,
) -> dict:
    """Train every weight of `lm` as a plain LM on `train_texts`; returns loss figures.

    Example:
        >>> stats = pretrain(lm, ["Отлично!"] * 8, spec=TinySpec(max_steps=2))  # doctest: +SKIP
    """
    encoder = Encoder(lm.preprocessor.tokenizer.proto)
    train = [encoder.encode_text(t) for t in train_texts if t]
    val = [encoder.encode_text(t) for t in val_texts if t]
    per_epoch = len(plan_batches(train, spec.buckets, spec.batch_size, seed=spec.seed))
    steps = max(1, int(round(per_epoch * spec.epochs)))
    if spec.max_steps:
        steps = min(steps, spec.max_steps)
    lm.backbone.trainable = True
    optimizer = make_optimizer(learning_rate=spec.learning_rate, warmup_steps=min(spec.warmup_steps, steps // 4),
                               total_steps=steps, decay="cosine", min_ratio=0.05, weight_decay=0.01, clip_norm=1.0)
    engine = Engine(lm, optimizer, pad_id=encoder.pad_id)
    options = LoopOptions(total_steps=steps, batch_size=spec.batch_size, buckets=spec.buckets, seed=spec.seed,
                          progress=progress, desc="tiny pretrain", log_every=max(steps // 20, 1))
    start = time.perf_counter()
    state, _ = engine.run(train, val, options)
    seconds = time.perf_counter() - start
    history = state.history
    return {
        "steps": steps,
        "epochs": spec.epochs,
        "train_tokens": int(sum(len(e.ids) - 1 for e in train)),
        "first_train_loss": next((r["train_loss"] for r in history if "train_loss" in r), None),
        "final_train_loss": next((r["train_loss"] for r in reversed(history) if "train_loss" in r), None),
        "initial_val_loss": history[0].get("val_loss") if history else None,
        "final_val_loss": next((r["val_loss"] for r in reversed(history) if "val_loss" in r), None),
        "train_seconds": round(seconds, 1),
    }


def pretraining_texts(split, spec: TinySpec = TinySpec()) -> list[str]:
    """The pretraining documents of one prepared split, as `spec.documents` says.

    Example:
        >>> rows = {"org_id": ["a"], "name_ru": ["Кафе Ромашка"], "address": [""], "rubrics": [["Кафе"]],
        ...         "rating": [5], "text": ["Вкусно."]}
        >>> pretraining_texts(rows)
        ['Вкусно.']
        >>> pretraining_texts(rows, TinySpec(documents="pages", listing_share=0.0))
        ['Кафе Ромашка\\nКафе\\n\\nОценка 5 из 5\\nВкусно.']
    """
    if spec.documents == "reviews":
        return list(split["text"])
    if spec.documents != "pages":
        raise UserError(f"TinySpec.documents must be 'pages' or 'reviews'. Received: {spec.documents!r}")
    columns = ("org_id", "name_ru", "address", "rubrics", "rating", "text", "keywords")
    present = split.column_names if hasattr(split, "column_names") else list(split)
    rows = {c: list(split[c]) for c in columns if c in present}
    return pretraining_documents(rows, listing_share=spec.listing_share, seed=spec.seed)


def make_tiny_base(data_dir: str | Path, out: str | Path, spec: TinySpec = TinySpec(), *, progress: bool = True) -> dict:
    """The `kit tiny` stage: prepared dataset -> tokenizer -> pretrained tiny Gemma 2 preset at `out`.

    Args:
        data_dir: A prepared dataset dir (`kit data prepare --out`).
        out: Preset directory to write (replaced atomically), e.g. `models/tiny-base`.
        spec: Size and budget.
        progress: Show a progress bar.

    Returns:
        The info dict also saved as `<out>/tiny_base.json`.

    Example:
        >>> make_tiny_base("data/prepared", "models/tiny-base")  # doctest: +SKIP
    """
    from kit.data.prepare import load_prepared

    start = time.perf_counter()
    dd = load_prepared(data_dir)
    train_texts = list(dd["train"]["text"])
    # Prompts only shape the vocabulary; the model never trains on them.
    proto = train_tokenizer(train_texts + list(dd["train"]["prompt"]), vocab_size=spec.vocab_size)
    lm = build_tiny_lm(proto, spec)
    train_docs = pretraining_texts(dd["train"], spec)
    val_docs = pretraining_texts(dd["validation"], spec) if "validation" in dd else []
    stats = pretrain(lm, train_docs, val_docs, spec, progress=progress)
    stats["documents"] = {"kind": spec.documents, "train": len(train_docs), "validation": len(val_docs)}
    counts = parameter_counts(lm)
    info = {
        "kind": "kit tiny base (synthetic-data pretraining, for offline demos and tests)",
        "data_dir": str(data_dir),
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec).items()},
        "vocabulary_size": lm.backbone.vocabulary_size,
        "parameters": counts["total"],
        "pretraining": stats,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    with atomic_dir(out) as tmp:
        lm.save_to_preset(str(tmp))
        write_json(Path(tmp) / TINY_INFO, info)
    return info


def tokens_per_text(proto: bytes, texts: Sequence[str]) -> float:
    """Mean tokens per text (a quick tokenizer quality figure).

    Example:
        >>> p = train_tokenizer(["Отличное место!"] * 50, vocab_size=300)
        >>> tokens_per_text(p, ["Отличное место!"]) < 5
        True
    """
    encoder = Encoder(proto)
    return float(np.mean([len(encoder.sp.encode(t)) for t in texts]))
