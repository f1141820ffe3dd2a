package vllmsim

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// LoRAModule is one adapter declared at start, as vLLM's --lora-modules name=path.
type LoRAModule struct {
	Name string
	Path string
}

// ParseLoRAModule parses "name=path" (vLLM's --lora-modules syntax).
func ParseLoRAModule(s string) (LoRAModule, error) {
	name, path, ok := strings.Cut(s, "=")
	if !ok || name == "" || path == "" {
		return LoRAModule{}, fmt.Errorf("lora module %q: want name=path", s)
	}
	return LoRAModule{Name: name, Path: path}, nil
}

// StepModel is the affine step-time model, in simulated seconds. Defaults are
// the fit published with the Gateway API Inference Extension's old simulator
// (references section 3):
//
//	decode-only step = DecodeBase + DecodeKV*kv_tokens + DecodeBatch*batch
//	step with prefill = max(PrefillMin, PrefillBase + PrefillPerToken*prefill_tokens)
//	                    + DecodeKV*kv_tokens + DecodeBatch*batch
//
// kv_tokens and batch count the decoding sequences of the step; the prefill
// part replaces the decode intercept because both fits include the fixed
// per-step cost.
type StepModel struct {
	DecodeBase      float64
	DecodeKV        float64
	DecodeBatch     float64
	PrefillBase     float64
	PrefillPerToken float64
	PrefillMin      float64
}

// DefaultStepModel returns the fitted coefficients.
func DefaultStepModel() StepModel {
	return StepModel{
		DecodeBase:      0.014,
		DecodeKV:        5.35e-7,
		DecodeBatch:     1.026e-4,
		PrefillBase:     0.01969,
		PrefillPerToken: 6.769e-5,
		PrefillMin:      0.04,
	}
}

// Duration is the simulated length of one step.
func (m StepModel) Duration(prefillTokens, decodeBatch, kvTokens int) float64 {
	d := m.DecodeKV*float64(kvTokens) + m.DecodeBatch*float64(decodeBatch)
	if prefillTokens > 0 {
		return d + math.Max(m.PrefillMin, m.PrefillBase+m.PrefillPerToken*float64(prefillTokens))
	}
	return d + m.DecodeBase
}

// OutputLen is the distribution of natural stop lengths (the length at which
// the simulated model would emit EOS). max_tokens still caps it, and
// ignore_eos bypasses it.
type OutputLen struct {
	// Kind is "max" (never stops before max_tokens), "fixed", "uniform",
	// "exp" or "lognormal".
	Kind string
	A, B float64
}

// ParseOutputLen parses "max", "fixed:N", "uniform:MIN:MAX", "exp:MEAN" or
// "lognormal:MEDIAN:SIGMA".
func ParseOutputLen(s string) (OutputLen, error) {
	parts := strings.Split(s, ":")
	want := map[string]int{"max": 0, "fixed": 1, "uniform": 2, "exp": 1, "lognormal": 2}
	n, ok := want[parts[0]]
	if !ok || len(parts)-1 != n {
		return OutputLen{}, fmt.Errorf("output length %q: want max, fixed:N, uniform:MIN:MAX, exp:MEAN or lognormal:MEDIAN:SIGMA", s)
	}
	d := OutputLen{Kind: parts[0]}
	var vals [2]float64
	for i := 0; i < n; i++ {
		v, err := strconv.ParseFloat(parts[i+1], 64)
		if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return OutputLen{}, fmt.Errorf("output length %q: bad number %q", s, parts[i+1])
		}
		vals[i] = v
	}
	d.A, d.B = vals[0], vals[1]
	if d.Kind == "uniform" && d.B < d.A {
		return OutputLen{}, fmt.Errorf("output length %q: max < min", s)
	}
	return d, nil
}

func (d OutputLen) String() string {
	switch d.Kind {
	case "fixed", "exp":
		return fmt.Sprintf("%s:%g", d.Kind, d.A)
	case "uniform", "lognormal":
		return fmt.Sprintf("%s:%g:%g", d.Kind, d.A, d.B)
	}
	return "max"
}

// sample draws a natural stop length (>= 1); math.MaxInt32 means "never".
func (d OutputLen) sample(r *rand.Rand) int {
	var v float64
	switch d.Kind {
	case "fixed":
		v = d.A
	case "uniform":
		v = d.A + r.Float64()*(d.B-d.A+1)
	case "exp":
		v = r.ExpFloat64() * d.A
	case "lognormal":
		v = d.A * math.Exp(d.B*r.NormFloat64())
	default:
		return math.MaxInt32
	}
	if v < 1 {
		return 1
	}
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(v)
}

// The metrics dialects Config.Engine accepts.
const (
	EngineVLLM   = "vllm"
	EngineSGLang = "sglang"
)

// Config describes one simulated vLLM server. The zero value of every field
// means its default, so Config{} is a usable single server.
type Config struct {
	// Addr is the listen address; "" means 127.0.0.1:0 (a random port).
	Addr string
	// Model is the served model name (vLLM's --served-model-name or --model).
	Model string
	// LoRAModules are the adapters this server can serve.
	LoRAModules []LoRAModule
	// MaxLoRAs is how many adapters can be resident (in a batch) at once
	// (vLLM --max-loras, default 1).
	MaxLoRAs int
	// LoRALoadTime is the simulated seconds a step pays to make a non-resident
	// adapter resident (default 0.1).
	LoRALoadTime float64

	// Speed is simulated seconds per real second (default 1).
	Speed float64
	// BlockSize is tokens per KV block (default 16).
	BlockSize int
	// NumGPUBlocks is the KV cache size in blocks (default 6144: 98,304
	// tokens, about what a 24 GB GPU keeps for a 7B model with GQA).
	NumGPUBlocks int
	// MaxNumSeqs caps running requests (default 256).
	MaxNumSeqs int
	// MaxNumBatchedTokens is the per-step token budget (default 2048).
	MaxNumBatchedTokens int
	// MaxModelLen caps prompt plus output tokens (default 8192).
	MaxModelLen int
	// DisablePrefixCaching turns automatic prefix caching off.
	DisablePrefixCaching bool
	// Step is the step-time model; a zero value means DefaultStepModel.
	Step StepModel
	// OutputLen is the natural stop-length distribution; zero means
	// lognormal with median 200 tokens and sigma 1.
	OutputLen OutputLen
	// Seed makes natural stop lengths reproducible (default 1; StartFleet
	// defaults it to the server's index + 1).
	Seed uint64

	// Engine is the server whose /metrics dialect the simulator speaks:
	// "vllm" (default) or "sglang" (SGLang's sglang:* names; the serving
	// API stays the same OpenAI-compatible one). See metrics.go.
	Engine string
	// MetricsV0 exposes the v0 engine's metric names (model_name label
	// only, gpu_cache_usage_perc, num_requests_swapped) instead of v1's.
	MetricsV0 bool
	// LegacyErrors answers errors in the flat {"object":"error",...} shape of
	// vLLM < 0.10.1.
	LegacyErrors bool

	// KVEvents publishes the prefix cache's changes as vLLM's KV-cache
	// events (vLLM's --kv-events-config; off by default).
	KVEvents KVEventsConfig

	// BehindTolerance is how far (simulated seconds) the engine loop may
	// trail the clock before a step counts as behind and the loop rebases
	// onto the clock (default 0.1).
	BehindTolerance float64

	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// Clock overrides the real, speed-scaled clock (tests).
	Clock Clock
}

// Defaults is the configuration a zero Config gets and the command's flags
// show: one place for every default.
func Defaults() Config {
	return Config{
		Model: "meta-llama/Llama-3.1-8B-Instruct", Addr: "127.0.0.1:0", MaxLoRAs: 1, LoRALoadTime: 0.1, Speed: 1,
		BlockSize: 16, NumGPUBlocks: 6144, MaxNumSeqs: 256, MaxNumBatchedTokens: 2048, MaxModelLen: 8192,
		Step: DefaultStepModel(), OutputLen: OutputLen{Kind: "lognormal", A: 200, B: 1}, Seed: 1, BehindTolerance: 0.1,
		Engine: EngineVLLM,
	}
}

func (c Config) withDefaults() (Config, error) {
	d := Defaults()
	or := func(v *string, dv string) {
		if *v == "" {
			*v = dv
		}
	}
	orInt := func(v *int, dv int) {
		if *v == 0 {
			*v = dv
		}
	}
	orFloat := func(v *float64, dv float64) {
		if *v == 0 {
			*v = dv
		}
	}
	or(&c.Model, d.Model)
	or(&c.Addr, d.Addr)
	orInt(&c.MaxLoRAs, d.MaxLoRAs)
	orFloat(&c.LoRALoadTime, d.LoRALoadTime)
	orFloat(&c.Speed, d.Speed)
	orInt(&c.BlockSize, d.BlockSize)
	orInt(&c.NumGPUBlocks, d.NumGPUBlocks)
	orInt(&c.MaxNumSeqs, d.MaxNumSeqs)
	orInt(&c.MaxNumBatchedTokens, d.MaxNumBatchedTokens)
	orInt(&c.MaxModelLen, d.MaxModelLen)
	if c.Step == (StepModel{}) {
		c.Step = d.Step
	}
	if c.OutputLen.Kind == "" {
		c.OutputLen = d.OutputLen
	}
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	orFloat(&c.BehindTolerance, d.BehindTolerance)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Engine == "" {
		c.Engine = d.Engine
	}
	switch {
	case c.Engine != EngineVLLM && c.Engine != EngineSGLang:
		return c, fmt.Errorf("engine %q: want %s or %s", c.Engine, EngineVLLM, EngineSGLang)
	case c.Engine == EngineSGLang && c.MetricsV0:
		return c, fmt.Errorf("metrics v0 is a vLLM dialect; engine %q has none", c.Engine)
	case c.Speed < 0 || math.IsNaN(c.Speed) || math.IsInf(c.Speed, 0):
		return c, fmt.Errorf("speed must be > 0, got %v", c.Speed)
	case c.MaxLoRAs < 0 || c.BlockSize < 0 || c.NumGPUBlocks < 0 || c.MaxNumSeqs < 0 || c.MaxNumBatchedTokens < 0 || c.MaxModelLen < 0:
		return c, fmt.Errorf("sizes must be positive")
	case c.BlockSize%4 != 0:
		// A block must cover whole 4-byte tokens so blocks of text and of
		// tokens coincide (see tokenizer.go).
		return c, fmt.Errorf("block size must be a multiple of 4, got %d", c.BlockSize)
	case c.NumGPUBlocks*c.BlockSize < c.MaxModelLen:
		return c, fmt.Errorf("KV cache (%d blocks of %d) cannot hold one max_model_len (%d) request", c.NumGPUBlocks, c.BlockSize, c.MaxModelLen)
	}
	var err error
	if c.KVEvents, err = c.KVEvents.withDefaults(); err != nil {
		return c, err
	}
	if c.KVEvents.enabled() && c.DisablePrefixCaching {
		return c, fmt.Errorf("KV cache events need prefix caching (they report its blocks)")
	}
	seen := map[string]bool{c.Model: true}
	for _, m := range c.LoRAModules {
		if m.Name == "" || seen[m.Name] {
			return c, fmt.Errorf("lora module name %q empty or duplicate", m.Name)
		}
		seen[m.Name] = true
	}
	return c, nil
}
