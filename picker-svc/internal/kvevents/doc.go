// Package kvevents follows what every engine's KV cache really holds, from
// the KV-cache events vLLM publishes over ZeroMQ (--kv-events-config):
// subscribers (one per engine, dialling its publisher) or a listener
// (publishers dial in), a decoder for both encodings vLLM has shipped,
// sequence checks with replay, and an Index that scores, for a request's
// token ids, how many leading blocks each candidate pod holds. Pods whose
// events are incomplete report not Ready, so callers fall back to another
// source for them. The app feeds it for PRECISE_PREFIX_CACHE pools
// (picker-svc/internal/precise).
package kvevents
