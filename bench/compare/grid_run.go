package compare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/fleet"
)

// grid is one grid run: its settings and the knees it knows.
type grid struct {
	Cells       []Cell
	Policies    []Policy
	Baseline    string
	Repetitions int
	Speed       float64
	// Scale multiplies every cell's and sweep level's prompts.
	Scale             float64
	Waves, MinPrompts int
	Rule              KneeRule
	KneeStart         int
	KneeMaxLevels     int
	Resweep           bool
	Out               string
	// Command is the grid's command line, Args its flags.
	Command         string
	Args            []string
	SampleInterval  time.Duration
	PickerTimeoutMS int
	PickerConfig    string
	Wasm            []byte
	Cache           wazero.CompilationCache
	Log, Verbose    io.Writer
	// RunOverhead is the wall time a run costs besides its requests
	// (a fresh fleet, picker and gateway), for the time prediction.
	RunOverhead time.Duration

	Knees map[string]KneeRecord
}

// CellCommand is the command that reruns one cell with this run's
// settings.
func (g *grid) CellCommand(cell string) string {
	var args []string
	for i := 0; i < len(g.Args); i++ {
		a := g.Args[i]
		name, _, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case name == "plan" || name == "scoreboard-only" || name == "resweep" || name == "sweep-only":
		case name == "cells" && !hasVal:
			i++ // and its value
		case name == "cells":
		default:
			args = append(args, a)
		}
	}
	return commandLine(append(append([]string{"grid"}, args...), "--cells", cell))
}

// cellRecord is cell.json: how a cell was run.
type cellRecord struct {
	Cell        Cell    `json:"cell"`
	Knee        int     `json:"knee"`
	Concurrency int     `json:"concurrency"`
	Prompts     int     `json:"prompts"`
	Repetitions int     `json:"repetitions"`
	Speed       float64 `json:"speed"`
	WallSecs    float64 `json:"wall_s"`
	Date        string  `json:"date"`
	Command     string  `json:"command"`
}

// shapeOptions are the bench options of a shape at n prompts and
// concurrency c.
func shapeOptions(sh Shape, n, c int) (*bench.Options, error) {
	args := append(append([]string{}, benchDefaults...), sh.Args...)
	args = append(args, "--num-prompts", strconv.Itoa(n), "--max-concurrency", strconv.Itoa(c))
	o, err := bench.ParseOptions(args, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("shape %s: %w", sh.Name, err)
	}
	return o, nil
}

func (g *grid) config(workload string, bo *bench.Options, p fleet.Preset, pols []Policy, reps int) Config {
	return Config{Workload: workload, Bench: bo, Policies: pols, Repetitions: reps, Preset: p, Speed: g.Speed,
		SampleInterval: g.SampleInterval, PickerTimeoutMS: g.PickerTimeoutMS, PickerConfig: g.PickerConfig,
		Wasm: g.Wasm, Cache: g.Cache, Log: g.Log, Verbose: g.Verbose}
}

// plannedCell is a cell with its load resolved.
type plannedCell struct {
	Cell
	Knee, Concurrency, Prompts int
	// PredictedSecs is the cell's predicted wall time (NaN: no knee yet).
	PredictedSecs float64
}

// plan resolves each cell's concurrency and prompts from the knees known,
// and predicts its wall time from the sweep's request rate at that
// concurrency: prompts / rate / speed per run, plus the run's overhead.
func (g *grid) plan() []plannedCell {
	var out []plannedCell
	for _, c := range g.Cells {
		pc := plannedCell{Cell: c, PredictedSecs: math.NaN()}
		if k, ok := g.Knees[c.KneeKey()]; ok && k.usable(GridShapes[c.Shape]) {
			pc.Knee = k.Knee.Concurrency
			pc.Concurrency = CellConcurrency(c.Load, pc.Knee)
			pc.Prompts = CellPrompts(GridShapes[c.Shape], pc.Concurrency, g.Waves, g.MinPrompts, g.Scale)
			if rate := interpolateRate(k.Points, pc.Concurrency); rate > 0 {
				perRun := float64(pc.Prompts)/rate/g.Speed + g.RunOverhead.Seconds()
				pc.PredictedSecs = perRun * float64(len(g.Policies)*g.Repetitions)
			}
		}
		out = append(out, pc)
	}
	return out
}

// writePlan prints the cells, their loads and the predicted time.
func writePlan(w io.Writer, cells []plannedCell) {
	fmt.Fprintln(w, "| cell | fleet | shape | load | knee | concurrency | prompts | predicted wall |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|")
	var total float64
	unknown := 0
	for _, c := range cells {
		knee, conc, prompts, pred := "to sweep", "-", "-", "-"
		if c.Knee > 0 {
			knee, conc, prompts = strconv.Itoa(c.Knee), strconv.Itoa(c.Concurrency), strconv.Itoa(c.Prompts)
		}
		if math.IsNaN(c.PredictedSecs) {
			unknown++
		} else {
			pred = fmtMinutes(c.PredictedSecs)
			total += c.PredictedSecs
		}
		fmt.Fprintf(w, "| %s | %s | %s | %gx | %s | %s | %s | %s |\n", c.Name, c.Fleet, c.Shape, c.Load, knee, conc, prompts, pred)
	}
	fmt.Fprintf(w, "\npredicted: %s for %d cells", fmtMinutes(total), len(cells)-unknown)
	if unknown > 0 {
		fmt.Fprintf(w, " (%d more without a knee sweep to predict from)", unknown)
	}
	fmt.Fprintln(w)
}

// ensureKnees sweeps every knee the cells need and knees.json lacks (or
// all of them with Resweep), saving knees.json after each.
func (g *grid) ensureKnees(ctx context.Context) error {
	for _, c := range g.Cells {
		sh := GridShapes[c.Shape]
		if k, ok := g.Knees[c.KneeKey()]; ok && k.usable(sh) && (!g.Resweep || k.Knee.Decided == "given") {
			continue
		}
		rec, err := g.sweepKnee(ctx, c.Fleet, sh)
		if err != nil {
			return err
		}
		g.Knees[c.KneeKey()] = rec
		if err := saveKnees(g.Out, g.persistentKnees()); err != nil {
			return err
		}
	}
	return nil
}

// persistentKnees are the swept knees (not those given on the command
// line, which hold for one run).
func (g *grid) persistentKnees() map[string]KneeRecord {
	out := map[string]KneeRecord{}
	for k, v := range g.Knees {
		if v.Knee.Decided != "given" {
			out[k] = v
		}
	}
	return out
}

// runCell runs one cell's comparison and writes its folder: summary.json,
// report.md, phase.png, cell.json (and samples.json, not committed).
func (g *grid) runCell(ctx context.Context, pc plannedCell) error {
	sh := GridShapes[pc.Shape]
	bo, err := shapeOptions(sh, pc.Prompts, pc.Concurrency)
	if err != nil {
		return err
	}
	preset := fleet.Presets[pc.Fleet]
	fmt.Fprintf(g.Log, "\ncell %s: %s on %s, concurrency %d (%gx the knee %d), %d prompts\n",
		pc.Name, sh.Name, pc.Fleet, pc.Concurrency, pc.Load, pc.Knee, pc.Prompts)
	start := time.Now()
	runs, err := RunAll(ctx, g.config(pc.Name, bo, preset, g.Policies, g.Repetitions))
	if err != nil {
		return fmt.Errorf("cell %s: %w", pc.Name, err)
	}
	wall := time.Since(start).Seconds()
	var names []string
	for _, p := range g.Policies {
		names = append(names, p.Name)
	}
	dir := filepath.Join(g.Out, pc.Name)
	cmd := g.CellCommand(pc.Name)
	info := ReportInfo{
		Workload: pc.Name, Command: cmd, Preset: pc.Fleet, Fleet: preset, Speed: g.Speed, Repetitions: g.Repetitions,
		Scale:   fmt.Sprintf("%g (%d prompts at concurrency %d, %gx the knee %d)", g.Scale, pc.Prompts, pc.Concurrency, pc.Load, pc.Knee),
		Dataset: describe(bo), Plots: []string{PhasePlot},
	}
	if err := Write(dir, info, names, runs); err != nil {
		return err
	}
	rec := cellRecord{Cell: pc.Cell, Knee: pc.Knee, Concurrency: pc.Concurrency, Prompts: pc.Prompts, Repetitions: g.Repetitions,
		Speed: g.Speed, WallSecs: math.Round(wall), Date: time.Now().UTC().Format("2006-01-02 15:04"), Command: cmd}
	b, err := json.MarshalIndent(rec, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cell.json"), append(b, '\n'), 0o644)
}

// scoreboardCells are the cells a scoreboard covers: every grid cell, so
// that a run of a few cells (--cells) keeps those run before into the same
// folder, then any cell of the selection that is not a grid cell.
func (g *grid) scoreboardCells() []Cell {
	out := slices.Clone(GridCells)
	for _, c := range g.Cells {
		if !slices.ContainsFunc(out, func(o Cell) bool { return o.Name == c.Name }) {
			out = append(out, c)
		}
	}
	return out
}

// loadResults reads every cell of the scoreboard that has a folder in the
// output directory (cells not run yet are left out and named).
func (g *grid) loadResults() ([]CellResult, []string, error) {
	var out []CellResult
	var missing []string
	for _, c := range g.scoreboardCells() {
		dir := filepath.Join(g.Out, c.Name)
		rb, err := os.ReadFile(filepath.Join(dir, "cell.json"))
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, c.Name)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		var rec cellRecord
		if err := json.Unmarshal(rb, &rec); err != nil {
			return nil, nil, fmt.Errorf("%s/cell.json: %w", c.Name, err)
		}
		sb, err := os.ReadFile(filepath.Join(dir, "summary.json"))
		if err != nil {
			return nil, nil, err
		}
		r, err := cellResultFromSummary(c, rec, sb)
		if err != nil {
			return nil, nil, fmt.Errorf("%s/summary.json: %w", c.Name, err)
		}
		out = append(out, r)
	}
	return out, missing, nil
}

// writeScoreboard writes scoreboard.md and scoreboard.json from the cells'
// folders.
func (g *grid) writeScoreboard() error {
	results, missing, err := g.loadResults()
	if err != nil {
		return err
	}
	var names []string
	for _, p := range g.Policies {
		names = append(names, p.Name)
	}
	sb := BuildScoreboard(results, names, g.Baseline)
	b, err := json.MarshalIndent(struct {
		Knees map[string]KneeRecord `json:"knees"`
		Scoreboard
		NotRun []string `json:"not_run,omitempty"`
	}{g.Knees, sb, missing}, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(g.Out, "scoreboard.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(g.Out, "scoreboard.md"))
	if err != nil {
		return err
	}
	g.writeScoreboardMarkdown(f, sb, results, missing)
	return f.Close()
}

func (g *grid) writeScoreboardMarkdown(w io.Writer, sb Scoreboard, results []CellResult, missing []string) {
	var others []string
	for _, p := range sb.Policies {
		if p != sb.Baseline {
			others = append(others, p)
		}
	}
	fmt.Fprintf(w, "# Regime grid: %s against %s\n\n", strings.Join(others, ", "), sb.Baseline)
	fmt.Fprintf(w, "```sh\n%s\n```\n\n", g.Command)
	fmt.Fprintf(w, "Each cell is one workload shape on one simulated fleet at a load relative to that fleet's knee for the shape "+
		"(the concurrency where round robin saturates). %d repetitions of each policy per cell, each on a fresh fleet, in alternating order; "+
		"simulator speed %gx. **All times are simulated** (vllmsim's figures, not a GPU's).\n\n", g.Repetitions, g.Speed)
	fmt.Fprintln(w, "A ratio is the policy's figure over round robin's, repetition by repetition (repetition k of each ran side by side), "+
		"given as the median of the repetitions (min–max). Below 1 is better for latencies, above 1 for throughput. "+
		"\"After the first wave\" leaves out the first max-concurrency requests (they start together and queue for prefill under any policy) "+
		"and those sent while they wait. Saturated cells are those at or past the knee.")
	fmt.Fprintln(w)
	if len(missing) > 0 {
		fmt.Fprintf(w, "Not run yet: %s.\n\n", strings.Join(missing, ", "))
	}
	fmt.Fprintln(w, "## Scoreboard")
	fmt.Fprintln(w)
	sb.Markdown(w)
	fmt.Fprintln(w, "## Cells")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| cell | fleet | workload | load | concurrency | prompts | why | wall |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---|---:|")
	var wall float64
	for _, r := range results {
		fmt.Fprintf(w, "| [%s](%s/report.md) | %s | %s | %gx the knee (%d) | %d | %d | %s | %s |\n", r.Cell.Name, r.Cell.Name, r.Cell.Fleet,
			GridShapes[r.Cell.Shape].Describe, r.Cell.Load, r.Knee, r.Concurrency, r.Prompts, r.Cell.Why, fmtMinutes(r.WallSecs))
		wall += r.WallSecs
	}
	fmt.Fprintf(w, "\nThese cells took %s of wall time (knee sweeps not included).\n\n", fmtMinutes(wall))
	fmt.Fprintln(w, "## Knees")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Round robin alone, one run a level, doubling the concurrency from twice the pods until a level saturates, then bisecting. "+
		"The knee is the lower of two crossings: output throughput reaching %g of the sweep's best, and the TTFT p90 after the first wave "+
		"passing %gx the lowest level's (the prefill floor). knees.json keeps them; later runs reuse them while the shape's flags are unchanged.\n\n",
		g.Rule.Plateau, g.Rule.FloorFactor)
	fmt.Fprintln(w, "| fleet / shape | knee | decided by | throughput crossing | TTFT crossing | levels (concurrency: output tok/s, TTFT p90 after the wave ms) |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---|")
	for _, key := range sortedKeys(g.Knees) {
		k := g.Knees[key]
		var levels []string
		for _, p := range sortedPoints(k.Points) {
			levels = append(levels, fmt.Sprintf("%d: %.0f, %s", p.Concurrency, p.OutputThroughput, num(p.ttft())))
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", key, k.Knee.Concurrency, k.Knee.Decided, optNum(k.Knee.ByThroughput), optNum(k.Knee.ByTTFT), strings.Join(levels, "; "))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Phase: KV per pod over time, and each request's TTFT by send time")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "One picture per cell, a column per policy (first repetition): pods in phase fill and drain together; out of phase, some pod has room.")
	fmt.Fprintln(w)
	for _, r := range results {
		fmt.Fprintf(w, "### %s\n\n![%s](%s/%s)\n\n", r.Cell.Name, r.Cell.Name, r.Cell.Name, PhasePlot)
	}
}

// fmtMinutes is a wall time in minutes (one decimal below 10).
func fmtMinutes(secs float64) string {
	if secs < 600 {
		return fmt.Sprintf("%.1f min", secs/60)
	}
	return fmt.Sprintf("%.0f min", secs/60)
}

func optNum(x *float64) string {
	if x == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", *x)
}
