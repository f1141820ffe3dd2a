package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/e2e/stack"
	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// run brings the stack up, prints where everything is and a first request
// to try, and keeps it up until ctx ends; then it stops everything and
// returns nil.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	wasm, err := stack.LoadWasm()
	if err != nil {
		return err
	}
	logOut := io.Discard
	if o.verbose {
		logOut = stderr
	}
	f := describeFleet(o, slog.New(slog.NewTextHandler(logOut, nil)))
	cfg := stack.Config{
		Wasm: wasm, Sims: f.sims, Objects: f.objects, Pool: f.pool, PluginConfig: stack.PluginConfig(f.pool, o.pickerTimeoutMS),
		Log: logOut, PlainAddr: o.plainAddr, LLMAddr: o.llmAddr, AdminAddr: o.adminAddr, PickerAddr: o.pickerAddr,
		ExtProc: o.extProc, ExtProcGatewayAddr: o.extProcAddr,
	}
	if o.accessLog {
		cfg.AccessLog = stdout
	}
	fmt.Fprintf(stdout, "meshllm up: starting %s\n", f.summary)
	// Not ctx: the stack stops in order (gateways, picker, pods) in Close,
	// not all at once when ctx ends.
	s, err := stack.Start(context.Background(), cfg)
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "listen" {
		return fmt.Errorf("%w (another `make up` or `make demo`? choose other addresses with the -addr flags)", err)
	}
	if err != nil {
		return err
	}
	if ctx.Err() == nil { // not interrupted while starting
		printURLs(stdout, s, f)
		<-ctx.Done()
	}
	fmt.Fprintln(stdout, "\nmeshllm up: stopping")
	s.Close()
	fmt.Fprintln(stdout, "meshllm up: stopped")
	return nil
}

// fleetPlan is the fleet a preset makes.
type fleetPlan struct {
	sims          []vllmsim.Config
	objects, pool string
	summary       string
	// tryModel is the model of the first request to try; models lists
	// what the pool serves.
	tryModel, models string
}

func describeFleet(o options, logger *slog.Logger) fleetPlan {
	if o.preset == demoPreset {
		pods := o.pods
		if pods == 0 {
			pods = fleet.DemoPods
		}
		return fleetPlan{
			sims: fleet.DemoSims(pods, o.speed, logger), objects: fleet.DemoObjects(o.strategy), pool: fleet.DemoPool,
			summary: fmt.Sprintf("%d simulated vLLM pods of %s (LoRA adapters %s, two loaded at a time), speed %gx, pool %s, strategy %s",
				pods, fleet.DemoBaseModel, strings.Join(fleet.DemoAdapters, ", "), o.speed, fleet.DemoPool, o.strategy),
			tryModel: "tweet-summary",
			models: "tweet-summary (50/50 over tweet-summary-1 and -2), sql-lora (critical, 90/10 canary over sql-lora-1 and -2), " +
				fleet.DemoBaseModel,
		}
	}
	p := fleet.Presets[o.preset]
	if o.pods > 0 {
		p.Pods = o.pods
	}
	const pool = "vllm-pool"
	return fleetPlan{
		sims: p.Sims(o.speed, logger), objects: fleet.PoolObjects(pool, o.strategy), pool: pool,
		summary: fmt.Sprintf("%d simulated vLLM pods of %s on A10s (preset %s, %d KV blocks a pod), speed %gx, pool %s, strategy %s",
			p.Pods, p.Model, p.Name, p.NumGPUBlocks(), o.speed, pool, o.strategy),
		tryModel: p.Model, models: p.Model,
	}
}

// printURLs says where everything listens and what to try first.
func printURLs(w io.Writer, s *stack.Stack, f fleetPlan) {
	row := func(label, url, what string) { fmt.Fprintf(w, "  %-16s %-40s %s\n", label, url, what) }
	llm := s.URL(stack.LLMListener)
	fmt.Fprintln(w, "meshllm up: running")
	row("round robin", s.URL(stack.PlainListener), "every request to the next pod, no picker (envoy.yaml's :8080)")
	row("LLM-aware", llm, "the filter (wasm/meshllm.wasm) asks picker-svc (envoy.yaml's :8081)")
	if s.ExtProcGateway != nil {
		row("ext_proc gateway", s.ExtProcGateway.URL(), "a gateway asking picker-svc over ext_proc ("+s.ExtProcAddr()+")")
	}
	row("gateway stats", "http://"+s.Gateway.AdminAddr()+"/stats/prometheus", "the filter's asm_llm_proxy_* series")
	row("picker-svc", "http://"+s.PickerAddr()+"/metrics", "picks, pods' state; /debug/state for the picker's view")
	for i, u := range s.Fleet.URLs() {
		row(fmt.Sprintf("vLLM pod %d", i), u+"/metrics", "a simulated vLLM server")
	}
	fmt.Fprintf(w, "models: %s\n", f.models)
	fmt.Fprintln(w, "\ntry:")
	fmt.Fprintf(w, "  curl -s %s/v1/completions -H 'Content-Type: application/json' -d '{\"model\":%q,\"prompt\":\"Summarise: the gateway asks the picker which pod should serve each request.\",\"max_tokens\":32}'\n",
		llm, f.tryModel)
	fmt.Fprintln(w, "then load it the way vLLM's benchmark does (compare with the round-robin URL):")
	fmt.Fprintf(w, "  go run ./cmd/meshllm-bench --base-url %s --model %s --dataset-name random --random-input-len 500 --random-output-len 100 --num-prompts 200 --max-concurrency 16\n",
		llm, f.tryModel)
	fmt.Fprintln(w, "Ctrl-C stops everything.")
}
