"""Run a few LoRA training steps single-device, DataParallel and ModelParallel (2x4); print losses.

Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (see model/test_distribution.py):
    python tests/model/sharding_check.py PRESET_DIR PREPARED_DIR
"""

import json
import sys

import datasets
import keras

import kit  # noqa: F401
from kit.data.batching import Encoder
from kit.model import enable_lora, load_causal_lm
from kit.model.distribution import setup_distribution
from kit.train.loop import Engine, LoopOptions
from kit.train.optim import make_optimizer


def main(preset: str, data: str) -> None:
    dd = datasets.load_from_disk(data)
    out = {"devices": len(keras.distribution.list_devices())}
    for mode, mesh in (("single", ""), ("data", ""), ("model", "batch:2,model:4")):
        dist, text = setup_distribution(mode, mesh, batch_size=8)
        lm = load_causal_lm(preset)
        keras.utils.set_random_seed(0)
        enable_lora(lm, rank=4, alpha=8.0, targets="all")
        enc = Encoder(lm.preprocessor.tokenizer.proto)
        train = enc.encode_pairs(dd["train"]["prompt"], dd["train"]["target"])
        val = enc.encode_pairs(dd["validation"]["prompt"], dd["validation"]["target"])
        opt = make_optimizer(learning_rate=1e-2, warmup_steps=1, total_steps=4)
        engine = Engine(lm, opt, distribution=dist)
        state, _ = engine.run(
            train,
            val,
            LoopOptions(total_steps=4, batch_size=8, grad_accum=2, buckets=(64, 128), eval_every=2, progress=False),
        )
        kernel = lm.backbone.get_layer("decoder_block_0").weights[0]
        query = [w for w in lm.backbone.weights if w.path == "decoder_block_0/attention/query/kernel"][0]
        out[mode] = {
            "description": text,
            "train": [r["train_loss"] for r in state.history if "train_loss" in r],
            "val": [r["val_loss"] for r in state.history if "val_loss" in r],
            "query_sharding": str(query.value.sharding.spec) if hasattr(query.value.sharding, "spec") else "single",
            "query_shards": len({str(s.index) for s in query.value.addressable_shards}),
            "first_weight": kernel.path,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:3])
