// Package vllmsim is a simulated vLLM OpenAI-compatible server for tests,
// the demo and the routing benchmark, with no GPU.
//
// Each Server runs one Engine: vLLM's continuous batching (decode first, then
// FIFO admission under max_num_seqs and a token budget with chunked
// prefill), a paged KV cache with prefix caching and preemption by
// recompute, LoRA slots with a load cost, and an affine step-time model, all
// in simulated time (real time x Config.Speed). The HTTP side serves
// /v1/completions, /v1/chat/completions (JSON and SSE), /v1/models, /health,
// /metrics in vLLM's exposition, vLLM's tokenizer endpoints (/tokenize,
// /detokenize, the render endpoints) and /reset_prefix_cache, plus
// /sim/stats (the simulator's own counters as JSON). With KV events on, it
// publishes its prefix cache's changes over ZeroMQ as vLLM does. See README.md for what is and is not faithful.
package vllmsim
