"""Generation on a micro Gemma 2 fine-tuned in-process: seeds, stops, batching, compile counts."""

import numpy as np
import pytest

from kit.errors import UserError
from kit.generate import Generator, SamplerSpec, pick_length
from kit.generate.request import Request
from kit.model import load_model


@pytest.fixture(scope="module")
def gen(micro_run) -> Generator:
    return Generator(load_model(str(micro_run)), batch_size=4, length_buckets=(128, 256))


REQS = [
    Request.create(rubrics="Кафе", rating=5, keywords="кофе, десерт"),
    Request.create(
        rubrics="Гостиница;Ресторан", rating=1, keywords="номер", name="Азимут", address="Москва, Тверская улица, 3"
    ),
    Request.create(rubrics="Музей", rating=3),
]


def texts(results):
    return [s.text for samples in results for s in samples]


@pytest.mark.slow
def test_stop_ids_are_eos_and_end_of_turn(gen):
    sp = gen.encoder.sp
    assert gen.stop_ids == (sp.eos_id(), sp.piece_to_id("<end_of_turn>")) == (1, sp.piece_to_id("<end_of_turn>"))


@pytest.mark.slow
def test_same_seed_same_text_and_other_seeds_differ(gen):
    for name in ("top_k", "top_p", "random"):
        a = gen.generate(REQS, SamplerSpec(name=name, seed=7, temperature=1.5), n=2, max_new_tokens=24)
        b = gen.generate(REQS, SamplerSpec(name=name, seed=7, temperature=1.5), n=2, max_new_tokens=24)
        c = gen.generate(REQS, SamplerSpec(name=name, seed=8, temperature=1.5), n=2, max_new_tokens=24)
        assert texts(a) == texts(b), name
        assert texts(a) != texts(c), name
        assert all(len(s) == 2 for s in a)
        assert any(s[0].text != s[1].text for s in a), "the n samples of a request should differ"


@pytest.mark.slow
def test_greedy_batch_equals_one_by_one(gen):
    batched = gen.generate(REQS, SamplerSpec(name="greedy"), max_new_tokens=32)
    single = [gen.generate([r], SamplerSpec(name="greedy"), max_new_tokens=32)[0] for r in REQS]
    assert texts(batched) == texts(single)
    assert all(t for t in texts(batched))


@pytest.mark.slow
def test_no_recompilation_across_request_lengths(micro_run):
    gen = Generator(load_model(str(micro_run)), batch_size=4, length_buckets=(256, 512))
    sampler = SamplerSpec(name="top_p", seed=1)
    gen.generate(REQS[:2], sampler, max_new_tokens=40)
    assert gen.traces == 1
    lengths = set()
    for i, (a, b) in enumerate([(REQS[2], REQS[0]), (REQS[1], REQS[1]), (REQS[0], REQS[2])]):
        gen.generate([a, b], SamplerSpec(name="top_p", seed=i), max_new_tokens=40 + i)
        lengths.add(max(len(gen.encoder.sp.encode(r.prompt())) for r in (a, b)))
    assert len(lengths) > 1 and gen.traces == 1  # other prompt lengths, seeds, limits: same program
    gen.generate(REQS[:1], sampler, max_new_tokens=40)  # batch of 1: a new (smaller) shape
    gen.generate(REQS[2:], sampler, max_new_tokens=40)
    assert gen.traces == 2
    gen.generate(REQS[:2], sampler, n=2, max_new_tokens=40)  # 4 rows: the batch bucket of 4
    assert gen.traces == 3
    gen.generate(REQS[:2], sampler, max_new_tokens=300)  # the next length bucket
    assert gen.traces == 4


@pytest.mark.slow
def test_stops_on_the_stop_ids(micro_run):
    gen = Generator(load_model(str(micro_run)), batch_size=1, length_buckets=(256,))
    ids = [gen.encoder.bos_id, *gen.encoder.sp.encode(REQS[0].prompt())]
    row = gen._run([(0, ids)], SamplerSpec(name="greedy"), 0, 20)[0]
    first = int(row[len(ids)])
    assert first not in gen.stop_ids and not all(row[len(ids) :] == 0)
    gen.stop_ids = (*gen.stop_ids, first)  # the token greedy writes first now ends the review
    stopped = gen.generate(REQS[:1], SamplerSpec(name="greedy"), max_new_tokens=20)[0][0]
    assert stopped.stopped and stopped.new_tokens == 0 and stopped.text == ""


@pytest.mark.slow
def test_decode_cuts_at_stop_strips_prompt_and_unescapes(gen):
    sp = gen.encoder.sp
    prompt = REQS[0].prompt()
    ids = [gen.encoder.bos_id, *sp.encode(prompt)]
    body = sp.encode("Вкусно.\\nПридём ещё.")
    row = np.array(ids + body + [gen.stop_ids[1]] + sp.encode("мусор"), dtype=np.int32)
    s = gen.decode_row(prompt, row, len(ids), 100)
    assert s.text == "Вкусно.\nПридём ещё." and s.stopped and s.new_tokens == len(body)
    cut = gen.decode_row(prompt, row, len(ids), 2)
    assert not cut.stopped and cut.new_tokens == 2


@pytest.mark.slow
def test_max_new_tokens_and_no_markers_in_text(gen):
    out = gen.generate(REQS, SamplerSpec(name="top_k", k=50, temperature=2.0, seed=3), max_new_tokens=5)
    for samples in out:
        assert samples[0].new_tokens <= 5
        assert "<end_of_turn>" not in samples[0].text and "<start_of_turn>" not in samples[0].text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["beam", "contrastive"])
def test_beam_and_contrastive_run(gen, name):
    a = gen.generate(REQS[:2], SamplerSpec(name=name, k=4, num_beams=2), max_new_tokens=12)
    b = gen.generate(REQS[:2], SamplerSpec(name=name, k=4, num_beams=2), max_new_tokens=12)
    assert texts(a) == texts(b) and all(isinstance(t, str) for t in texts(a))


@pytest.mark.slow
def test_bad_options_are_user_errors(gen):
    with pytest.raises(UserError, match="sampler must be one of"):
        SamplerSpec(name="nucleus")
    with pytest.raises(UserError, match="temperature must be > 0"):
        SamplerSpec(temperature=0)
    with pytest.raises(UserError, match="n .* must be ≥ 1"):
        gen.generate(REQS, n=0)
    with pytest.raises(UserError, match="longer than the largest length bucket"):
        pick_length((128,), 128, 10)


def test_missing_model_names_the_command(tmp_path):
    with pytest.raises(UserError, match="make demo"):
        load_model(str(tmp_path / "runs" / "nope"))
    with pytest.raises(UserError, match="kit finetune"):
        load_model("no-such-preset")


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(monkeypatch, micro_run, tmp_path, capsys):
    """Run `kit ...` in-process with a rubric vocabulary dir; returns (exit code, stdout, stderr)."""
    import json

    from kit.cli import main
    from kit.testing import RUBRICS

    monkeypatch.setenv("KIT_JAX_CACHE", "off")
    data = tmp_path / "data"
    data.mkdir()
    (data / "rubrics.json").write_text(json.dumps(dict.fromkeys(RUBRICS, 1), ensure_ascii=False))

    def run(*argv, data_dir=True):
        args = ["generate", "--model", str(micro_run), *argv]
        if data_dir:
            args += ["--data", str(data)]
        code = main(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.slow
def test_cli_single_request_text_and_json(cli):
    code, out, err = cli("--rubrics", "кафе", "--rating", "5", "--keywords", "кофе, десерт", "--max-new-tokens", "16")
    assert code == 0 and out.strip() and not err
    import json

    code, out, _ = cli(
        "--rubrics", "Кафе;Музей", "--rating", "4", "--n", "2", "--json", "--seed", "3", "--max-new-tokens", "16"
    )
    doc = json.loads(out)
    assert code == 0 and doc["request"]["rubrics"] == ["Кафе", "Музей"] and len(doc["samples"]) == 2
    assert doc["sampler"]["seed"] == 3 and set(doc["seconds"]) == {"load", "generate"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,match",
    [
        (["--rubrics", "Кафэ", "--rating", "5"], "closest: 'Кафе'"),
        (["--rubrics", "Кафе", "--rating", "7"], "'rating' must be an integer from 1 to 5"),
        (["--rubrics", "Кафе", "--rating", "5", "--name", "A\x07B"], "control characters"),
        (["--rubrics", "Кафе"], "needs --rubrics and --rating"),
        (["--rubrics", "Кафе", "--rating", "5", "--requests", "x.jsonl", "--out", "y.jsonl"], "not both"),
        (["--rubrics", "Кафе", "--rating", "5", "--sampler", "nucleus"], "invalid choice"),
        (["--rubrics", "Кафе", "--rating", "5", "--temperature", "0"], "temperature must be > 0"),
        (["--rubrics", "Кафе", "--rating", "5", "--n", "0"], "expected a positive integer"),
        (["--rubrics", "Кафе", "--rating", "5", "--stream", "--json"], "--stream prints one request"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(cli, argv, match):
    code, out, err = cli(*argv)
    assert code == 2 and not out
    assert err.count("\n") == 1 and match in err, err


@pytest.mark.slow
def test_cli_missing_model_and_vocabulary(cli, tmp_path, capsys):
    from kit.cli import main

    assert (
        main(
            [
                "generate",
                "--model",
                str(tmp_path / "runs" / "nope"),
                "--rubrics",
                "Кафе",
                "--rating",
                "5",
                "--data",
                str(tmp_path / "data"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Model not found" in err and "make demo" in err and err.count("\n") == 1
    code, _, err = cli("--rubrics", "Кафе", "--rating", "5", "--data", str(tmp_path / "nodata"), data_dir=False)
    assert code == 2 and "kit data prepare" in err


@pytest.mark.slow
def test_cli_batch_mode(cli, tmp_path):
    import json

    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        {"rubrics": "Кафе", "rating": 5, "keywords": "кофе"},
        {"rubrics": ["Музей"], "rating": "3."},
        {"rubrics": "Аптека;Кафе", "rating": 1, "name": "Ромашка"},
    ]
    src.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n", encoding="utf-8")
    code, out, _ = cli("--requests", str(src), "--out", str(dst), "--n", "2", "--max-new-tokens", "12")
    rows = [json.loads(x) for x in dst.read_text(encoding="utf-8").splitlines()]
    assert code == 0 and "Wrote 6 reviews for 3 requests" in out
    assert [r["request"]["rubrics"] for r in rows] == [["Кафе"], ["Музей"], ["Аптека", "Кафе"]]
    assert all(len(r["samples"]) == 2 and r["model"] for r in rows)

    src.write_text(json.dumps(lines[0]) + '\n{"rubrics": "Кафе", "rating": 9}\n', encoding="utf-8")
    code, _, err = cli("--requests", str(src), "--out", str(tmp_path / "o2.jsonl"))
    assert code == 2 and f"{src}:2: Request field 'rating'" in err and not (tmp_path / "o2.jsonl").exists()
    src.write_text("{not json\n", encoding="utf-8")
    code, _, err = cli("--requests", str(src), "--out", str(tmp_path / "o2.jsonl"))
    assert code == 2 and f"{src}:1: not valid JSON" in err
    code, _, err = cli("--requests", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o3.jsonl"))
    assert code == 2 and "not found" in err
    before = dst.read_bytes()  # an existing output is replaced only with --overwrite
    code, _, err = cli("--requests", str(src), "--out", str(dst))
    assert code == 2 and "already exists; pass --overwrite" in err and dst.read_bytes() == before


@pytest.mark.slow
def test_cli_stream_prints_what_the_batch_path_prints(cli):
    argv = ["--rubrics", "Кафе", "--rating", "5", "--keywords", "кофе", "--max-new-tokens", "16"]
    for extra in (["--sampler", "greedy"], ["--seed", "4", "--n", "2"]):
        code, batch, _ = cli(*argv, *extra)
        code2, streamed, err = cli(*argv, *extra, "--stream")
        assert code == code2 == 0 and not err
        assert streamed == batch and streamed.strip()
