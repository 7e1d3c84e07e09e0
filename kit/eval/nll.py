"""The log-likelihood of each human review under a model, masked exactly like the training loss."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_PPL_BUCKETS = (256, 512, 1024)


def reference_nll(
    lm,
    prompts: Sequence[str],
    references: Sequence[str],
    *,
    buckets: Sequence[int],
    batch_size: int,
    progress: bool = False,
    desc: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Summed negative log-likelihood of each reference (review + end of turn) given its prompt.

    The examples and their masks are exactly the training ones (`kit.data.batching`:
    `<bos>` + prompt + target, weight 1 on target labels only), so this is the
    per-request form of the validation loss. References longer than the
    largest bucket are scored on their first tokens.

    Returns:
        `(nll, tokens)`: per request, the summed NLL and how many tokens it sums over.
    """
    import jax
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from kit.data.batching import Encoder, make_batch, plan_batches
    from kit.data.prompt import build_target
    from kit.metrics.perplexity import token_nll

    encoder = Encoder(lm.preprocessor.tokenizer.proto)
    examples = encoder.encode_pairs(list(prompts), [build_target(r) for r in references])
    plan = plan_batches(examples, sorted(buckets), batch_size)  # no seed: fixed order

    @jax.jit
    def row_nll(tv, ntv, x, y, w):
        logits, _ = lm.stateless_call(tv, ntv, x)
        # The training loss's own per-token NLL, summed per row instead of per batch.
        return jnp.sum(token_nll(logits, y) * w, axis=1), jnp.sum(w, axis=1)

    tv = [v.value for v in lm.trainable_variables]
    ntv = [v.value for v in lm.non_trainable_variables]
    nll = np.zeros(len(examples))
    count = np.zeros(len(examples))
    for length, idx in tqdm(plan.batches, desc=f"perplexity {desc}".strip(), disable=not progress, leave=False):
        batch = make_batch([examples[i] for i in idx], length, batch_size, encoder.pad_id)
        s, c = row_nll(tv, ntv, batch.x, batch.y, batch.sample_weight)
        nll[list(idx)] = np.asarray(s)[: len(idx)]
        count[list(idx)] = np.asarray(c)[: len(idx)]
    return nll, count
