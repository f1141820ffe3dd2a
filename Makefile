# meshllm: the README's two commands are `make demo` and `make test`.
GO      ?= go
WASM    := wasm/meshllm.wasm
FUZZTIME ?= 20s

.PHONY: all wasm test test-native test-race demo check fuzz bench clean

all: wasm

# The filter: standard Go (not TinyGo) compiled to a wasip1 reactor. c-shared is
# what makes it a reactor; without it every callback after main fails.
wasm:
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -ldflags="-s -w" -o $(WASM) ./filter

# Every test; the wasm tests load $(WASM) and fail (never skip) without it.
#
# The engine guard (wazero engine bugs are CPU-dependent: v1.7.2's compiler
# corrupted the guest heap on one CPU only). filter/'s wasm tests run on
# wazero's compiler alone: the SDK's proxytest calls wazero.NewRuntime. In
# the first line, e2e/wasmhost's TestEnginesAgree runs the same core (the
# filter/ fixtures, every split point of a stream, routing with pick
# answers, long runs through many guest GCs, the fuzz corpus) on the
# compiler and on the interpreter and requires identical bytes: with
# filter/'s expected values on the compiler, that is filter/'s core checked on
# both engines. The last line runs the rest of e2e/wasmhost on the
# interpreter; the tests it skips ran there inside TestEnginesAgree (its
# long runs stand for TestManyStreamsMemoryFlat, over a minute on the
# interpreter).
test: wasm
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -count=1 -race ./picker-svc/...
	MESHLLM_WASM_ENGINE=interpreter $(GO) test -count=1 -skip '^(TestEnginesAgree|TestManyStreamsMemoryFlat|FuzzWasmExchange)$$' ./e2e/wasmhost/

# The first run downloads modules and builds everything (about 15 minutes on
# a loaded 2-core machine; the workload itself takes about 17 s): the steps
# are numbered so a first run shows where it is.
demo:
	@echo "[1/3] downloading Go modules (first run only; cached afterwards)"
	@$(GO) mod download
	@echo "[2/3] building the filter: $(WASM)"
	@$(MAKE) --no-print-directory wasm
	@echo "[3/3] building and starting the demo (the first build takes several minutes)"
	@$(GO) run ./e2e/cmd/demo

# The demo's stack kept up until Ctrl-C (docs/local.md), e.g.
#   make up ARGS="--pods 5 --strategy DEFAULT --speed 4 --ext-proc"
#   make up ARGS="--preset qwen2.5-7b-a10"     (make up ARGS=-h lists the flags)
.PHONY: up
up: wasm
	$(GO) run ./e2e/cmd/up $(ARGS)

check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) build ./filter/... $$(GOOS=wasip1 GOARCH=wasm $(GO) list -deps ./filter/... | grep '^github.com/meshllm/meshllm/')
	$(GO) mod tidy
	@git diff --exit-code go.mod go.sum || (echo "go mod tidy changed go.mod/go.sum"; exit 1)

# Short fuzz runs of every fuzz target (go test -fuzz takes one target at a time).
# The FuzzWasm* targets drive wasm/meshllm.wasm: each worker first compiles
# it, which takes 10-30 s in a worker's coverage-instrumented build (then
# it is cached on disk), so they get WASM_FUZZTIME. Their seeds run to a
# MiB, and minimising one takes a minute: they try at most 20 candidates
# (a time limit would kill the worker when it expires, and restart it).
WASM_FUZZTIME ?= 2m
fuzz: wasm
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    args="-fuzztime $(FUZZTIME)"; \
	    case $$f in FuzzWasm*) args="-fuzztime $(WASM_FUZZTIME) -fuzzminimizetime 20x";; esac; \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" $$args $$pkg || exit 1; \
	  done; \
	done

bench: wasm
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -f $(WASM)
	rm -rf $(IMAGES_OUT)

# Container images, built without a container engine (deploy/images):
# picker-svc and vllm-sim (static binaries, non-root) and the filter as the
# Wasm OCI image Istio pulls, each an OCI image layout under $(IMAGES_OUT).
# Push them to REGISTRY/<name>:VERSION with
#   make images REGISTRY=registry.example.com/meshllm push
# WASM_VARIANT=compat builds the filter as one tar layer holding plugin.wasm;
# PLATFORMS=linux/amd64,linux/arm64 makes image indexes; INSECURE=1 pushes
# over plain HTTP (localhost needs no flag).
IMAGES_OUT   ?= build/images
VERSION      ?= $(shell git describe --tags 2>/dev/null || echo 0.1.0)
WASM_VARIANT ?= oci
PLATFORMS    ?= linux/amd64
.PHONY: images push
images: wasm
	$(GO) run ./cmd/meshllm-images build --out $(IMAGES_OUT) --version $(VERSION) \
	  --revision "$$(git rev-parse HEAD 2>/dev/null)" --created "$$(git log -1 --format=%ct 2>/dev/null || echo 0)" \
	  --wasm $(WASM) --wasm-variant $(WASM_VARIANT) --platforms $(PLATFORMS)

push:
	@test -n "$(REGISTRY)" || (echo "push: set REGISTRY, e.g. make images REGISTRY=registry.example.com/meshllm push"; exit 1)
	$(GO) run ./cmd/meshllm-images push --out $(IMAGES_OUT) --registry $(REGISTRY) $(if $(INSECURE),--insecure)

# Simulated vLLM servers (see e2e/vllmsim/README.md), e.g.
#   make vllmsim ARGS="--port 8000 --num-servers 5 --speed 10 --lora-modules a=/a b=/b"
.PHONY: vllmsim
vllmsim:
	$(GO) run ./e2e/vllmsim/cmd/vllm-sim $(ARGS)

# picker-svc against endpoints you name (ip:port list, or DNS names, or a config file):
#   make picker ENDPOINTS=127.0.0.1:8000,127.0.0.1:8001 [OBJECTS=picker-svc/examples/pool.yaml] [PICKER_ADDR=:9002]
#   make picker DNS=vllm:8000   |   make picker CONFIG=picker.yaml   |   PICKER_ARGS='--log-level debug'
PICKER_ADDR ?= :9002
.PHONY: picker
picker:
	$(GO) run ./picker-svc --listen $(PICKER_ADDR) $(if $(CONFIG),--config $(CONFIG)) $(if $(ENDPOINTS),--endpoints $(ENDPOINTS)) $(if $(DNS),--discovery dns --dns $(DNS)) $(if $(OBJECTS),--objects $(OBJECTS)) $(PICKER_ARGS)

# Side-by-side comparisons (docs/benchmarks/README.md) on 5 simulated
# Qwen2.5-7B/A10 pods, 3 repetitions of each policy; BENCH_SCALE shrinks
# --num-prompts.
BENCH_SCALE ?= 1
BENCH_SPEED ?= 4
BENCH_PRESET ?= qwen2.5-7b-a10
# The bench targets pass --ignore-eos so outputs run to their lengths (vllm
# bench serve sends it unasked for the random dataset only).

# Shared prefixes where prefill decides (docs/benchmarks/README.md): 32 system
# prompts of 6,000 tokens (1.5x what one pod's KV cache holds beside its
# batch), 64 questions of 400 tokens each, 200 output tokens, concurrency 64.
.PHONY: bench-prefix
bench-prefix: wasm
	$(GO) run ./cmd/meshllm-compare --workload prefill-prefix --preset $(BENCH_PRESET) --scale $(BENCH_SCALE) --speed $(BENCH_SPEED) \
	  --out docs/benchmarks/prefill-prefix -- --dataset-name shared_prefix --shared-prefix-num-groups 32 \
	  --shared-prefix-prompts-per-group 64 --shared-prefix-system-prompt-len 6000 --shared-prefix-question-len 400 \
	  --shared-prefix-output-len 200 --num-prompts 2048 --max-concurrency 64 --endpoint /v1/completions --ignore-eos

# Business customers under cache pressure, modelled on llm-d's B2B workload
# (docs/benchmarks/b2b-cache-pressure/report.md): 80 customers, each with a
# 6,000-token shared context (30,000 blocks of 16 tokens: 75% of the
# qwen2.5-7b-a10 fleet's 39,785 KV blocks, so not every prefix fits
# everywhere and a guess of who holds what goes wrong), 12 users' questions
# of 1,200 tokens per customer, 200 output tokens, Poisson arrivals at
# BENCH_B2B_RATE requests a simulated second. 2 is round robin's knee on this
# preset, from a sweep of 288 requests a level at speed 4: TTFT p90 2.1 s at
# 1, 5.4 s at 2, 22 s at 3, 39 s at 4; its output throughput levels off near
# 440 tokens/s (2.2 requests/s). precise (PRECISE_PREFIX_CACHE) runs on the
# gateway path with the engines publishing KV events.
# Two variants break any guess of the pods' caches: bench-b2b-bypass sends
# BENCH_B2B_BYPASS of the requests straight to the pods (round robin over
# their addresses, as another gateway would); bench-b2b-restart restarts the
# first pod once BENCH_B2B_RESTART_AT of the requests have been sent.
BENCH_B2B_RATE ?= 2
BENCH_B2B_POLICIES ?= round_robin,default,prefix_cache,precise
BENCH_B2B_REPETITIONS ?= 3
BENCH_B2B_BYPASS ?= 0.3
BENCH_B2B_RESTART_AT ?= 0.5
BENCH_B2B_WORKLOAD = --dataset-name shared_prefix \
	  --shared-prefix-num-groups 80 --shared-prefix-prompts-per-group 12 --shared-prefix-system-prompt-len 6000 \
	  --shared-prefix-question-len 1200 --shared-prefix-output-len 200 --num-prompts 960 \
	  --request-rate $(BENCH_B2B_RATE) --burstiness 1 --endpoint /v1/completions --ignore-eos
# $(call bench_b2b,workload suffix,report directory,variant flags)
bench_b2b = $(GO) run ./cmd/meshllm-compare --workload b2b-cache-pressure$(1) --preset $(BENCH_PRESET) --scale $(BENCH_SCALE) \
	  --speed $(BENCH_SPEED) --repetitions $(BENCH_B2B_REPETITIONS) --policies $(BENCH_B2B_POLICIES) \
	  --out docs/benchmarks/b2b-cache-pressure/$(2) $(3) -- $(BENCH_B2B_WORKLOAD)
.PHONY: bench-b2b bench-b2b-bypass bench-b2b-restart bench-b2b-all
bench-b2b: wasm
	$(call bench_b2b,,base,)
bench-b2b-bypass: wasm
	$(call bench_b2b,-bypass,bypass,--bypass $(BENCH_B2B_BYPASS))
bench-b2b-restart: wasm
	$(call bench_b2b,-restart,restart,--restart-pod-at $(BENCH_B2B_RESTART_AT))
bench-b2b-all: bench-b2b bench-b2b-bypass bench-b2b-restart

# vLLM benchmark random 1550/1800 tokens +-20%, 10-token shared prefix,
# 3000 prompts, at 225 concurrent requests, where round robin saturates:
# its output throughput peaks there and its TTFT tail leaves the prefill
# floor (docs/benchmarks/random-sweep/README.md).
.PHONY: bench-random-saturated
bench-random-saturated: wasm
	$(GO) run ./cmd/meshllm-compare --workload random-c225 --preset $(BENCH_PRESET) --scale $(BENCH_SCALE) --speed $(BENCH_SPEED) \
	  --out docs/benchmarks/random-c225 -- --dataset-name random --random-input-len 1550 --random-output-len 1800 \
	  --random-range-ratio 0.2 --random-prefix-len 10 --num-prompts 3000 --max-concurrency 225 --endpoint /v1/completions --ignore-eos

# Picker replicas (docs/benchmarks/replicas/README.md): one picker, three
# sharing their state, three alone, three with one killed mid-run and with a
# rolling restart, on vLLM benchmark random 1550/1800 tokens +-20% at concurrency 225 and on
# the prefill-prefix shape.
REPLICA_POLICIES ?= prefix_cache,prefix_cache@3,prefix_cache@3/alone,prefix_cache@3+kill,prefix_cache@3+rolling
.PHONY: bench-replicas
bench-replicas: wasm
	$(GO) run ./cmd/meshllm-compare --workload replicas-saturated --preset $(BENCH_PRESET) --scale $(BENCH_SCALE) --speed $(BENCH_SPEED) \
	  --policies $(REPLICA_POLICIES) --fault-after 15s --fault-every 5s \
	  --out docs/benchmarks/replicas/saturated -- --dataset-name random --random-input-len 1550 --random-output-len 1800 \
	  --random-range-ratio 0.2 --random-prefix-len 10 --num-prompts 3000 --max-concurrency 225 --endpoint /v1/completions --ignore-eos
	$(GO) run ./cmd/meshllm-compare --workload replicas-prefill-prefix --preset $(BENCH_PRESET) --scale $(BENCH_SCALE) --speed $(BENCH_SPEED) \
	  --policies $(REPLICA_POLICIES) --fault-after 5s --fault-every 3s \
	  --out docs/benchmarks/replicas/prefill-prefix -- --dataset-name shared_prefix --shared-prefix-num-groups 32 \
	  --shared-prefix-prompts-per-group 64 --shared-prefix-system-prompt-len 6000 --shared-prefix-question-len 400 \
	  --shared-prefix-output-len 200 --num-prompts 2048 --max-concurrency 64 --endpoint /v1/completions --ignore-eos

# The regime grid (docs/benchmarks/grid/README.md): ten short cells over three
# fleets, loads relative to each fleet's knee, fixed and natural output
# lengths, prefill-heavy, decode-heavy and multi-turn work; round robin,
# DEFAULT and PREFIX_CACHE, 3 repetitions each. The first run sweeps the knees
# (kept in docs/benchmarks/grid/knees.json for the next). GRID_ARGS adds flags,
# e.g. GRID_ARGS="--plan" (cells and predicted time, runs nothing) or
# GRID_ARGS="--cells qwen-decode-knee,98k-decode-past".
GRID_ARGS ?=
.PHONY: bench-grid
bench-grid: wasm
	$(GO) run ./cmd/meshllm-compare grid --speed $(BENCH_SPEED) --out docs/benchmarks/grid $(GRID_ARGS)

# vLLM benchmark random 1550/1800 tokens +-20%, 10-token shared prefix,
# 3000 prompts, concurrency 200 (round robin is not yet saturated).
.PHONY: bench-random
bench-random: wasm
	$(GO) run ./cmd/meshllm-compare --workload random-c200 --preset $(BENCH_PRESET) --scale $(BENCH_SCALE) --speed $(BENCH_SPEED) \
	  --out docs/benchmarks/random-c200 -- --dataset-name random --random-input-len 1550 --random-output-len 1800 \
	  --random-range-ratio 0.2 --random-prefix-len 10 --num-prompts 3000 --max-concurrency 200 --endpoint /v1/completions --ignore-eos
