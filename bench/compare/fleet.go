package compare

import (
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"

	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// A Preset is a simulated fleet shaped like the seeds': Pods vLLM replicas
// of one 7B model on an A10 (24 GB), `--gpu-memory-utilization 0.95
// --max-model-len 8192`, with vllmsim's KV capacity and step timing derived
// from the model's size and KV bytes per token (docs/benchmarks/README.md).
type Preset struct {
	Name  string
	Model string
	Pods  int
	// KVBytesPerToken is 2 (K and V) x layers x KV heads x head dim x 2
	// bytes (fp16), references section 6.
	KVBytesPerToken int64
	// WeightBytes is the fp16 weights (2 bytes a parameter).
	WeightBytes int64
	// Params is the parameter count (for the prefill FLOPs).
	Params float64
	// SimDefaults: the pods are vllmsim's defaults (its KV size and
	// fitted step model), not derived from a GPU.
	SimDefaults bool
}

// The A10 and vLLM settings of the seeds, and the assumptions of the
// derivation (each is a figure to change, not a measurement):
const (
	GPUMemoryBytes       = 24 << 30 // A10: 24 GB GDDR6 (taken as GiB)
	GPUMemoryUtilization = 0.95     // the seeds' --gpu-memory-utilization
	// ActivationBytes is what vLLM's profiling run reserves besides weights
	// and KV (peak activations at max_num_batched_tokens 2048, CUDA graphs,
	// the non-torch allocations): about 1 GiB for a 7B model.
	ActivationBytes = 1 << 30
	BlockSize       = 16   // vLLM's default --block-size
	MaxModelLen     = 8192 // the seeds' --max-model-len
	// A10 roofline: 600 GB/s of memory bandwidth; 125 TFLOPS fp16 tensor
	// peak, of which a prefill reaches about half.
	A10BandwidthBytesPerS = 600e9
	A10PrefillFLOPS       = 62.5e12
)

// Presets are the two seeds' models. Qwen2.5-7B (seed 003): 28 layers x 4
// KV heads (GQA) x 128 = 57,344 B/token, 7.6 B parameters. Llama-2-7B (seed
// 000): 32 layers x 32 KV heads (MHA) x 128 = 524,288 B/token, 6.7 B
// parameters. The issue takes ~15 GB of weights for both (Llama-2-7B's fp16
// weights are 13.5 GB; the 1.5 GB difference would give it 178 more blocks).
var Presets = map[string]Preset{
	"qwen2.5-7b-a10": {Name: "qwen2.5-7b-a10", Model: "Qwen/Qwen2.5-7B-Instruct", Pods: 5,
		KVBytesPerToken: 2 * 28 * 4 * 128 * 2, WeightBytes: 15 << 30, Params: 7.6e9},
	"llama-2-7b-a10": {Name: "llama-2-7b-a10", Model: "meta-llama/Llama-2-7b-hf", Pods: 5,
		KVBytesPerToken: 2 * 32 * 32 * 128 * 2, WeightBytes: 15 << 30, Params: 6.7e9},
	// vllmsim's own defaults: 6,144 blocks of 16 tokens (98,304 KV tokens)
	// a pod and its fitted step model. Random 1550/1800 traffic at 200 in
	// flight fills this fleet's KV cache (it binds harder than on the A10
	// presets).
	"vllmsim-default": {Name: "vllmsim-default", Model: vllmsim.Defaults().Model, Pods: 5, SimDefaults: true},
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	var out []string
	for k := range Presets {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// KVBytes is the memory left for the KV cache:
// 24 GiB x 0.95 - weights - activations.
func (p Preset) KVBytes() int64 {
	usable := math.Floor(float64(GPUMemoryBytes) * GPUMemoryUtilization)
	return int64(usable) - p.WeightBytes - ActivationBytes
}

// NumGPUBlocks is KVBytes / (KV bytes per token x block size), as vLLM's
// determine_num_available_blocks divides the memory left after profiling by
// the size of one block.
func (p Preset) NumGPUBlocks() int {
	if p.SimDefaults {
		return vllmsim.Defaults().NumGPUBlocks
	}
	return int(p.KVBytes() / (p.KVBytesPerToken * BlockSize))
}

// Step is the A10 roofline step model: a decode step reads the weights once
// (weights / bandwidth) and each sequence's KV (bytes per token /
// bandwidth per cached token); a prefill token costs 2 x params FLOPs at the
// reachable prefill FLOPS. The per-sequence batch overhead and the minimum
// prefill step keep vllmsim's fitted values (references section 3).
func (p Preset) Step() vllmsim.StepModel {
	d := vllmsim.DefaultStepModel()
	d.DecodeBase = float64(p.WeightBytes) / A10BandwidthBytesPerS
	d.PrefillBase = d.DecodeBase
	d.DecodeKV = float64(p.KVBytesPerToken) / A10BandwidthBytesPerS
	d.PrefillPerToken = 2 * p.Params / A10PrefillFLOPS
	return d
}

// Sims are the fleet's simulator configs at the given speed factor.
func (p Preset) Sims(speed float64, logger *slog.Logger) []vllmsim.Config {
	out := make([]vllmsim.Config, p.Pods)
	for i := range out {
		if p.SimDefaults {
			out[i] = vllmsim.Config{Model: p.Model, Speed: speed, Logger: logger}
			continue
		}
		out[i] = vllmsim.Config{
			Model: p.Model, Speed: speed, BlockSize: BlockSize, NumGPUBlocks: p.NumGPUBlocks(),
			MaxModelLen: MaxModelLen, Step: p.Step(), Logger: logger,
		}
	}
	return out
}

// Describe is the derivation in one paragraph, for the report.
func (p Preset) Describe() string {
	var b strings.Builder
	if p.SimDefaults {
		d := vllmsim.Defaults()
		fmt.Fprintf(&b, "%d pods of vllmsim with its defaults: %d blocks of %d tokens (%d KV tokens) a pod, max_num_seqs %d, max_num_batched_tokens %d. ",
			p.Pods, d.NumGPUBlocks, d.BlockSize, d.NumGPUBlocks*d.BlockSize, d.MaxNumSeqs, d.MaxNumBatchedTokens)
		fmt.Fprintf(&b, "Step model (simulated s): decode = %.4f + %.3g x kv_tokens + %.3g x batch; prefill = max(%.2f, %.4f + %.3g x tokens) + the decode terms.",
			d.Step.DecodeBase, d.Step.DecodeKV, d.Step.DecodeBatch, d.Step.PrefillMin, d.Step.PrefillBase, d.Step.PrefillPerToken)
		return b.String()
	}
	gib := func(x int64) string { return fmt.Sprintf("%.2f GiB", float64(x)/(1<<30)) }
	fmt.Fprintf(&b, "%d pods of %s on an A10: KV memory = 24 GiB x %.2f - weights %s - activations %s = %s; ",
		p.Pods, p.Model, GPUMemoryUtilization, gib(p.WeightBytes), gib(ActivationBytes), gib(p.KVBytes()))
	fmt.Fprintf(&b, "blocks = %s / (%d B/token x %d) = %d blocks (%d tokens). ",
		gib(p.KVBytes()), p.KVBytesPerToken, BlockSize, p.NumGPUBlocks(), p.NumGPUBlocks()*BlockSize)
	s := p.Step()
	fmt.Fprintf(&b, "Step model (simulated s): decode = %.4f + %.3g x kv_tokens + %.3g x batch; prefill = max(%.2f, %.4f + %.3g x tokens) + the decode terms.",
		s.DecodeBase, s.DecodeKV, s.DecodeBatch, s.PrefillMin, s.PrefillBase, s.PrefillPerToken)
	return b.String()
}

// round1 rounds to one decimal (report figures).
func round1(x float64) float64 { return math.Round(x*10) / 10 }
