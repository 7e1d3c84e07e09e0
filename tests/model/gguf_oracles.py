"""The real Gemma 3 270M oracles, run in a child process by tests/model/test_gguf_import.py.

`python -m tests.model.gguf_oracles GGUF OUT REPORT` imports GGUF into OUT
with `kit import`, then compares the imported model with transformers'
loader of the same file: token ids on >= 800 strings, float32 logits on
three prompts (one of 600 tokens, past the 512-token window). It writes the
figures to REPORT (JSON); the tests assert on them.

A child process, because both models of 270M parameters, in float32, with
their logits over 262,144 tokens, grow a process by ~5 GB, and a pytest
process keeps what it grew: the full-size 2B tests that run later in the
same session need that memory.
"""

from __future__ import annotations

import gc
import json
import random
import sys
from pathlib import Path

import numpy as np

import kit  # noqa: F401  (KERAS_BACKEND before keras)

ROOT = Path(__file__).resolve().parents[2]
KEPT = ("<pad>", "<bos>", "<eos>", "<unk>")  # stay CONTROL/UNKNOWN in the rebuilt model (see ids())


def oracle_texts(n_reviews: int = 780) -> list[str]:
    """Russian reviews of the synthetic sample (whole, cut and mixed with English), plus edge cases."""
    sample = ROOT / "data" / "sample" / "geo-reviews-sample.tskv"
    rows = [dict(f.split("=", 1) for f in line.split("\t") if "=" in f) for line in sample.read_text().splitlines()]
    reviews = [r["text"].replace("\\n", "\n") for r in rows if r.get("text")]
    rng = random.Random(0)
    english = ["Great coffee, friendly staff.", "The wait was 40 minutes!!", "Don't go there; it's closed.", "OK"]
    texts = []
    for i, r in enumerate(rng.sample(reviews, min(n_reviews, len(reviews)))):
        k = rng.randrange(1, len(r) + 1)
        texts.append([r, r[:k], f"{english[i % 4]} {r[:k]}", r.upper()][i % 4])
    edges = ["", " ", "  ", "   x", "\n", "\n\n", "\t", "a\tb", "x ", "trailing  ", "😀", "👍🏽 5/5", "0123456789",
             "3.14 и 1,000,000", "<start_of_turn>user\nПривет<end_of_turn>\n<start_of_turn>model\n", "a<mask>b",
             "<unused0>", "<bos>", "<eos> текст", "<pad>", "<unk>", "ёЁ", "\u00a0неразрывный", "Ἀθῆναι", "中文 日本語",
             "\r\n", "₽ €", "https://example.com/путь?q=1", "ЗАГЛАВНЫЕ буквы", "    отступ"]  # fmt: skip
    return texts + edges + [e + " " + e for e in edges]


def ids(path: Path, out: Path) -> dict:
    """(a) The imported tokenizer's ids against transformers' (GGUF tokenizer).

    pad/bos/eos/unk stay CONTROL/UNKNOWN in the rebuilt model, so their
    spellings inside text are cut into pieces (as Gemma's own SentencePiece
    model does) where transformers turns them into the special ids: text can
    never start or end a sequence. Every other string must give transformers' ids.
    """
    import transformers

    from kit.model.loader import load_causal_lm

    hf = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ours = load_causal_lm(str(out), dtype="float32").preprocessor.tokenizer
    texts = oracle_texts()
    same = [t for t in texts if not any(k in t for k in KEPT)]
    differ = [t for t in same if np.asarray(ours(t)).tolist() != hf(t, add_special_tokens=False)["input_ids"]]
    specials = [t for t in texts if any(k in t for k in KEPT) and set(np.asarray(ours(t)).tolist()) & {0, 1, 2, 3}]
    turn = np.asarray(ours("<start_of_turn>user\nПривет<end_of_turn>\n")).tolist()
    return {"strings": len(texts), "compared": len(same), "differ": differ[:5], "n_differ": len(differ),
            "special_ids_from_text": specials, "turn_first_id": turn[0]}  # fmt: skip


def logits(path: Path, out: Path) -> dict:
    """(b) float32 logits against transformers' Gemma3ForCausalLM from the same GGUF.

    The last prompt is cut at 600 tokens: past the window of the sliding
    layers. Whole (~3,250 tokens) the two float32 computations drift apart by
    ~5e-3 on logits of magnitude ~60, and the logits alone take ~3.4 GB per side.
    """
    import keras_hub
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    prompts = ["Отличное место, вкусный кофе", "<start_of_turn>user\nНапиши отзыв о кафе<end_of_turn>\n<start_of_turn>model\n",
               " ".join(oracle_texts(40)[:30])]  # fmt: skip
    rows = [[2] + tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    rows[-1] = rows[-1][:600]
    ours = keras_hub.models.CausalLM.from_preset(str(out), dtype="float32")
    got = []
    for r in rows:
        x = np.array([r])
        got.append(np.asarray(ours({"token_ids": x, "padding_mask": np.ones_like(x, dtype=bool)}))[0])
    del ours
    gc.collect()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    model.eval()
    with torch.no_grad():
        want = [model(torch.tensor([r])).logits[0].numpy() for r in rows]
    return {
        "hf_class": type(model).__name__,
        "lengths": [len(r) for r in rows],
        "max_abs_diff": max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True)),
        "argmax_equal": [bool(np.array_equal(g.argmax(-1), w.argmax(-1))) for g, w in zip(got, want, strict=True)],
    }


def main(argv: list[str]) -> int:
    from kit.model.gguf_import import import_gguf

    path, out, report = Path(argv[0]), Path(argv[1]), Path(argv[2])
    info = import_gguf(path, out)
    result = {"import": {k: info[k] for k in ("architecture", "sha256", "defaults_filled") if k in info}}
    result["ids"] = ids(path, out)
    gc.collect()
    result["logits"] = logits(path, out)
    report.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
