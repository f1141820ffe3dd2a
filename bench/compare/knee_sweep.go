package compare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/meshllm/meshllm/e2e/fleet"
)

// KneeRecord is one fleet's knee for one workload shape, as knees.json
// keeps it so later grid runs reuse it: the sweep's levels, the rule, and
// the shape's flags when it ran (a changed shape needs a new sweep).
type KneeRecord struct {
	Fleet string   `json:"fleet"`
	Shape string   `json:"shape"`
	Args  []string `json:"args"`
	// Speed is the simulator speed of the sweep, Date when it ran (UTC).
	Speed  float64     `json:"speed,omitempty"`
	Date   string      `json:"date,omitempty"`
	Rule   KneeRule    `json:"rule"`
	Points []KneePoint `json:"points,omitempty"`
	Knee   Knee        `json:"knee"`
}

// kneesFile is the grid's record of knees, in its output directory.
const kneesFile = "knees.json"

// loadKnees reads knees.json (none yet: an empty map).
func loadKnees(dir string) (map[string]KneeRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, kneesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]KneeRecord{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]KneeRecord{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", kneesFile, err)
	}
	return out, nil
}

func saveKnees(dir string, knees map[string]KneeRecord) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(knees, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, kneesFile), append(b, '\n'), 0o644)
}

// usable reports whether a recorded knee still applies to the shape.
func (k KneeRecord) usable(sh Shape) bool {
	return k.Knee.Concurrency > 0 && (k.Knee.Decided == "given" || slices.Equal(k.Args, sh.Args))
}

// sweepKnee runs round robin alone, one repetition a level, at the levels
// NextLevel asks for, and finds the knee.
func (g *grid) sweepKnee(ctx context.Context, fleetName string, sh Shape) (KneeRecord, error) {
	preset := fleet.Presets[fleetName]
	rec := KneeRecord{Fleet: fleetName, Shape: sh.Name, Args: sh.Args, Speed: g.Speed, Rule: g.Rule,
		Date: time.Now().UTC().Format("2006-01-02 15:04")}
	start := g.KneeStart
	if start <= 0 {
		start = 2 * preset.Pods
	}
	fmt.Fprintf(g.Log, "knee of %s/%s: round robin from concurrency %d\n", fleetName, sh.Name, start)
	for {
		c, done := NextLevel(rec.Points, g.Rule, start, g.KneeMaxLevels)
		if done {
			break
		}
		// Two waves at least, whatever the scale: the TTFT criterion needs
		// requests after the first.
		n := max(CellPrompts(sh, c, g.Waves, 0, g.Scale), 2*c)
		bo, err := shapeOptions(sh, n, c)
		if err != nil {
			return rec, err
		}
		wall := time.Now()
		runs, err := RunAll(ctx, g.config("knee "+fleetName+"/"+sh.Name, bo, preset, []Policy{Policies[g.Baseline]}, 1))
		if err != nil {
			return rec, fmt.Errorf("knee of %s/%s at %d: %w", fleetName, sh.Name, c, err)
		}
		f := resultFigures(runs[0].Result)
		p := KneePoint{Concurrency: c, Prompts: n, OutputThroughput: f["output_throughput"], RequestThroughput: f["request_throughput"],
			WallSecs: math.Round(time.Since(wall).Seconds())}
		if t, ok := f["p90_ttft_after_wave_ms"]; ok {
			p.TTFTAfterWave = &t
		}
		rec.Points = append(rec.Points, p)
	}
	k, err := FindKnee(rec.Points, g.Rule)
	if err != nil {
		return rec, fmt.Errorf("knee of %s/%s: %w", fleetName, sh.Name, err)
	}
	rec.Knee = k
	fmt.Fprintf(g.Log, "knee of %s/%s: concurrency %d (by %s)\n", fleetName, sh.Name, k.Concurrency, k.Decided)
	return rec, nil
}
