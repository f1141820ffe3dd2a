package compare

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/pprof"

	"strconv"
	"strings"
	"time"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/e2e/stack"
)

// benchDefaults go before the workload's own bench flags (a later flag
// wins): the percentiles summary.json must carry, and no progress bar.
var benchDefaults = []string{"--metric-percentiles", "50,90,99", "--disable-tqdm"}

// Main is the meshllm-compare command. Its own flags come first; the
// workload is bench's (meshllm-bench's) flags after "--". Two subcommands:
// `grid` (the regime grid, grid_cli.go) and `compact` (rewrite old
// summary.json files without their per-request lists). It returns the exit
// status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "grid":
			return gridMain(ctx, args[1:], stdout, stderr)
		case "compact":
			return compactMain(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("meshllm-compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workload := fs.String("workload", "random", "name of the workload (summary.json's \"workload\")")
	policies := fs.String("policies", "round_robin,default,prefix_cache", "policies to compare: round_robin, default, prefix_cache, latency (the LATENCY strategy), precise (PRECISE_PREFIX_CACHE on the gateway path, the engines publishing KV events); an LLM-aware one on N picker replicas: prefix_cache@3 (sharing state), prefix_cache@3/alone (not sharing), with a fault: prefix_cache@3+kill, prefix_cache@3+rolling")
	faultAfter := fs.Duration("fault-after", 2*time.Second, "wall time into a run before a policy's fault (+kill, +rolling) stops its first replica")
	faultEvery := fs.Duration("fault-every", 2*time.Second, "wall time a stopped replica stays down, and between two restarts of +rolling")
	bypass := fs.Float64("bypass", 0, "share of the requests (0 to 1, e.g. 0.3) sent straight to the pods, round robin over their addresses, as another gateway would, without the policy's picker")
	restartPodAt := fs.Float64("restart-pod-at", 0, "restart the first pod (its requests in flight fail, its KV cache is emptied, AllBlocksCleared is published) when this share of the requests (0 to 1, e.g. 0.5) has been sent; needs a finite --request-rate")
	reps := fs.Int("repetitions", 3, "repetitions of every policy, each on a fresh fleet")
	preset := fs.String("preset", "qwen2.5-7b-a10", "fleet preset: "+strings.Join(fleet.PresetNames(), ", "))
	pods := fs.Int("pods", 0, "pods (default: the preset's)")
	scale := fs.Float64("scale", 1, "multiply --num-prompts by this (0 < scale <= 1 to shrink a run)")
	speed := fs.Float64("speed", 10, "simulator speed factor (simulated seconds per wall second)")
	interval := fs.Duration("sample-interval", 250*time.Millisecond, "wall time between two scrapes of every pod's /metrics")
	pickTimeout := fs.Int("picker-timeout-ms", 2000, "the filter's picker_timeout_ms")
	pickerConfig := fs.String("picker-config", "", "picker-svc config file (profiles, weights, shedding) for the LLM-aware policies; default: the picker's defaults")
	out := fs.String("out", "", "report directory (default docs/benchmarks/<workload>)")
	verbose := fs.Bool("v", false, "show the components' logs")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (simulators, picker, gateway, client) to this file")
	split := len(args)
	for i, a := range args {
		if a == "--" {
			split = i
			break
		}
	}
	if err := fs.Parse(args[:split]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "\nWorkload: meshllm-bench flags after --, e.g. -- --dataset-name random --num-prompts 3000 --max-concurrency 200")
			fmt.Fprintln(stderr, "\nSubcommands:\n  grid [flags]       the regime grid: short cells across fleets, loads, output lengths and mixes (grid --help)\n"+
				"  compact FILE...    rewrite summary.json files without their per-request lists")
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshllm-compare: unexpected arguments %q (bench flags go after --)\n", fs.Args())
		return 2
	}
	var benchArgs []string
	if split < len(args) {
		benchArgs = args[split+1:]
	}
	bo, err := bench.ParseOptions(append(append([]string{}, benchDefaults...), benchArgs...), stderr)
	if err != nil {
		fmt.Fprintln(stderr, "meshllm-compare: workload:", err)
		return 2
	}
	p, ok := fleet.Presets[*preset]
	if !ok {
		fmt.Fprintf(stderr, "meshllm-compare: unknown preset %q (%s)\n", *preset, strings.Join(fleet.PresetNames(), ", "))
		return 2
	}
	if *pods > 0 {
		p.Pods = *pods
	}
	var pols []Policy
	var names []string
	for _, n := range strings.Split(*policies, ",") {
		pol, err := ParsePolicy(n)
		if err != nil {
			fmt.Fprintf(stderr, "meshllm-compare: %v\n", err)
			return 2
		}
		pols = append(pols, pol)
		names = append(names, pol.Name)
	}
	if !(*scale > 0) || !(*speed > 0) || math.IsInf(*speed, 0) || *reps < 1 {
		fmt.Fprintln(stderr, "meshllm-compare: --scale and --speed must be > 0, --repetitions >= 1")
		return 2
	}
	if !(*bypass >= 0 && *bypass < 1) {
		fmt.Fprintln(stderr, "meshllm-compare: --bypass is a share of the requests: at least 0, below 1")
		return 2
	}
	if !(*restartPodAt >= 0 && *restartPodAt <= 1) {
		fmt.Fprintln(stderr, "meshllm-compare: --restart-pod-at is a share of the requests sent: 0 (no restart) to 1")
		return 2
	}
	if *restartPodAt > 0 && (math.IsInf(bo.RequestRate, 1) || !(bo.RequestRate > 0)) {
		fmt.Fprintln(stderr, "meshllm-compare: --restart-pod-at needs a finite --request-rate (it times the restart by the arrival schedule)")
		return 2
	}
	full := bo.NumPrompts
	bo.NumPrompts = max(1, int(math.Round(float64(full)**scale)))
	dir := *out
	if dir == "" {
		dir = "docs/benchmarks/" + *workload
	}
	wasm, err := stack.LoadWasm()
	if err != nil {
		fmt.Fprintln(stderr, "meshllm-compare:", err)
		return 1
	}
	cfg := Config{
		Workload: *workload, Bench: bo, Policies: pols, Repetitions: *reps, Preset: p, Speed: *speed,
		SampleInterval: *interval, PickerTimeoutMS: *pickTimeout, FaultAfter: *faultAfter, FaultEvery: *faultEvery, Bypass: *bypass, RestartPodAt: *restartPodAt, PickerConfig: *pickerConfig, Wasm: wasm, Log: stdout,
	}
	if *verbose {
		cfg.Verbose = stderr
	}
	fmt.Fprintf(stdout, "meshllm-compare: %s, %d prompts (%d x scale %g), %s, speed %gx, %d repetitions of %s\n",
		*workload, bo.NumPrompts, full, *scale, p.Name, *speed, *reps, strings.Join(names, ", "))
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "meshllm-compare:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "meshllm-compare:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	runs, err := RunAll(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "meshllm-compare:", err)
		return 1
	}
	info := ReportInfo{
		Workload: *workload, Command: commandLine(args), Preset: *preset, Scale: fmt.Sprintf("%g (%d of %d prompts)", *scale, bo.NumPrompts, full),
		Speed: *speed, Repetitions: *reps, Dataset: describe(bo), Fleet: p, Bypass: *bypass, RestartPodAt: *restartPodAt,
	}
	if *pods > 0 {
		info.Preset = fmt.Sprintf("%s (%d pods)", *preset, *pods)
	}
	if err := Write(dir, info, names, runs); err != nil {
		fmt.Fprintln(stderr, "meshllm-compare:", err)
		return 1
	}
	Summarize(names, runs).Markdown(stdout)
	fmt.Fprintf(stdout, "\n%d runs in %.0f s wall; report in %s/report.md\n", len(runs), time.Since(start).Seconds(), dir)
	return 0
}

// describe says what the workload sends.
func describe(o *bench.Options) string {
	s := fmt.Sprintf("`%s` on %s, %d prompts, max concurrency %d, request rate %s", o.DatasetName, o.Endpoint, o.NumPrompts, o.MaxConcurrency, strconv.FormatFloat(o.RequestRate, 'g', -1, 64))
	switch o.DatasetName {
	case "random":
		s += fmt.Sprintf(", input %d / output %d tokens, range ratio %g, prefix %d", o.Random.InputLen, o.Random.OutputLen, o.Random.RangeRatio, o.Random.PrefixLen)
	case "shared_prefix":
		sp := o.SharedPrefix
		s += fmt.Sprintf(", %d groups x %d prompts, system prompt %d, question %d, output %d tokens", sp.NumGroups, sp.PromptsPerGroup, sp.SystemPromptLen, sp.QuestionLen, sp.OutputLen)
	case "prefix_repetition":
		pr := o.PrefixRepetition
		s += fmt.Sprintf(", %d prefixes of %d + suffix %d, output %d tokens", pr.NumPrefixes, pr.PrefixLen, pr.SuffixLen, pr.OutputLen)
	case "multi_turn":
		mt := o.MultiTurn
		s += fmt.Sprintf(", sessions of %d turns", mt.Turns)
		if mt.Documents > 0 {
			s += fmt.Sprintf(" opening with one of %d shared documents of %d tokens", mt.Documents, mt.SystemPromptLen)
		} else if mt.SystemPromptLen > 0 {
			s += fmt.Sprintf(", system prompt %d", mt.SystemPromptLen)
		}
		s += fmt.Sprintf(", user messages %d / output %d tokens, range ratio %g", mt.UserLen, mt.OutputLen, mt.RangeRatio)
	}
	if o.IgnoreEOS {
		s += ", ignore_eos"
	} else {
		s += ", no ignore_eos (each request ends at the server's natural stop, at most max_tokens)"
	}
	return s
}

func commandLine(args []string) string {
	parts := []string{"go run ./cmd/meshllm-compare"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \"'$*?") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
