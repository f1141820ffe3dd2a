package compare

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/bench"
)

// The scoreboard: per cell, each policy's figures as ratios to round
// robin's, then the worst cell and the geometric means over all cells and
// over the saturated ones. A ratio is per repetition (repetition k of a
// policy against repetition k of round robin, which ran next to it in the
// alternating order), reported as the median of the repetitions with their
// min-max.

// scoreMetric is one column: a summary.json key.
type scoreMetric struct {
	Key, Label string
	// HigherBetter: throughput; the rest are latencies.
	HigherBetter bool
}

var scoreMetrics = []scoreMetric{
	{Key: "median_ttft_ms", Label: "TTFT p50"},
	{Key: "p90_ttft_ms", Label: "TTFT p90"},
	{Key: "p99_ttft_ms", Label: "TTFT p99"},
	{Key: "p90_ttft_after_wave_ms", Label: "TTFT p90 after the first wave"},
	{Key: "output_throughput", Label: "output tok/s", HigherBetter: true},
	{Key: "max_ttft_ms", Label: "slowest request's TTFT"},
}

// CellResult is one cell's runs: per policy, each repetition's numeric
// summary keys, in repetition order.
type CellResult struct {
	Cell        Cell
	Knee        int
	Concurrency int
	Prompts     int
	WallSecs    float64
	Figures     map[string][]map[string]float64
}

// figuresFromSummary reads a summary.json's numeric keys per policy and
// repetition.
func figuresFromSummary(b []byte) (map[string][]map[string]float64, error) {
	if !gjson.ValidBytes(b) {
		return nil, fmt.Errorf("not valid JSON")
	}
	pols := gjson.GetBytes(b, "policies")
	if !pols.IsObject() {
		return nil, fmt.Errorf("no policies")
	}
	out := map[string][]map[string]float64{}
	pols.ForEach(func(p, list gjson.Result) bool {
		for _, r := range list.Array() {
			m := map[string]float64{}
			r.ForEach(func(k, v gjson.Result) bool {
				if v.Type == gjson.Number {
					m[k.String()] = v.Float()
				}
				return true
			})
			out[p.String()] = append(out[p.String()], m)
		}
		return true
	})
	return out, nil
}

// Num is a figure that writes NaN (no data) as null and keeps 4
// significant digits (scoreboard.json stays small and readable).
type Num float64

// MarshalJSON implements json.Marshaler.
func (n Num) MarshalJSON() ([]byte, error) {
	x := float64(n)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return []byte("null"), nil
	}
	if x != 0 {
		e := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(x))))
		x = math.Round(x*e) / e
	}
	return []byte(strconv.FormatFloat(x, 'f', -1, 64)), nil
}

// UnmarshalJSON reads a number or null (NaN).
func (n *Num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Num(math.NaN())
		return nil
	}
	x, err := strconv.ParseFloat(string(b), 64)
	*n = Num(x)
	return err
}

// Spread is the median and range of a figure across repetitions.
type Spread struct {
	Median Num `json:"median"`
	Min    Num `json:"min"`
	Max    Num `json:"max"`
}

func spreadNums(xs []float64) Spread {
	var ok []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			ok = append(ok, x)
		}
	}
	s := spreadOf(ok)
	return Spread{Num(s.Median), Num(s.Min), Num(s.Max)}
}

// pairedRatios is policy / baseline for each repetition both have.
func pairedRatios(base, pol []map[string]float64, key string) []float64 {
	byRep := map[int]float64{}
	for i, b := range base {
		byRep[repOf(b, i)] = value(b, key)
	}
	var out []float64
	for i, p := range pol {
		b, ok := byRep[repOf(p, i)]
		v := value(p, key)
		if !ok || math.IsNaN(b) || math.IsNaN(v) || b <= 0 {
			continue
		}
		out = append(out, v/b)
	}
	return out
}

func repOf(m map[string]float64, i int) int {
	if r, ok := m["repetition"]; ok {
		return int(r)
	}
	return i + 1
}

func value(m map[string]float64, key string) float64 {
	if v, ok := m[key]; ok {
		return v
	}
	return math.NaN()
}

// geomean is the geometric mean of the positive, non-NaN xs (NaN if none).
func geomean(xs []float64) float64 {
	var sum float64
	n := 0
	for _, x := range xs {
		if x > 0 && !math.IsNaN(x) && !math.IsInf(x, 0) {
			sum += math.Log(x)
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return math.Exp(sum / float64(n))
}

// CellScore is one cell of the scoreboard.
type CellScore struct {
	Name        string  `json:"name"`
	Fleet       string  `json:"fleet"`
	Shape       string  `json:"shape"`
	Load        float64 `json:"load"`
	Saturated   bool    `json:"saturated"`
	Knee        int     `json:"knee"`
	Concurrency int     `json:"concurrency"`
	Prompts     int     `json:"prompts"`
	WallSecs    Num     `json:"wall_s"`
	// Values: policy -> metric -> spread across repetitions.
	Values map[string]map[string]Spread `json:"values"`
	// Ratios: policy (not the baseline) -> metric -> paired ratios.
	Ratios map[string]map[string]Spread `json:"ratios"`
}

// WorstCell is the cell where a policy's ratio was worst.
type WorstCell struct {
	Cell  string `json:"cell"`
	Ratio Num    `json:"ratio"`
}

// Target is one of the routing targets checked cell by cell.
type Target struct {
	Name    string   `json:"name"`
	Met     int      `json:"met"`
	Of      int      `json:"of"`
	Failing []string `json:"failing,omitempty"`
}

// PolicyScore is a policy's summary over the cells.
type PolicyScore struct {
	GeoMean          map[string]Num       `json:"geomean"`
	GeoMeanSaturated map[string]Num       `json:"geomean_saturated"`
	Worst            map[string]WorstCell `json:"worst"`
	Targets          []Target             `json:"targets"`
}

// Scoreboard is scoreboard.json.
type Scoreboard struct {
	Baseline string                 `json:"baseline"`
	Policies []string               `json:"policies"`
	Cells    []CellScore            `json:"cells"`
	Overall  map[string]PolicyScore `json:"overall"`
}

// BuildScoreboard scores the cells' results against the baseline policy.
func BuildScoreboard(results []CellResult, policies []string, baseline string) Scoreboard {
	sb := Scoreboard{Baseline: baseline, Policies: policies, Overall: map[string]PolicyScore{}}
	for _, r := range results {
		cs := CellScore{Name: r.Cell.Name, Fleet: r.Cell.Fleet, Shape: r.Cell.Shape, Load: r.Cell.Load, Saturated: r.Cell.Saturated(),
			Knee: r.Knee, Concurrency: r.Concurrency, Prompts: r.Prompts, WallSecs: Num(r.WallSecs),
			Values: map[string]map[string]Spread{}, Ratios: map[string]map[string]Spread{}}
		for _, p := range policies {
			cs.Values[p] = map[string]Spread{}
			for _, m := range scoreMetrics {
				var xs []float64
				for _, f := range r.Figures[p] {
					xs = append(xs, value(f, m.Key))
				}
				cs.Values[p][m.Key] = spreadNums(xs)
			}
			if p == baseline {
				continue
			}
			cs.Ratios[p] = map[string]Spread{}
			for _, m := range scoreMetrics {
				cs.Ratios[p][m.Key] = spreadNums(pairedRatios(r.Figures[baseline], r.Figures[p], m.Key))
			}
		}
		sb.Cells = append(sb.Cells, cs)
	}
	for _, p := range policies {
		if p != baseline {
			sb.Overall[p] = scorePolicy(sb.Cells, p)
		}
	}
	return sb
}

func scorePolicy(cells []CellScore, p string) PolicyScore {
	ps := PolicyScore{GeoMean: map[string]Num{}, GeoMeanSaturated: map[string]Num{}, Worst: map[string]WorstCell{}}
	for _, m := range scoreMetrics {
		var all, sat []float64
		worst := WorstCell{Ratio: Num(math.NaN())}
		for _, c := range cells {
			x := float64(c.Ratios[p][m.Key].Median)
			all = append(all, x)
			if c.Saturated {
				sat = append(sat, x)
			}
			if math.IsNaN(x) {
				continue
			}
			w := float64(worst.Ratio)
			if math.IsNaN(w) || (m.HigherBetter && x < w) || (!m.HigherBetter && x > w) {
				worst = WorstCell{Cell: c.Name, Ratio: Num(x)}
			}
		}
		ps.GeoMean[m.Key] = Num(geomean(all))
		ps.GeoMeanSaturated[m.Key] = Num(geomean(sat))
		ps.Worst[m.Key] = worst
	}
	ps.Targets = checkTargets(cells, p, ps)
	return ps
}

// checkTargets counts the cells where the policy meets each target: in
// every cell TTFT p90 no worse than round robin's, p99 at most 1.05x and
// throughput at least round robin's; in saturated cells TTFT p90 at least
// 2.5x lower (3x as the geometric mean) and, after the first wave, 3x lower.
func checkTargets(cells []CellScore, p string, ps PolicyScore) []Target {
	type rule struct {
		name      string
		key       string
		saturated bool
		ok        func(float64) bool
	}
	rules := []rule{
		{"TTFT p90 <= round robin's", "p90_ttft_ms", false, func(x float64) bool { return x <= 1 }},
		{"TTFT p99 <= 1.05x round robin's", "p99_ttft_ms", false, func(x float64) bool { return x <= 1.05 }},
		{"output throughput >= round robin's", "output_throughput", false, func(x float64) bool { return x >= 1 }},
		{"saturated: TTFT p90 <= 0.4x round robin's", "p90_ttft_ms", true, func(x float64) bool { return x <= 0.4 }},
		{"saturated: TTFT p90 after the first wave <= 1/3 of round robin's", "p90_ttft_after_wave_ms", true, func(x float64) bool { return x <= 1.0/3 }},
	}
	var out []Target
	for _, r := range rules {
		t := Target{Name: r.name}
		for _, c := range cells {
			if r.saturated && !c.Saturated {
				continue
			}
			t.Of++
			if x := float64(c.Ratios[p][r.key].Median); !math.IsNaN(x) && r.ok(x) {
				t.Met++
			} else {
				t.Failing = append(t.Failing, c.Name)
			}
		}
		out = append(out, t)
	}
	g := float64(ps.GeoMeanSaturated["p90_ttft_ms"])
	t := Target{Name: "saturated: geometric mean of TTFT p90 <= 1/3 of round robin's", Of: 1}
	if !math.IsNaN(g) && g <= 1.0/3 {
		t.Met = 1
	} else {
		t.Failing = []string{"geometric mean " + num(g)}
		if math.IsNaN(g) {
			t.Failing = []string{"no saturated cell"}
		}
	}
	return append(out, t)
}

// fmtSpread is "median (min–max)", or the median alone when they agree.
func fmtSpread(s Spread) string {
	if math.IsNaN(float64(s.Median)) {
		return "-"
	}
	if s.Min == s.Max {
		return num(float64(s.Median))
	}
	return fmt.Sprintf("%s (%s–%s)", num(float64(s.Median)), num(float64(s.Min)), num(float64(s.Max)))
}

// Markdown writes the scoreboard's tables: per policy, a row per cell, the
// geometric means and the worst cell, then the targets.
func (sb Scoreboard) Markdown(w io.Writer) {
	for _, p := range sb.Policies {
		if p == sb.Baseline {
			continue
		}
		fmt.Fprintf(w, "### %s / %s\n\n", p, sb.Baseline)
		fmt.Fprintf(w, "| cell | load | concurrency | %s TTFT p90 (ms) |", sb.Baseline)
		for _, m := range scoreMetrics {
			fmt.Fprintf(w, " %s |", m.Label)
		}
		fmt.Fprintf(w, " slowest request (ms), %s / %s |\n", p, sb.Baseline)
		fmt.Fprintf(w, "|---|---:|---:|---:|%s---:|\n", strings.Repeat("---:|", len(scoreMetrics)))
		for _, c := range sb.Cells {
			mark := ""
			if c.Saturated {
				mark = " (saturated)"
			}
			fmt.Fprintf(w, "| %s%s | %gx | %d | %s |", c.Name, mark, c.Load, c.Concurrency, fmtSpread(c.Values[sb.Baseline]["p90_ttft_ms"]))
			for _, m := range scoreMetrics {
				fmt.Fprintf(w, " %s |", fmtSpread(c.Ratios[p][m.Key]))
			}
			fmt.Fprintf(w, " %s / %s |\n", num(float64(c.Values[p]["max_ttft_ms"].Max)), num(float64(c.Values[sb.Baseline]["max_ttft_ms"].Max)))
		}
		o := sb.Overall[p]
		for _, row := range []struct {
			label string
			v     map[string]Num
		}{{"geometric mean, all cells", o.GeoMean}, {"geometric mean, saturated cells", o.GeoMeanSaturated}} {
			fmt.Fprintf(w, "| **%s** | | | |", row.label)
			for _, m := range scoreMetrics {
				fmt.Fprintf(w, " %s |", num(float64(row.v[m.Key])))
			}
			fmt.Fprintln(w, " |")
		}
		fmt.Fprint(w, "| **worst cell** | | | |")
		for _, m := range scoreMetrics {
			if wc := o.Worst[m.Key]; wc.Cell != "" {
				fmt.Fprintf(w, " %s (%s) |", num(float64(wc.Ratio)), wc.Cell)
			} else {
				fmt.Fprint(w, " - |")
			}
		}
		fmt.Fprintln(w, " |")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | met | where not |")
		fmt.Fprintln(w, "|---|---:|---|")
		for _, t := range o.Targets {
			fmt.Fprintf(w, "| %s | %d of %d | %s |\n", t.Name, t.Met, t.Of, strings.Join(t.Failing, ", "))
		}
		fmt.Fprintln(w)
	}
}

// cellResultFromSummary builds a cell's result from its summary.json and
// the grid's record of the cell (cell.json).
func cellResultFromSummary(c Cell, rec cellRecord, summary []byte) (CellResult, error) {
	figs, err := figuresFromSummary(summary)
	if err != nil {
		return CellResult{}, err
	}
	var wall float64
	for _, list := range figs {
		for _, f := range list {
			wall += value(f, "wall_duration")
		}
	}
	return CellResult{Cell: c, Knee: rec.Knee, Concurrency: rec.Concurrency, Prompts: rec.Prompts, WallSecs: wall, Figures: figs}, nil
}

// resultFigures is a run's numeric summary keys (as figuresFromSummary
// reads them back).
func resultFigures(o bench.Object) map[string]float64 {
	m := map[string]float64{}
	for _, f := range o {
		switch v := f.Value.(type) {
		case float64:
			m[f.Key] = v
		case int:
			m[f.Key] = float64(v)
		}
	}
	return m
}

// sortedKeys is m's keys, sorted.
func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
