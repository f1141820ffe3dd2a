// Package bench is meshllm's benchmark client: `vllm bench serve` in Go,
// against any OpenAI-compatible base URL (a vLLM server, a gateway's :8080
// and :8081, or vllmsim).
//
// It follows vllm bench's definitions (vllm/benchmarks/serve.py,
// vllm/benchmarks/datasets/, vllm/benchmarks/lib/endpoint_request_func.py):
// datasets (random, prefix_repetition, plus inference-perf's shared_prefix
// and a multi-turn chat), the arrival process (Gamma gaps, burstiness 1 =
// Poisson, rescaled to n/rate), --max-concurrency, streaming with
// include_usage, TTFT/TPOT/ITL/E2EL as vllm measures them, numpy's linear
// percentiles, the result table and the saved-result JSON keys. It takes
// every flag of vllm's benchmark (options.go, vllmflags.go) and decides
// ignore_eos as vllm bench serve does today (eos.go); what it reports
// beyond vllm is named as extras (extras.go, "meshllm_" result keys).
//
// Prompts are words with no tokenizer (words.go): exactly one token per
// word for vllmsim, close to it for real tokenizers (docs/bench.md).
//
// Pieces, for a runner that builds on it: a dataset (Random,
// PrefixRepetition, SharedPrefix, MultiTurn, AssignLoRA) gives
// []SampleRequest; Run sends them and returns []Output; Calculate gives
// Metrics; WriteTable prints them and SavedResult makes the JSON.
package bench
