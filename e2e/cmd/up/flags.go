package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/pickapi"
)

// demoPreset names `make demo`'s fleet among the A10 presets.
const demoPreset = "demo"

// maxPods bounds --pods: every pod is a simulated server in this process.
const maxPods = 64

// options are the command's flags.
type options struct {
	preset, strategy string
	pods             int
	speed            float64
	extProc          bool
	pickerTimeoutMS  int
	plainAddr        string
	llmAddr          string
	extProcAddr      string
	adminAddr        string
	pickerAddr       string
	accessLog        bool
	verbose          bool
}

func presetNames() []string { return append([]string{demoPreset}, fleet.PresetNames()...) }

// parseFlags reads args; a bad value is an error that names the valid ones.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "make up [ARGS='...']: the local stack (simulated vLLM pods, picker-svc, the gateway with the filter), until Ctrl-C")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.preset, "preset", demoPreset, "simulated fleet: "+strings.Join(presetNames(), ", ")+
		" (demo: Llama-2-7B pods with four LoRA adapters and InferenceModel splits; the others: one model on A10-sized pods)")
	fs.IntVar(&o.pods, "pods", 0, "simulated vLLM pods (default: the preset's)")
	fs.StringVar(&o.strategy, "strategy", string(pickapi.StrategyPrefixCache), "the pool's routing strategy: LATENCY, DEFAULT or PREFIX_CACHE")
	fs.Float64Var(&o.speed, "speed", 1, "simulator speed factor: simulated seconds per real second (1: a real fleet's timing)")
	fs.BoolVar(&o.extProc, "ext-proc", false, "also start the gateway path: a gateway asking picker-svc over ext_proc, as a Gateway API inference extension does")
	fs.IntVar(&o.pickerTimeoutMS, "picker-timeout-ms", 50, "the filter's picker_timeout_ms (envoy/envoy.yaml's 50; raise it on a busy machine)")
	fs.StringVar(&o.plainAddr, "round-robin-addr", "127.0.0.1:8080", "round-robin listener (no picker)")
	fs.StringVar(&o.llmAddr, "llm-addr", "127.0.0.1:8081", "LLM-aware listener (the filter asks picker-svc)")
	fs.StringVar(&o.extProcAddr, "ext-proc-addr", "127.0.0.1:8082", "ext_proc gateway listener (with --ext-proc)")
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:9901", "gateway admin: /stats/prometheus")
	fs.StringVar(&o.pickerAddr, "picker-addr", "127.0.0.1:9002", "picker-svc: pick API, /metrics, /debug/state")
	fs.BoolVar(&o.accessLog, "access-log", true, "print the gateway's access-log line of every request")
	fs.BoolVar(&o.verbose, "v", false, "show the components' logs (picker, gateway, simulators) on stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if !slices.Contains(presetNames(), o.preset) {
		return o, fmt.Errorf("unknown --preset %q (%s)", o.preset, strings.Join(presetNames(), ", "))
	}
	switch s := pickapi.Strategy(strings.ToUpper(o.strategy)); s {
	case pickapi.StrategyDefault, pickapi.StrategyPrefixCache, pickapi.StrategyLatency:
		o.strategy = string(s)
	default:
		// PRECISE_PREFIX_CACHE needs the engines' KV events, which this
		// stack's simulators do not publish.
		return o, fmt.Errorf("unknown --strategy %q (LATENCY, DEFAULT or PREFIX_CACHE)", o.strategy)
	}
	if o.pods < 0 || o.pods > maxPods {
		return o, fmt.Errorf("--pods %d: want 1 to %d (0: the preset's)", o.pods, maxPods)
	}
	if !(o.speed > 0) || math.IsInf(o.speed, 0) {
		return o, errors.New("--speed must be a number > 0")
	}
	if o.pickerTimeoutMS < 1 || o.pickerTimeoutMS > 60000 {
		return o, errors.New("--picker-timeout-ms: want 1 to 60000, as the filter accepts")
	}
	return o, nil
}
