// Command vllm-sim runs one or more simulated vLLM servers (see
// e2e/vllmsim/README.md for the flags and the model).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// expandMultiValue rewrites vLLM's "--lora-modules a=x b=y" (one flag, many
// values) into repeated flags, which is what Go's flag package understands.
func expandMultiValue(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a != "--"+name && a != "-"+name {
			out = append(out, a)
			continue
		}
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			out = append(out, "--"+name+"="+args[i])
		}
	}
	return out
}

type loraFlag []vllmsim.LoRAModule

func (l *loraFlag) String() string { return fmt.Sprint(*l) }
func (l *loraFlag) Set(s string) error {
	m, err := vllmsim.ParseLoRAModule(s)
	if err != nil {
		return err
	}
	*l = append(*l, m)
	return nil
}

func main() {
	err := run(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return // --help printed the usage: a successful answer
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vllm-sim:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("vllm-sim", flag.ContinueOnError)
	d := vllmsim.Defaults()
	def := d.Step
	var (
		host      = fs.String("host", "0.0.0.0", "listen host")
		port      = fs.Int("port", 8000, "listen port of the first server")
		servers   = fs.Int("num-servers", 1, "simulated servers on consecutive ports from --port")
		model     = fs.String("model", d.Model, "served model name")
		served    = fs.String("served-model-name", "", "served model name (overrides --model, as in vLLM)")
		loras     loraFlag
		maxLoRAs  = fs.Int("max-loras", d.MaxLoRAs, "adapters resident at once")
		loraLoad  = fs.Float64("lora-load-time", d.LoRALoadTime, "simulated seconds to load a non-resident adapter")
		speed     = fs.Float64("speed", d.Speed, "simulated seconds per real second")
		blockSize = fs.Int("block-size", d.BlockSize, "tokens per KV block (multiple of 4)")
		blocks    = fs.Int("num-gpu-blocks", d.NumGPUBlocks, "KV cache size in blocks")
		maxSeqs   = fs.Int("max-num-seqs", d.MaxNumSeqs, "max running requests")
		maxBatch  = fs.Int("max-num-batched-tokens", d.MaxNumBatchedTokens, "token budget per step (chunked prefill)")
		maxLen    = fs.Int("max-model-len", d.MaxModelLen, "max prompt + output tokens")
		noPrefix  = fs.Bool("no-enable-prefix-caching", false, "disable automatic prefix caching")
		prefix    = fs.Bool("enable-prefix-caching", true, "automatic prefix caching (false = off)")
		outLen    = fs.String("output-len", d.OutputLen.String(), "natural stop lengths: max | fixed:N | uniform:MIN:MAX | exp:MEAN | lognormal:MEDIAN:SIGMA")
		seed      = fs.Uint64("seed", d.Seed, "random seed (stop lengths, ids); server i uses seed+i")
		engine    = fs.String("engine", d.Engine, "metrics dialect of /metrics: vllm or sglang (SGLang's sglang:* names)")
		v0        = fs.Bool("metrics-v0", false, "expose v0-engine metric names (gpu_cache_usage_perc, num_requests_swapped, no engine label)")
		legacyErr = fs.Bool("legacy-errors", false, `flat {"object":"error",...} error bodies (vLLM < 0.10.1)`)
		tolerance = fs.Float64("behind-tolerance", d.BehindTolerance, "simulated seconds the engine may trail its clock before a step counts as behind")
		decBase   = fs.Float64("step-decode-base", def.DecodeBase, "step model: decode intercept (s)")
		decKV     = fs.Float64("step-decode-kv", def.DecodeKV, "step model: seconds per KV token of the decode batch")
		decBatch  = fs.Float64("step-decode-batch", def.DecodeBatch, "step model: seconds per decoding sequence")
		preBase   = fs.Float64("step-prefill-base", def.PrefillBase, "step model: prefill intercept (s)")
		preTok    = fs.Float64("step-prefill-token", def.PrefillPerToken, "step model: seconds per prefill token")
		preMin    = fs.Float64("step-prefill-min", def.PrefillMin, "step model: minimum prefill step (s)")
		logLevel  = fs.String("log-level", "info", "debug | info | warn | error")
		kvEvents  = fs.String("kv-events-config", "", `vLLM's KV-cache events config as JSON, e.g. '{"enable_kv_cache_events":true,"endpoint":"tcp://*:5557"}'`)
		kvEncode  = fs.String("kv-events-encoding", vllmsim.EncodingMap, "KV event encoding: map (vLLM since mid-2026) or array (vLLM 0.9 to 0.23)")
	)
	fs.Var(&loras, "lora-modules", "adapter name=path (repeatable; vLLM's space-separated list also works)")
	_ = fs.Bool("enable-lora", false, "accepted for vLLM compatibility (adapters are enabled by --lora-modules)")
	_ = fs.Int("max-cpu-loras", 0, "accepted for vLLM compatibility (ignored)")
	_ = fs.Float64("gpu-memory-utilization", 0.9, "accepted for vLLM compatibility (ignored; use --num-gpu-blocks)")
	if err := fs.Parse(expandMultiValue(args, "lora-modules")); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	dist, err := vllmsim.ParseOutputLen(*outLen)
	if err != nil {
		return err
	}
	var kvCfg vllmsim.KVEventsConfig
	if *kvEvents != "" {
		if kvCfg, err = vllmsim.ParseKVEventsConfig(*kvEvents); err != nil {
			return err
		}
	}
	kvCfg.Encoding = *kvEncode
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	name := *model
	if *served != "" {
		name = *served
	}
	addrs := vllmsim.ConsecutiveAddrs(*host, *port, *servers)
	cfgs := make([]vllmsim.Config, *servers)
	for i := range cfgs {
		kv := kvCfg // server i publishes on the endpoint ports + i, as vLLM's data-parallel rank i
		kv.Endpoint = vllmsim.OffsetEndpointPort(kv.Endpoint, i)
		if kv.ReplayEndpoint != nil {
			r := vllmsim.OffsetEndpointPort(*kv.ReplayEndpoint, i)
			kv.ReplayEndpoint = &r
		}
		cfgs[i] = vllmsim.Config{
			KVEvents: kv,
			Addr:     addrs[i], Model: name, LoRAModules: loras, MaxLoRAs: *maxLoRAs, LoRALoadTime: *loraLoad,
			Speed: *speed, BlockSize: *blockSize, NumGPUBlocks: *blocks, MaxNumSeqs: *maxSeqs,
			MaxNumBatchedTokens: *maxBatch, MaxModelLen: *maxLen, DisablePrefixCaching: *noPrefix || !*prefix,
			Step:      vllmsim.StepModel{DecodeBase: *decBase, DecodeKV: *decKV, DecodeBatch: *decBatch, PrefillBase: *preBase, PrefillPerToken: *preTok, PrefillMin: *preMin},
			OutputLen: dist, Seed: *seed + uint64(i), Engine: *engine, MetricsV0: *v0, LegacyErrors: *legacyErr,
			BehindTolerance: *tolerance, Logger: logger.With("server", i),
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fleet, err := vllmsim.StartFleet(ctx, cfgs)
	if err != nil {
		return err
	}
	for i, a := range fleet.Addrs {
		logger.Info("vllm-sim listening", "server", i, "addr", a, "model", name, "adapters", len(loras), "speed", *speed)
		if ep := fleet.Servers[i].KVEventsEndpoint(); ep != "" {
			logger.Info("vllm-sim kv events", "server", i, "endpoint", ep, "replay", fleet.Servers[i].KVEventsReplayEndpoint())
		}
	}
	<-ctx.Done()
	logger.Info("vllm-sim shutting down")
	return fleet.Close()
}
