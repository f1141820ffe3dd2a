package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/fleet"
	"github.com/meshllm/meshllm/e2e/stack"
)

// TestGridSmoke runs a one-cell grid (two fast pods, 24 short requests,
// round robin against DEFAULT, one repetition, a given knee) and checks
// that the cell's folder and the scoreboard are written and agree.
func TestGridSmoke(t *testing.T) {
	wasm, err := stack.LoadWasm()
	require.NoError(t, err)
	preset := fleet.Presets["qwen2.5-7b-a10"]
	preset.Name, preset.Pods = "smoke-2", 2
	shape := Shape{Name: "smoke", Mix: "decode-heavy", Outputs: "fixed", Describe: "tiny",
		Args: []string{"--dataset-name", "random", "--random-input-len", "64", "--random-output-len", "12", "--ignore-eos", "--seed", "5"}}
	fleet.Presets[preset.Name], GridShapes[shape.Name] = preset, shape
	t.Cleanup(func() { delete(fleet.Presets, preset.Name); delete(GridShapes, shape.Name) })

	dir := t.TempDir()
	cell := Cell{Name: "smoke-cell", Fleet: preset.Name, Shape: shape.Name, Load: 1.5, Why: "smoke"}
	g := &grid{Cells: []Cell{cell}, Policies: []Policy{Policies["round_robin"], Policies["default"]}, Baseline: "round_robin",
		Repetitions: 1, Speed: 100, Scale: 1, Waves: 3, MinPrompts: 24, Rule: DefaultKneeRule, Out: dir, Command: "go test",
		SampleInterval: 20 * time.Millisecond, Wasm: wasm, Log: testLog{t},
		Knees: map[string]KneeRecord{cell.KneeKey(): {Knee: Knee{Concurrency: 4, Decided: "given"}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	planned := g.plan()
	require.Equal(t, 6, planned[0].Concurrency)
	require.Equal(t, 24, planned[0].Prompts)
	require.NoError(t, g.runCell(ctx, planned[0]))
	require.NoError(t, g.writeScoreboard())

	var sb struct {
		Scoreboard
		Knees map[string]KneeRecord `json:"knees"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "scoreboard.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &sb))
	require.Len(t, sb.Cells, 1)
	c := sb.Cells[0]
	require.Equal(t, 6, c.Concurrency)
	require.True(t, c.Saturated)
	rr, def := c.Values["round_robin"], c.Values["default"]
	require.Greater(t, float64(rr["p90_ttft_ms"].Median), 0.0)
	// The ratio is the two runs' figures divided (one repetition each;
	// scoreboard.json keeps 4 significant digits).
	require.InEpsilon(t, float64(def["p90_ttft_ms"].Median)/float64(rr["p90_ttft_ms"].Median), float64(c.Ratios["default"]["p90_ttft_ms"].Median), 2e-3)
	require.Equal(t, 4, sb.Knees[cell.KneeKey()].Knee.Concurrency)

	md, err := os.ReadFile(filepath.Join(dir, "scoreboard.md"))
	require.NoError(t, err)
	for _, want := range []string{"### default / round_robin", "| smoke-cell (saturated) | 1.5x | 6 |", "[smoke-cell](smoke-cell/report.md)", "smoke-cell/phase.png"} {
		require.Contains(t, string(md), want)
	}
	img, err := os.ReadFile(filepath.Join(dir, "smoke-cell", PhasePlot))
	require.NoError(t, err)
	_, err = png.Decode(bytes.NewReader(img))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "smoke-cell", "kv_usage.png"))
	require.True(t, os.IsNotExist(err), "a grid cell writes only its phase plot")
	report, err := os.ReadFile(filepath.Join(dir, "smoke-cell", "report.md"))
	require.NoError(t, err)
	require.Contains(t, string(report), "grid --cells smoke-cell")

	// A run of a few cells keeps, in the scoreboard, the cells run before
	// into the same folder.
	require.NoError(t, os.CopyFS(filepath.Join(dir, GridCells[0].Name), os.DirFS(filepath.Join(dir, "smoke-cell"))))
	require.NoError(t, g.writeScoreboard())
	b, err = os.ReadFile(filepath.Join(dir, "scoreboard.json"))
	require.NoError(t, err)
	sb.Cells = nil
	require.NoError(t, json.Unmarshal(b, &sb))
	require.Len(t, sb.Cells, 2, "the earlier cell and the selection")
}
