package compare

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/fleet"
)

func TestGridCellsCoverEveryAxis(t *testing.T) {
	require.NoError(t, CheckCells(GridCells))
	require.GreaterOrEqual(t, len(GridCells), 8)
	require.LessOrEqual(t, len(GridCells), 12, "a grid to run routinely, not a cartesian product")
	for _, c := range GridCells {
		require.NotEmpty(t, c.Why, c.Name)
	}
	// The regimes where a policy has been seen to win or lose are cells.
	has := func(fleet, shape string, load func(float64) bool) bool {
		return slices.ContainsFunc(GridCells, func(c Cell) bool { return c.Fleet == fleet && c.Shape == shape && load(c.Load) })
	}
	below := func(l float64) bool { return l < 1 }
	at := func(l float64) bool { return l == 1 }
	past := func(l float64) bool { return l > 1 }
	require.True(t, has("qwen2.5-7b-a10", "decode-fixed", below), "Qwen below the knee, where LLM-aware routing lost")
	require.True(t, has("qwen2.5-7b-a10", "decode-fixed", at), "Qwen at the knee, where it won")
	require.True(t, has("qwen2.5-7b-a10", "decode-fixed", past), "Qwen past the knee, in phase")
	require.True(t, has("vllmsim-98k", "decode-fixed", past), "the fleet whose KV binds")
	require.True(t, has("vllmsim-98k", "sessions-natural", at), "sessions over shared documents")
	require.True(t, has("qwen2.5-7b-a10", "shared-prefix-fixed", at), "shared prefixes filling the cache")
}

func TestCheckCellsNamesWhatIsMissing(t *testing.T) {
	without := func(drop func(Cell) bool) []Cell {
		return slices.DeleteFunc(slices.Clone(GridCells), drop)
	}
	for _, tc := range []struct {
		name  string
		cells []Cell
		err   string
	}{
		{"no load past 1.2x", without(func(c Cell) bool { return c.Load == 1.5 }), "load 1.5"},
		{"no Llama fleet", without(func(c Cell) bool { return c.Fleet == "llama-2-7b-a10" }), "fleet llama-2-7b-a10"},
		{"no natural stops", without(func(c Cell) bool { return GridShapes[c.Shape].Outputs == "natural" }), "outputs natural"},
		{"no sessions", without(func(c Cell) bool { return GridShapes[c.Shape].Mix == "multi-turn" }), "mix multi-turn"},
		{"a repeated name", append(slices.Clone(GridCells), GridCells[0]), "repeated"},
		{"an unknown shape", append(slices.Clone(GridCells), Cell{Name: "x", Fleet: "vllmsim-98k", Shape: "nope", Load: 1}), `unknown shape "nope"`},
		{"an unknown fleet", append(slices.Clone(GridCells), Cell{Name: "x", Fleet: "h100", Shape: "decode-fixed", Load: 1}), `unknown fleet "h100"`},
		{"a load of 0", append(slices.Clone(GridCells), Cell{Name: "x", Fleet: "vllmsim-98k", Shape: "decode-fixed"}), "must be > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, CheckCells(tc.cells), tc.err)
		})
	}
}

// TestGridShapesParse: every shape is valid meshllm-bench flags, sets
// ignore_eos as its outputs say (whatever meshllm-bench's default), and
// builds its dataset.
func TestGridShapesParse(t *testing.T) {
	for _, name := range sortedKeys(GridShapes) {
		sh := GridShapes[name]
		require.Equal(t, name, sh.Name)
		require.Contains(t, GridMixes, sh.Mix, name)
		require.Contains(t, GridOutputs, sh.Outputs, name)
		o, err := shapeOptions(sh, 24, 8)
		require.NoError(t, err, name)
		require.Equal(t, sh.Outputs == "fixed", o.IgnoreEOS, name)
		require.Equal(t, 24, o.NumPrompts)
		require.Equal(t, 8, o.MaxConcurrency)
		reqs, err := bench.BuildDataset(o)
		require.NoError(t, err, name)
		require.Len(t, reqs, 24, name)
		fits := func(reqs []bench.SampleRequest) {
			for i, r := range reqs {
				// SimPromptLen counts earlier answers at their max_tokens,
				// the most a natural stop allows.
				require.LessOrEqual(t, r.SimPromptLen+r.OutputLen, fleet.MaxModelLen, "%s: request %d must fit max_model_len", name, i)
			}
		}
		fits(reqs)
		if sh.Turns > 0 {
			o, err := shapeOptions(sh, 20*sh.Turns, 8)
			require.NoError(t, err)
			reqs, err := bench.BuildDataset(o)
			require.NoError(t, err)
			fits(reqs)
			docs := map[string]bool{}
			for _, r := range reqs {
				if r.Parent < 0 {
					require.Equal(t, "system", r.Messages[0].Role)
					docs[r.Messages[0].Content] = true
				}
			}
			require.LessOrEqual(t, len(docs), 16, "%s: 20 sessions open with the 16 shared documents", name)
		}
	}
}

func TestCellPrompts(t *testing.T) {
	plain := Shape{Name: "p"}
	sessions := Shape{Name: "s", Turns: 6}
	prefix := Shape{Name: "x", MinPrompts: 600}
	for _, tc := range []struct {
		name          string
		sh            Shape
		c, waves, min int
		scale         float64
		want          int
	}{
		{"waves x concurrency", plain, 100, 3, 200, 1, 300},
		{"at least the minimum", plain, 20, 3, 200, 1, 200},
		{"the shape's own minimum", prefix, 64, 3, 200, 1, 600},
		{"scaled", plain, 100, 3, 200, 0.1, 30},
		{"never zero", plain, 1, 1, 0, 0.01, 1},
		// 128 in flight need 192 sessions of 6 turns.
		{"sessions: 1.5 x concurrency of them", sessions, 128, 3, 200, 1, 1152},
		{"sessions: whole ones", sessions, 10, 3, 200, 1, 204},
	} {
		require.Equal(t, tc.want, CellPrompts(tc.sh, tc.c, tc.waves, tc.min, tc.scale), tc.name)
	}
	require.Equal(t, 180, CellConcurrency(0.8, 225))
	require.Equal(t, 338, CellConcurrency(1.5, 225))
	require.Equal(t, 1, CellConcurrency(0.8, 1))
}

func TestSelectCells(t *testing.T) {
	all, err := SelectCells("all")
	require.NoError(t, err)
	require.Equal(t, GridCells, all)
	two, err := SelectCells("98k-decode-past, qwen-decode-knee")
	require.NoError(t, err)
	require.Equal(t, []string{"98k-decode-past", "qwen-decode-knee"}, []string{two[0].Name, two[1].Name})
	_, err = SelectCells("qwen-decode-knee,nope")
	require.ErrorContains(t, err, `unknown cell "nope"`)
}

func TestCellCommandDropsTheSelection(t *testing.T) {
	g := &grid{Args: []string{"--cells", "a,b", "--speed", "4", "--plan", "--cells=c", "--knee", "vllmsim-98k/decode-fixed=150"}}
	require.Equal(t, "go run ./cmd/meshllm-compare grid --speed 4 --knee vllmsim-98k/decode-fixed=150 --cells x", g.CellCommand("x"))
}

func TestPlanPredictsFromTheSweep(t *testing.T) {
	g := &grid{Cells: []Cell{{Name: "a", Fleet: "vllmsim-98k", Shape: "decode-fixed", Load: 1.5}, {Name: "b", Fleet: "llama-2-7b-a10", Shape: "decode-fixed", Load: 1}},
		Policies: []Policy{Policies["round_robin"], Policies["default"]}, Repetitions: 3, Speed: 4, Scale: 1, Waves: 3, MinPrompts: 200,
		Knees: map[string]KneeRecord{"vllmsim-98k/decode-fixed": {Args: GridShapes["decode-fixed"].Args, Knee: Knee{Concurrency: 100},
			Points: []KneePoint{pt(50, 100, 1), pt(100, 200, 1)}}}} // 2 requests a simulated second from 100 on
	p := g.plan()
	require.Equal(t, 150, p[0].Concurrency)
	require.Equal(t, 450, p[0].Prompts)
	// 450 prompts / 2 per s / speed 4 = 56.25 s a run, 6 runs.
	require.InDelta(t, 6*56.25, p[0].PredictedSecs, 1e-9)
	require.Zero(t, p[1].Knee, "no knee yet")
	var b strings.Builder
	writePlan(&b, p)
	require.Contains(t, b.String(), "| a | vllmsim-98k | decode-fixed | 1.5x | 100 | 150 | 450 | 5.6 min |")
	require.Contains(t, b.String(), "1 more without a knee sweep to predict from")

	// A knee swept for other flags does not apply.
	k := g.Knees["vllmsim-98k/decode-fixed"]
	k.Args = []string{"--other"}
	g.Knees["vllmsim-98k/decode-fixed"] = k
	require.Zero(t, g.plan()[0].Knee)
}
