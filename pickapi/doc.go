// Package pickapi is the wire contract between the meshllm Wasm filter and
// picker-svc: plain types, constants, a reference prefix-hash implementation and
// reflection-free encoders and decoders.
//
// It must compile for GOOS=wasip1 (the filter imports it), so it depends on
// nothing but the standard library's small packages and gjson: no net/http, no
// encoding/json on the filter's path.
//
// One pick is one HTTP call:
//
//	POST /v1/pick  (Content-Type: application/json)
//	{"pool":"vllm-llama2-7b-pool","model":"tweet-summary","criticality":"Standard",
//	 "stream":true,"prefix_hashes":[123,456]}
//
// A pick answers 200:
//
//	{"endpoint":"10.0.0.7:8000","target_model":"tweet-summary-2","strategy":"DEFAULT",
//	 "pool":"vllm-llama2-7b-pool","fallbacks":["10.0.0.8:8000"]}
//
// A refusal answers 4xx/5xx with an OpenAI-style error body that the filter
// passes to the client unchanged:
//
//	{"error":{"message":"...","type":"...","param":null,"code":429}}
package pickapi
