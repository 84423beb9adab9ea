# Two commands do all set-up on a fresh machine:
#   make demo   fetch ML-100K, prepare splits, pre-train the teacher, distil genre students, print RMSE table
#   make test   run the test suite
# Both create .venv on first use and install the pinned stack (requirements/stack.txt).
PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
TORCH     := torch==2.13.0
TORCHREC  := torchrec==1.8.0
# fbgemm: the CUDA build where an NVIDIA GPU answers, the CPU build otherwise.
FBGEMM    := $(shell nvidia-smi -L >/dev/null 2>&1 && echo fbgemm-gpu==1.8.0 || echo fbgemm-gpu-cpu==1.8.0)
DATA_DIR  ?= $(HOME)/.cache/reckd
RUN_DIR   ?= runs/ml-100k
SEEDS     ?= 0,1,2
METHODS   ?= none,kd,kd+aug
# kd's task weight for the README's students, chosen on validation (README, Students)
DISTILL   ?= --set kd.w_task=0.1

.PHONY: demo test venv clean

$(BIN)/.stack: requirements/stack.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH) $(FBGEMM) -r requirements/stack.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps $(TORCHREC)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import torch, torchrec, fbgemm_gpu; print('stack: torch', torch.__version__, 'torchrec', torchrec.__version__)"
	touch $@

venv: $(BIN)/.stack

demo: $(BIN)/.stack
	$(BIN)/data_prep fetch ml-100k --data-dir $(DATA_DIR)
	$(BIN)/data_prep prepare ml-100k --data-dir $(DATA_DIR)
	$(BIN)/data_prep split ml-100k --data-dir $(DATA_DIR) --scheme random --seed 0 --out $(RUN_DIR)/split
	$(BIN)/data_prep info $(RUN_DIR)/split
	$(BIN)/reckd pretrain $(RUN_DIR)/split --out $(RUN_DIR)/teacher-dcn5
	$(BIN)/reckd pretrain $(RUN_DIR)/split --out $(RUN_DIR)/teacher-dlrm5 --arch dlrm
	$(BIN)/reckd ensemble $(RUN_DIR)/split --teachers $(RUN_DIR)/teacher-dcn5,$(RUN_DIR)/teacher-dlrm5 --out $(RUN_DIR)/teacher-mix
	$(BIN)/reckd distill $(RUN_DIR)/split --teacher $(RUN_DIR)/teacher-mix --genres all --methods $(METHODS) --seeds $(SEEDS) $(DISTILL) --out $(RUN_DIR)/students
	$(BIN)/reckd report $(RUN_DIR)/students

test: $(BIN)/.stack
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
