package deploycheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/vllmsim"
	"github.com/meshllm/meshllm/filter/stats"
)

// knownSeries is every Prometheus series name the dashboard may query: what
// the filter defines (from filter/stats' source), what picker-svc registers
// (from its metrics source) and what vLLM exposes (the simulator's real
// exposition, both metric generations).
func knownSeries(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	addHistogram := func(n string) {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			known[n+s] = true
		}
	}
	// Filter: constants `Prefix + "..."`. Its histograms are the *_ms ones
	// (Envoy exposes histograms as _bucket/_sum/_count, counters as named).
	for _, n := range filterMetricNames(t) {
		if strings.HasSuffix(n, "_ms") {
			addHistogram(n)
		} else {
			known[n] = true
		}
	}
	// picker-svc: string literals meshllm_picker_*, histograms when inside
	// a HistogramOpts literal.
	fset := token.NewFileSet()
	hist := map[string]bool{}
	for _, file := range []string{"server/metrics.go", "decision/metrics.go", "decision/usage.go"} {
		f, err := parser.ParseFile(fset, "../../picker-svc/internal/"+file, nil, 0)
		require.NoError(t, err)
		inspectPickerMetrics(f, known, hist)
	}
	require.NotEmpty(t, hist)
	for h := range hist {
		delete(known, h)
		addHistogram(h)
	}
	// vLLM: scrape the simulator, v1 and v0 names.
	for _, v0 := range []bool{false, true} {
		srv, err := vllmsim.NewServer(vllmsim.Config{MetricsV0: v0})
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		tp := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := tp.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
		require.NoError(t, err)
		for name, fam := range fams {
			if fam.GetType() == dto.MetricType_HISTOGRAM {
				addHistogram(name)
			} else {
				known[name] = true
			}
		}
	}
	return known
}

func filterMetricNames(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../filter/stats/*.go")
	require.NoError(t, err)
	var names []string
	for _, p := range files {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			if be, ok := n.(*ast.BinaryExpr); ok && be.Op == token.ADD {
				if id, ok := be.X.(*ast.Ident); ok && id.Name == "Prefix" {
					if s, ok := be.Y.(*ast.BasicLit); ok {
						v, _ := strconv.Unquote(s.Value)
						names = append(names, stats.Prefix+v)
					}
				}
			}
			return true
		})
	}
	require.Contains(t, names, stats.PromptTokens)
	// The *_ms rule above must hold for the histograms that exist.
	for _, h := range []string{stats.TTFBMillis, stats.DurationMillis, stats.PickMillis} {
		require.True(t, strings.HasSuffix(h, "_ms"), h)
	}
	return names
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames returns the series names a PromQL expression selects.
func metricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, " ")
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRanges.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " ")
		if promKeywords[strings.ToLower(id)] || strings.HasPrefix(rest, "(") {
			continue // operator keyword or function call
		}
		if loc[0] > 0 && (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.' || e[loc[0]-1] == '$') {
			continue // exponent of a number, or a variable
		}
		out = append(out, id)
	}
	return out
}

func TestMetricNamesExtractor(t *testing.T) {
	require.Equal(t, []string{"a_bucket"}, metricNames(`histogram_quantile(0.9, sum by (le, model) (rate(a_bucket{x="y{z}"}[$__rate_interval])))`))
	require.Equal(t, []string{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}, metricNames(`max by (instance) (vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc)`))
	require.Equal(t, []string{"x", "y"}, metricNames(`sum(rate(x[5m])) / sum without (a) (y) * 1e3`))
}

type dashboard struct {
	Title  string `json:"title"`
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// checkDashboard returns the series the dashboard queries and an error for
// any it queries that nobody exposes.
func checkDashboard(raw []byte, known map[string]bool) (map[string]bool, error) {
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	used := map[string]bool{}
	var bad []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			bad = append(bad, fmt.Sprintf("panel %q has no query", p.Title))
		}
		for _, tg := range p.Targets {
			names := metricNames(tg.Expr)
			if len(names) == 0 {
				bad = append(bad, fmt.Sprintf("panel %q: no metric in %q", p.Title, tg.Expr))
			}
			for _, n := range names {
				used[n] = true
				if !known[n] {
					bad = append(bad, fmt.Sprintf("panel %q: %s is exposed by neither the filter, picker-svc nor vLLM", p.Title, n))
				}
			}
		}
	}
	if len(bad) > 0 {
		return used, fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return used, nil
}

func TestGrafanaDashboard(t *testing.T) {
	known := knownSeries(t)
	raw := read(t, "istio/dashboards/meshllm.json")
	used, err := checkDashboard(raw, known)
	require.NoError(t, err)
	// It shows what the issue asks for: tokens, requests by class, TTFB,
	// pick outcomes, vLLM queue and KV cache.
	for _, want := range []string{stats.PromptTokens, stats.CompletionTokens, stats.Requests, stats.TTFBMillis + "_bucket",
		stats.Picks, "meshllm_picker_picks_total", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"} {
		require.True(t, used[want], "dashboard does not query %s", want)
	}

	_, err = checkDashboard(bytes.Replace(raw, []byte("asm_llm_proxy_prompt_tokens["), []byte("asm_llm_proxy_prompt_token["), 1), known)
	require.ErrorContains(t, err, "asm_llm_proxy_prompt_token ")
	_, err = checkDashboard(bytes.Replace(raw, []byte("vllm:num_requests_waiting"), []byte("vllm:num_requests_queued"), 1), known)
	require.ErrorContains(t, err, "vllm:num_requests_queued")
	_, err = checkDashboard(bytes.Replace(raw, []byte("asm_llm_proxy_time_to_first_byte_ms_bucket"), []byte("asm_llm_proxy_time_to_first_byte_ms_total"), 1), known)
	require.ErrorContains(t, err, "_ms_total")
}

// inspectPickerMetrics adds the picker's metric names in f to known
// (string literals meshllm_picker_*) and hist (Name of a HistogramOpts).
func inspectPickerMetrics(f *ast.File, known, hist map[string]bool) {
	ast.Inspect(f, func(n ast.Node) bool {
		if cl, ok := n.(*ast.CompositeLit); ok {
			if sel, ok := cl.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "HistogramOpts" {
				for _, e := range cl.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok && fmt.Sprint(kv.Key) == "Name" {
						if s, ok := kv.Value.(*ast.BasicLit); ok {
							v, _ := strconv.Unquote(s.Value)
							hist[v] = true
						}
					}
				}
			}
		}
		if s, ok := n.(*ast.BasicLit); ok && s.Kind == token.STRING {
			if v, _ := strconv.Unquote(s.Value); strings.HasPrefix(v, "meshllm_picker_") {
				known[v] = true
			}
		}
		return true
	})
}
