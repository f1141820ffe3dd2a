package compare

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/e2e/stack"
)

// kneeFlags are --knee FLEET/SHAPE=CONCURRENCY values: knees given for
// this run (no sweep).
type kneeFlags map[string]int

func (k kneeFlags) String() string { return fmt.Sprint(map[string]int(k)) }

func (k kneeFlags) Set(s string) error {
	key, v, ok := strings.Cut(s, "=")
	c, err := strconv.Atoi(v)
	fleetName, shape, ok2 := strings.Cut(key, "/")
	if !ok || !ok2 || err != nil || c < 1 {
		return fmt.Errorf("want FLEET/SHAPE=CONCURRENCY, got %q", s)
	}
	if _, ok := fleet.Presets[fleetName]; !ok {
		return fmt.Errorf("unknown fleet %q (%s)", fleetName, strings.Join(fleet.PresetNames(), ", "))
	}
	if _, ok := GridShapes[shape]; !ok {
		return fmt.Errorf("unknown shape %q", shape)
	}
	k[key] = c
	return nil
}

// gridMain is `meshllm-compare grid`: the regime grid (grid.go).
func gridMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshllm-compare grid", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "docs/benchmarks/grid", "output directory: scoreboard.md, scoreboard.json, knees.json and a folder per cell")
	cells := fs.String("cells", "all", "cells to run, comma-separated (the scoreboard also reads cells run before into --out)")
	policies := fs.String("policies", "round_robin,default,prefix_cache", "policies: "+strings.Join(sortedKeys(Policies), ", ")+"; round_robin is the baseline")
	reps := fs.Int("repetitions", 3, "repetitions of every policy in every cell, each on a fresh fleet")
	speed := fs.Float64("speed", 4, "simulator speed factor (simulated seconds per wall second)")
	scale := fs.Float64("scale", 1, "multiply every cell's and sweep level's prompts (0 < scale <= 1 for a quick look)")
	waves := fs.Int("waves", 3, "prompts per cell = waves x concurrency (at least --min-prompts)")
	minPrompts := fs.Int("min-prompts", 200, "the fewest prompts a cell sends")
	knees := kneeFlags{}
	fs.Var(knees, "knee", "FLEET/SHAPE=CONCURRENCY: use this knee, no sweep (repeatable)")
	kneeStart := fs.Int("knee-start", 0, "the sweep's first concurrency (default twice the fleet's pods)")
	kneeMax := fs.Int("knee-max-levels", 9, "the most levels one sweep runs")
	resweep := fs.Bool("resweep", false, "sweep every knee again, even those knees.json has")
	planOnly := fs.Bool("plan", false, "print the cells, their loads and the predicted time, and run nothing")
	sweepOnly := fs.Bool("sweep-only", false, "sweep the knees the cells need (into knees.json), print the plan, and run no cell")
	scoreOnly := fs.Bool("scoreboard-only", false, "rebuild scoreboard.md/json from the cells already in --out, and run nothing")
	interval := fs.Duration("sample-interval", 250*time.Millisecond, "wall time between two scrapes of every pod's /metrics")
	pickTimeout := fs.Int("picker-timeout-ms", 2000, "the filter's picker_timeout_ms")
	pickerConfig := fs.String("picker-config", "", "picker-svc config file for the LLM-aware policies")
	verbose := fs.Bool("v", false, "show the components' logs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshllm-compare grid: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if !(*scale > 0) || !(*speed > 0) || math.IsInf(*speed, 0) || *reps < 1 || *waves < 1 || *minPrompts < 0 || *kneeMax < 2 {
		fmt.Fprintln(stderr, "meshllm-compare grid: --scale and --speed must be > 0, --repetitions and --waves >= 1, --knee-max-levels >= 2")
		return 2
	}
	sel, err := SelectCells(*cells)
	if err != nil {
		fmt.Fprintln(stderr, "meshllm-compare grid:", err)
		return 2
	}
	g := &grid{Cells: sel, Baseline: "round_robin", Repetitions: *reps, Speed: *speed, Scale: *scale, Waves: *waves,
		MinPrompts: *minPrompts, Rule: DefaultKneeRule, KneeStart: *kneeStart, KneeMaxLevels: *kneeMax, Resweep: *resweep,
		Out: *out, Command: commandLine(append([]string{"grid"}, args...)), Args: args, SampleInterval: *interval, PickerTimeoutMS: *pickTimeout,
		PickerConfig: *pickerConfig, Log: stdout, Verbose: io.Discard, RunOverhead: 3 * time.Second}
	if *verbose {
		g.Verbose = stderr
	}
	for _, n := range strings.Split(*policies, ",") {
		p, ok := Policies[strings.TrimSpace(n)]
		if !ok {
			fmt.Fprintf(stderr, "meshllm-compare grid: unknown policy %q\n", n)
			return 2
		}
		g.Policies = append(g.Policies, p)
	}
	if len(g.Policies) < 2 || g.Policies[0].Name != g.Baseline {
		fmt.Fprintf(stderr, "meshllm-compare grid: --policies must start with %s (the baseline) and name another\n", g.Baseline)
		return 2
	}
	if g.Knees, err = loadKnees(g.Out); err != nil {
		fmt.Fprintln(stderr, "meshllm-compare grid:", err)
		return 1
	}
	for key, c := range knees {
		fleet, shape, _ := strings.Cut(key, "/")
		g.Knees[key] = KneeRecord{Fleet: fleet, Shape: shape, Knee: Knee{Concurrency: c, Decided: "given"}}
	}
	if *scoreOnly {
		if err := g.writeScoreboard(); err != nil {
			fmt.Fprintln(stderr, "meshllm-compare grid:", err)
			return 1
		}
		fmt.Fprintf(stdout, "scoreboard in %s/scoreboard.md\n", g.Out)
		return 0
	}
	if *planOnly {
		writePlan(stdout, g.plan())
		return 0
	}
	if g.Wasm, err = stack.LoadWasm(); err != nil {
		fmt.Fprintln(stderr, "meshllm-compare grid:", err)
		return 1
	}
	g.Cache = wazero.NewCompilationCache()
	defer g.Cache.Close(context.Background())
	start := time.Now()
	if err := g.ensureKnees(ctx); err != nil {
		fmt.Fprintln(stderr, "meshllm-compare grid:", err)
		return 1
	}
	planned := g.plan()
	writePlan(stdout, planned)
	if *sweepOnly {
		fmt.Fprintf(stdout, "knees in %s/%s\n", g.Out, kneesFile)
		return 0
	}
	for _, pc := range planned {
		if err := g.runCell(ctx, pc); err != nil {
			fmt.Fprintln(stderr, "meshllm-compare grid:", err)
			return 1
		}
		// After every cell, so an interrupted grid leaves a scoreboard of
		// what it ran.
		if err := g.writeScoreboard(); err != nil {
			fmt.Fprintln(stderr, "meshllm-compare grid:", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "\n%d cells in %.0f min wall; scoreboard in %s/scoreboard.md\n", len(planned), time.Since(start).Minutes(), g.Out)
	return 0
}
