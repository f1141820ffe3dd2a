package scrape

import (
	"fmt"
	"strings"
)

// Engine names a model server's metrics dialect: which series of its
// /metrics page map to which Snapshot fields.
type Engine string

// The engines the picker can read. EngineAuto detects the engine on every
// page from its metric-name prefix.
const (
	EngineAuto   Engine = "auto"
	EngineVLLM   Engine = "vllm"
	EngineSGLang Engine = "sglang"
	// EngineTritonTRTLLM is NVIDIA Triton Inference Server with the
	// TensorRT-LLM backend (nv_trt_llm_* gauges). Not trtllm-serve, which
	// exports other names (trtllm_*).
	EngineTritonTRTLLM Engine = "triton-trtllm"
)

// Engines lists every accepted engine value, auto first.
var Engines = []Engine{EngineAuto, EngineVLLM, EngineSGLang, EngineTritonTRTLLM}

// ParseEngine reads an engine name as the --engine flag and the
// meshllm.io/engine annotation spell it (lower case, exactly).
func ParseEngine(s string) (Engine, error) {
	for _, e := range Engines {
		if string(e) == s {
			return e, nil
		}
	}
	names := make([]string, len(Engines))
	for i, e := range Engines {
		names[i] = string(e)
	}
	return "", fmt.Errorf("engine %q: want %s", s, strings.Join(names, ", "))
}

// enginePrefixes are the metric-name prefixes auto-detection looks for, in
// the order it tries them.
var enginePrefixes = []struct {
	engine Engine
	prefix string
}{
	{EngineVLLM, "vllm:"},
	{EngineSGLang, "sglang:"},
	{EngineTritonTRTLLM, "nv_trt_llm_"},
}

// detect names the engine of a page from the selected series' names: the
// first engine (in enginePrefixes order) any name belongs to, or "".
func detect(names func(yield func(string) bool)) Engine {
	found := make([]bool, len(enginePrefixes))
	for n := range names {
		for i, p := range enginePrefixes {
			if strings.HasPrefix(n, p.prefix) {
				found[i] = true
			}
		}
	}
	for i, f := range found {
		if f {
			return enginePrefixes[i].engine
		}
	}
	return ""
}
