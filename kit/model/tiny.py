"""The tiny Gemma 2 base: its tokenizer and architecture, so the whole kit runs offline on a CPU.

`kit tiny` builds it here and pretrains it in `kit.train.pretrain`:

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
   uses the words given before a review, at ~2.5x the time.
   `documents="pages+cards"` adds a card per review (place header, star
   line, topic words, the review, with no quotes to copy from), so the base
   learns to write about the words it is given; the committed base is made
   so (`make tiny`). Small batches (`kit tiny --batch-size 4`) give ~8x the
   optimizer steps in about the same time; the base needs them to learn to
   use a word.
3. It is saved with `save_to_preset`, so `GemmaCausalLM.from_preset(dir)` and
   every other stage load it like any KerasHub preset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

import kit  # noqa: F401
from kit.atomic import MARKER, OutputKind
from kit.data.batching import Encoder
from kit.data.prompt import END_OF_TURN, START_OF_TURN
from kit.errors import UserError
from kit.families import family_named
from kit.options import check_options, option

TINY_INFO = "tiny_base.json"
# The committed tiny base is a Gemma 2 (soft caps, alternating sliding window), like the 2B it stands in for.
TINY_FAMILY = "gemma2"
# `kit tiny`'s preset dir; one from before the kit's marker is known by its tiny_base.json and config.json.
TINY_BASE = OutputKind("tiny base", "kit tiny", legacy=(TINY_INFO, "config.json"))


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
    batch_size: int = option(32, "documents per step; smaller means more steps in about the same time", minimum=1)
    epochs: float = option(2.0, "pretraining passes over the train documents")
    max_steps: int = option(0, "cap on pretraining steps, 0 = none (quick tries)", minimum=0)
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    seed: int = option(0, "initialisation and data-order seed", minimum=0)
    documents: str = option(
        "reviews",
        "pretrain on bare review texts or on them laid out as web pages (place header, star lines, topic words "
        "and quotes, review listings: the base learns to read a rating and to use given words; ~2.5x slower); "
        "pages+cards adds a card per review (place header, star line, topic words, the review, no quotes): "
        "the base learns to write about the words it is given",
        choices=("reviews", "pages", "pages+cards"),
    )
    listing_share: float = 0.5

    def __post_init__(self):
        check_options(self, flags=True)  # the fields `kit tiny` takes as flags; the architecture is set in code


def train_tokenizer(texts: Sequence[str], *, vocab_size: int = 4096) -> bytes:
    """Train a Gemma-compatible SentencePiece BPE model in memory; returns the proto bytes.

    Settings mirror Gemma's tokenizer: no dummy prefix, whitespace kept, digits
    split, byte fallback (no unknown characters), newline as its own piece.

    Example:
        >>> proto = train_tokenizer(["Отличное место!", "Плохо."] * 50, vocab_size=300)
        >>> family_named(TINY_FAMILY).tokenizer(proto).end_token_id
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
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
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


def build_tiny_lm(proto: bytes, spec: TinySpec = TinySpec(), *, family: str = TINY_FAMILY):
    """A randomly initialised causal LM of `family` (`kit.families`) around `proto`, sized by `spec`.

    The tiny base is a Gemma 2 (`TINY_FAMILY`); tests build tiny Gemma 3 models
    with `family="gemma3"`, each with every feature of its family
    (`tiny_config`). For Gemma 3, `spec.intermediate_dim` is halved so both
    families have the same feed-forward width.

    Example:
        >>> lm = build_tiny_lm(train_tokenizer(["Хорошо."] * 20, vocab_size=300),
        ...                    TinySpec(num_layers=2, hidden_dim=16, intermediate_dim=32, head_dim=8))
        >>> lm.backbone.use_post_ffw_norm
        True
    """
    keras.utils.set_random_seed(spec.seed)
    fam = family_named(family)
    tokenizer = fam.tokenizer(proto)
    # Embedding rows rounded up to a multiple of 64 (as Gemma pads its 256k
    # vocabulary): the vocab axis is sharded under ModelParallel and must divide
    # evenly; the extra ids are never produced by the tokenizer.
    vocab = -(-tokenizer.vocabulary_size() // 64) * 64
    intermediate = fam.intermediate_dim(spec.intermediate_dim // 2)  # both families: the same FFN width
    config = fam.tiny_config(
        vocab,
        num_layers=spec.num_layers,
        num_query_heads=spec.num_query_heads,
        num_key_value_heads=spec.num_key_value_heads,
        hidden_dim=spec.hidden_dim,
        intermediate_dim=intermediate,
        head_dim=spec.head_dim,
        sliding_window_size=spec.sliding_window_size,
    )
    return fam.causal_lm(fam.build_backbone(config, "float32"), tokenizer, spec.buckets[-1])


def tokens_per_text(proto: bytes, texts: Sequence[str]) -> float:
    """Mean tokens per text (a quick tokenizer quality figure).

    Example:
        >>> p = train_tokenizer(["Отличное место!"] * 50, vocab_size=300)
        >>> tokens_per_text(p, ["Отличное место!"]) < 5
        True
    """
    encoder = Encoder(proto)
    return float(np.mean([len(encoder.sp.encode(t)) for t in texts]))


def file_checksums(directory: str | Path) -> dict[str, str]:
    """sha256 of every file in a preset dir except `tiny_base.json` (which records them) and the output marker.

    The marker (`kit.atomic.MARKER`) is written after `tiny_base.json`, when the
    dir is swapped in, so it cannot be among the files recorded.

    Example:
        >>> file_checksums("models/tiny-base")["model.weights.h5"][:8]  # doctest: +SKIP
        '3f2a...'
    """
    root = Path(directory)
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file() and f.name not in (TINY_INFO, MARKER)
    }


def tiny_base_info(preset: str | Path) -> dict | None:
    """The `tiny_base.json` that `kit tiny` wrote into `preset`, or None for any other preset."""
    path = Path(preset) / TINY_INFO
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not readable JSON ({e}); rebuild the base with `make tiny`.") from None


def verify_tiny_base(preset: str | Path, *, data_fingerprint: str | None = None) -> dict | None:
    """Check a `kit tiny` base before use: its files match their checksums, and it was pretrained on this data.

    The file check catches a base that changed since `kit tiny` wrote it (a
    half-finished copy, a git checkout that mangled a binary). The data check
    matters because the base is pretrained on a prepared *train* split: data
    prepared with another seed or split share would put reviews the base has
    read into the test split, and the evaluation would flatter it. A base
    without recorded checksums or fingerprint (older `kit tiny`) is not checked
    for what it lacks; any preset other than a tiny base returns None.

    Args:
        preset: A preset dir.
        data_fingerprint: The `stats.json` fingerprint of the data about to be used, if known.

    Raises:
        UserError: a file is missing or differs, or the fingerprints differ.

    Example:
        >>> verify_tiny_base("models/tiny-base", data_fingerprint=load_stats("data/prepared")["fingerprint"])  # doctest: +SKIP
    """
    info = tiny_base_info(preset)
    if info is None:
        return None
    fix = f"restore it with `git checkout -- {preset}` or rebuild it with `make tiny`"
    expected = info.get("files") or {}
    if expected:
        actual = file_checksums(preset)
        bad = sorted(n for n, digest in expected.items() if actual.get(n) != digest)
        if bad:
            what = "missing" if bad[0] not in actual else "changed since `kit tiny` wrote it"
            raise UserError(f"{Path(preset) / bad[0]} is {what} (sha256 in {TINY_INFO}); {fix}.")
    trained_on = info.get("data_fingerprint")
    if data_fingerprint and trained_on and data_fingerprint != trained_on:
        raise UserError(
            f"{preset} was pretrained on prepared data {trained_on[:12]}…, not this data ({data_fingerprint[:12]}…): "
            f"its pretraining may have read this data's test reviews. Prepare the data as {preset}/{TINY_INFO} "
            "records (`make data`), or rebuild the base for this data with `make tiny`."
        )
    return info
