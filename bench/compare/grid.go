package compare

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/meshllm/meshllm/e2e/fleet"
)

// The regime grid: a few short cells, each one workload shape on one fleet
// at one load relative to that fleet's knee, chosen so that every value of
// every axis appears at least once and every regime where a policy has been
// seen to win or lose is a cell. A full cartesian product (3 fleets x 4
// loads x 2 output modes x 3 mixes = 72 cells) would take days; ten cells
// take hours (GridCells says why each is there).

// A Shape is a workload without its load: meshllm-bench flags, less
// --num-prompts and --max-concurrency, which the grid sets per cell.
type Shape struct {
	Name string
	// Mix is what dominates the work: "decode-heavy", "prefill-heavy" or
	// "multi-turn" (sessions over shared documents).
	Mix string
	// Outputs is "fixed" (ignore_eos: every request generates max_tokens)
	// or "natural" (vllmsim stops each request at a length drawn from its
	// stop distribution, lognormal with median 200 tokens and sigma 1,
	// capped by max_tokens, so max_tokens over-estimates as in real
	// traffic).
	Outputs string
	// Turns is the requests per session of a multi-turn shape (0
	// otherwise): a session's turns run one after another, so a load of c
	// needs more than c sessions.
	Turns int
	// MinPrompts is the fewest requests a cell of this shape sends (0: the
	// grid's minimum): shared prefixes need several requests a prefix.
	MinPrompts int
	Args       []string
	// Describe says what the shape sends, for the scoreboard.
	Describe string
}

// The axis values the grid must cover.
var (
	GridFleets  = []string{"qwen2.5-7b-a10", "llama-2-7b-a10", "vllmsim-98k"}
	GridLoads   = []float64{0.8, 1, 1.2, 1.5}
	GridOutputs = []string{"fixed", "natural"}
	GridMixes   = []string{"decode-heavy", "prefill-heavy", "multi-turn"}
)

// The random shape's fixed part: vLLM's benchmark random dataset, 1550
// tokens in and 1800 out (+-20%), a 10-token shared prefix.
var decodeArgs = []string{"--dataset-name", "random", "--random-input-len", "1550", "--random-output-len", "1800",
	"--random-range-ratio", "0.2", "--random-prefix-len", "10", "--endpoint", "/v1/completions"}

// GridShapes are the workload shapes the cells use.
var GridShapes = map[string]Shape{
	"decode-fixed": {Name: "decode-fixed", Mix: "decode-heavy", Outputs: "fixed",
		Args:     append(slices.Clone(decodeArgs), "--ignore-eos"),
		Describe: "random, 1550 tokens in / 1800 out (+-20%), every request generating all 1800 (ignore_eos)"},
	"decode-natural": {Name: "decode-natural", Mix: "decode-heavy", Outputs: "natural",
		Args:     append(slices.Clone(decodeArgs), "--ignore-eos=false"),
		Describe: "random, 1550 tokens in (+-20%), max_tokens 1800 (+-20%) with natural stops (median 200 tokens)"},
	"prefill-fixed": {Name: "prefill-fixed", Mix: "prefill-heavy", Outputs: "fixed",
		Args: []string{"--dataset-name", "random", "--random-input-len", "4000", "--random-output-len", "200",
			"--random-range-ratio", "0.2", "--random-prefix-len", "10", "--endpoint", "/v1/completions", "--ignore-eos"},
		Describe: "random, 4000 tokens in / 200 out (+-20%, ignore_eos)"},
	"prefill-natural": {Name: "prefill-natural", Mix: "prefill-heavy", Outputs: "natural",
		Args: []string{"--dataset-name", "random", "--random-input-len", "3000", "--random-output-len", "400",
			"--random-range-ratio", "0.2", "--random-prefix-len", "10", "--endpoint", "/v1/completions", "--ignore-eos=false"},
		Describe: "random, 3000 tokens in (+-20%), max_tokens 400 (+-20%) with natural stops (median 200 tokens)"},
	"shared-prefix-fixed": {Name: "shared-prefix-fixed", Mix: "prefill-heavy", Outputs: "fixed", MinPrompts: 600,
		Args: []string{"--dataset-name", "shared_prefix", "--shared-prefix-num-groups", "100", "--shared-prefix-prompts-per-group", "20",
			"--shared-prefix-system-prompt-len", "6000", "--shared-prefix-question-len", "400", "--shared-prefix-output-len", "200",
			"--endpoint", "/v1/completions", "--ignore-eos"},
		Describe: "100 system prompts of 6000 tokens (as much as the Qwen2.5-7B fleet's KV cache holds) + 400-token questions, 200 tokens out (ignore_eos)"},
	"sessions-natural": {Name: "sessions-natural", Mix: "multi-turn", Outputs: "natural", Turns: 6,
		Args: []string{"--dataset-name", "multi_turn", "--multi-turn-num-turns", "6", "--multi-turn-num-documents", "16",
			"--multi-turn-system-prompt-len", "4000", "--multi-turn-user-len", "100", "--multi-turn-output-len", "300",
			"--multi-turn-range-ratio", "0.2", "--endpoint", "/v1/chat/completions", "--ignore-eos=false"},
		// A sixth turn's history stays within max_model_len (8192): a
		// 4800-token document, 5 questions and answers of at most 120 and
		// 360 tokens, the question and max_tokens: 7680 and the template.
		Describe: "chat sessions of 6 turns, each opening with one of 16 shared documents of 3200-4800 tokens; 80-120-token questions, max_tokens 300 (+-20%) with natural stops"},
}

// A Cell is one workload shape on one fleet at one load.
type Cell struct {
	Name  string
	Fleet string // a preset name
	Shape string // a GridShapes key
	// Load is the concurrency relative to the knee (1: at it).
	Load float64
	// Why the cell is in the grid.
	Why string
}

// Saturated cells are at or past the knee.
func (c Cell) Saturated() bool { return c.Load >= 1 }

// KneeKey names the sweep a cell's load refers to: a knee belongs to a
// fleet and a workload shape.
func (c Cell) KneeKey() string { return c.Fleet + "/" + c.Shape }

// GridCells is the default selection. Coverage: fleets qwen (A, B, C, H,
// J), llama (F, G), vllmsim-98k (D, E, I); loads 0.8 (A, G), 1 (B, E, H,
// I), 1.2 (D, F, J), 1.5 (C), 2 (the deep cell); fixed outputs (A-D, F, H, J), natural (E,
// G, I); decode-heavy (A-F), prefill-heavy (G, H, J), multi-turn (I).
var GridCells = []Cell{
	{Name: "qwen-decode-below", Fleet: "qwen2.5-7b-a10", Shape: "decode-fixed", Load: 0.8,
		Why: "below the knee, round robin's rotation keeps every pod at the prefill floor; LLM-aware routing lost here (0.8x at concurrency 200) and must not"},
	{Name: "qwen-decode-knee", Fleet: "qwen2.5-7b-a10", Shape: "decode-fixed", Load: 1,
		Why: "the knee of the reference shape, where LLM-aware routing has won 2.4-2.8x at TTFT p90"},
	{Name: "qwen-decode-past", Fleet: "qwen2.5-7b-a10", Shape: "decode-fixed", Load: 1.5,
		Why: "well past the knee: every pod's KV fills and drains together (in phase) and the gain fell to 1.3x"},
	{Name: "98k-decode-past", Fleet: "vllmsim-98k", Shape: "decode-fixed", Load: 1.2,
		Why: "the fleet whose KV binds, just past its knee"},
	{Name: "98k-decode-deep", Fleet: "vllmsim-98k", Shape: "decode-fixed", Load: 2,
		Why: "the independent run's regime (200 in flight on the fleet whose KV binds, KV near full and preempting): the fleet in phase under round robin and DEFAULT, where the open peer won 6x after the first wave"},
	{Name: "98k-natural-knee", Fleet: "vllmsim-98k", Shape: "decode-natural", Load: 1,
		Why: "natural stops: max_tokens over-estimates the output about 5x, so a KV trajectory bounded by max_tokens is wrong"},
	{Name: "llama-decode-past", Fleet: "llama-2-7b-a10", Shape: "decode-fixed", Load: 1.2,
		Why: "a tenth of the Qwen fleet's KV per pod (about 4 of these requests): KV binds at a few requests and preemption decides"},
	{Name: "llama-prefill-below", Fleet: "llama-2-7b-a10", Shape: "prefill-natural", Load: 0.8,
		Why: "prefill-heavy with natural stops below the knee on the small-KV fleet: nothing to gain, so no policy may lose"},
	{Name: "qwen-shared-prefix-knee", Fleet: "qwen2.5-7b-a10", Shape: "shared-prefix-fixed", Load: 1,
		Why: "shared prefixes that fill the fleet's cache: DEFAULT was 1.30x worse than round robin at TTFT p90 here"},
	{Name: "98k-sessions-knee", Fleet: "vllmsim-98k", Shape: "sessions-natural", Load: 1,
		Why: "multi-turn sessions over shared documents: prefix affinity beat the peer on latency but fell to 0.96x round robin's throughput by keeping sessions on one server"},
	{Name: "qwen-prefill-past", Fleet: "qwen2.5-7b-a10", Shape: "prefill-fixed", Load: 1.2,
		Why: "prefill-bound work past the knee, where a prefill-aware router has reported 2-2.9x round robin"},
}

// CheckCells checks a selection: names unique, fleets and shapes known,
// loads positive, and every axis value covered.
func CheckCells(cells []Cell) error {
	seen := map[string]bool{}
	covered := map[string]bool{}
	for _, c := range cells {
		if c.Name == "" || seen[c.Name] {
			return fmt.Errorf("cell name %q empty or repeated", c.Name)
		}
		seen[c.Name] = true
		sh, ok := GridShapes[c.Shape]
		if !ok {
			return fmt.Errorf("cell %s: unknown shape %q", c.Name, c.Shape)
		}
		if _, ok := fleet.Presets[c.Fleet]; !ok {
			return fmt.Errorf("cell %s: unknown fleet %q", c.Name, c.Fleet)
		}
		if !(c.Load > 0) || math.IsInf(c.Load, 0) {
			return fmt.Errorf("cell %s: load %v must be > 0", c.Name, c.Load)
		}
		covered["fleet "+c.Fleet] = true
		covered[fmt.Sprintf("load %g", c.Load)] = true
		covered["outputs "+sh.Outputs] = true
		covered["mix "+sh.Mix] = true
	}
	var missing []string
	for _, f := range GridFleets {
		missing = appendIfMissing(missing, covered, "fleet "+f)
	}
	for _, l := range GridLoads {
		missing = appendIfMissing(missing, covered, fmt.Sprintf("load %g", l))
	}
	for _, o := range GridOutputs {
		missing = appendIfMissing(missing, covered, "outputs "+o)
	}
	for _, m := range GridMixes {
		missing = appendIfMissing(missing, covered, "mix "+m)
	}
	if len(missing) > 0 {
		return fmt.Errorf("the cells leave out %s", strings.Join(missing, ", "))
	}
	return nil
}

func appendIfMissing(out []string, covered map[string]bool, k string) []string {
	if !covered[k] {
		out = append(out, k)
	}
	return out
}

// SelectCells picks cells by name from GridCells ("" or "all": every one).
func SelectCells(names string) ([]Cell, error) {
	if names == "" || names == "all" {
		return slices.Clone(GridCells), nil
	}
	var out []Cell
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		i := slices.IndexFunc(GridCells, func(c Cell) bool { return c.Name == n })
		if i < 0 {
			var all []string
			for _, c := range GridCells {
				all = append(all, c.Name)
			}
			return nil, fmt.Errorf("unknown cell %q (%s)", n, strings.Join(all, ", "))
		}
		out = append(out, GridCells[i])
	}
	return out, nil
}

// CellPrompts is how many requests a cell (or a sweep level) sends at
// concurrency c: waves x c, at least minPrompts (and the shape's own
// minimum), times scale. A multi-turn
// shape sends whole sessions, at least 1.5 c of them, so that c sessions can
// be in flight while others wait for their previous turn.
func CellPrompts(sh Shape, c, waves, minPrompts int, scale float64) int {
	n := max(minPrompts, sh.MinPrompts, waves*c)
	if sh.Turns > 0 {
		sessions := max((n+sh.Turns-1)/sh.Turns, int(math.Ceil(1.5*float64(c))))
		n = sessions * sh.Turns
	}
	return max(1, int(math.Round(float64(n)*scale)))
}

// CellConcurrency is the cell's concurrency for a knee.
func CellConcurrency(load float64, knee int) int {
	return max(1, int(math.Round(load*float64(knee))))
}
