package deploycheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/internal/metricnames"
	"github.com/meshllm/meshllm/internal/testsupport/envoystats"
)

// The dashboard's queries may name only series that something emits:
//   - the filter: internal/metricnames' names as Envoy's /stats/prometheus
//     renders a Wasm stat (the wasmcustom namespace stripped, a counter
//     under its name, a histogram as _bucket, _sum and _count);
//   - picker-svc: what its registry serves after both doors were used
//     (picker_test.go);
//   - vLLM: the simulator's exposition, both metric generations.

// filterSeries are the Prometheus names of the filter's metrics.
func filterSeries() map[string]bool {
	known := map[string]bool{}
	prom := func(name string) string { return envoystats.PrometheusName(envoystats.WasmNamespace + "." + name) }
	for _, c := range metricnames.Counters {
		known[prom(c)] = true
	}
	for _, h := range metricnames.Histograms {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			known[prom(h)+s] = true
		}
	}
	return known
}

// seriesOf are the sample names a page's metric families expose.
func seriesOf(fams map[string]*dto.MetricFamily) map[string]bool {
	known := map[string]bool{}
	for name, fam := range fams {
		switch fam.GetType() {
		case dto.MetricType_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				known[name+s] = true
			}
		case dto.MetricType_SUMMARY:
			known[name], known[name+"_sum"], known[name+"_count"] = true, true, true
		default:
			known[name] = true
		}
	}
	return known
}

// grafanaIntervals are the Grafana variables that stand for a range; the
// queries use no other variable outside a string.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// metricNames parses a PromQL expression with Prometheus' own parser and
// returns the series names its selectors name.
func metricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaIntervals.Replace(expr))
	if err != nil {
		return nil, err
	}
	var out []string
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				bad = fmt.Errorf("selector %s names no metric", vs)
			}
			out = append(out, vs.Name)
		}
		return nil
	})
	return out, bad
}

func TestMetricNamesExtractor(t *testing.T) {
	names, err := metricNames(`histogram_quantile(0.9, sum by (le, model) (rate(a_bucket{x="y{z}"}[$__rate_interval])))`)
	require.NoError(t, err)
	require.Equal(t, []string{"a_bucket"}, names)
	names, err = metricNames(`max by (instance) (vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc)`)
	require.NoError(t, err)
	require.Equal(t, []string{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}, names)
	names, err = metricNames(`sum(rate(x[5m])) / sum without (a) (y) * 1e3 > bool on (b) group_left z offset 1m`)
	require.NoError(t, err)
	require.Equal(t, []string{"x", "y", "z"}, names)
	_, err = metricNames(`sum(rate(x[5m])`)
	require.Error(t, err, "unbalanced")
	_, err = metricNames(`rate({job="a"}[5m])`)
	require.ErrorContains(t, err, "names no metric")
}

type panel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// checkDashboard returns the series the dashboard queries and an error for
// each query that does not parse or names a series nobody emits.
func checkDashboard(raw []byte, known map[string]bool) (map[string]bool, error) {
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	used := map[string]bool{}
	var bad []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				bad = append(bad, fmt.Sprintf("panel %q has no query", p.Title))
			}
			for _, tg := range p.Targets {
				names, err := metricNames(tg.Expr)
				if err != nil {
					bad = append(bad, fmt.Sprintf("panel %q: %q: %v", p.Title, tg.Expr, err))
				}
				for _, n := range names {
					used[n] = true
					if !known[n] {
						bad = append(bad, fmt.Sprintf("panel %q: %s is emitted by neither the filter, picker-svc nor vLLM", p.Title, n))
					}
				}
			}
		}
	}
	walk(d.Panels)
	if len(bad) > 0 {
		return used, fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return used, nil
}

func TestGrafanaDashboard(t *testing.T) {
	known := filterSeries()
	for n := range seriesOf(pickerFamilies(t)) {
		known[n] = true
	}
	for n := range vllmSeries(t) {
		known[n] = true
	}
	raw := read(t, "istio/dashboards/meshllm.json")
	used, err := checkDashboard(raw, known)
	require.NoError(t, err)
	// It shows both paths' tokens, requests and latency (one set of names),
	// the picker's decisions (picks by outcome and by pod, pick latency,
	// fallbacks, KV cache and queue per pod) and vLLM's own view.
	for _, want := range []string{metricnames.PromptTokens, metricnames.CompletionTokens, metricnames.Requests,
		metricnames.UsageMissing, metricnames.TTFBMillis + "_bucket", metricnames.DurationMillis + "_bucket",
		metricnames.Picks, metricnames.PickerErrors, metricnames.PickMillis + "_bucket",
		"meshllm_picker_picks_total", "meshllm_picker_endpoint_picks_total", "meshllm_picker_pick_duration_seconds_bucket",
		"meshllm_picker_endpoint_kv_cache_usage", "meshllm_picker_endpoint_waiting",
		"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"} {
		require.True(t, used[want], "dashboard does not query %s", want)
	}
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("%d series queried: %s", len(names), strings.Join(names, " "))

	// The check can fail: a misspelt series, a counter given a suffix
	// Envoy does not add, a histogram without _bucket, a vLLM name that
	// does not exist, a query that does not parse.
	for _, c := range []struct{ from, to, want string }{
		{"asm_llm_proxy_prompt_tokens[", "asm_llm_proxy_prompt_token[", "asm_llm_proxy_prompt_token "},
		{"asm_llm_proxy_prompt_tokens[", "asm_llm_proxy_prompt_tokens_total[", "asm_llm_proxy_prompt_tokens_total "},
		{"asm_llm_proxy_time_to_first_byte_ms_bucket", "asm_llm_proxy_time_to_first_byte_ms", "asm_llm_proxy_time_to_first_byte_ms "},
		{"vllm:num_requests_waiting", "vllm:num_requests_queued", "vllm:num_requests_queued"},
		{"meshllm_picker_endpoint_picks_total", "meshllm_picker_endpoint_pick_total", "meshllm_picker_endpoint_pick_total"},
		{"[$__rate_interval]", "[$__rate_interval", "unexpected"},
	} {
		require.True(t, bytes.Contains(raw, []byte(c.from)), c.from)
		_, err = checkDashboard(bytes.ReplaceAll(raw, []byte(c.from), []byte(c.to)), known)
		require.ErrorContains(t, err, c.want, "%s -> %s", c.from, c.to)
	}
}

// The picker emits the filter's series on the ext_proc path with the
// filter's kinds and labels (filter/metrics.go defines the same label sets).
func TestPickerEmitsTheFilterSeries(t *testing.T) {
	fams := pickerFamilies(t)
	labels := map[string][]string{
		metricnames.PromptTokens:     {metricnames.TagModel, metricnames.TagTargetModel},
		metricnames.CompletionTokens: {metricnames.TagModel, metricnames.TagTargetModel},
		metricnames.Requests:         {metricnames.TagModel, metricnames.TagResponseClass},
		metricnames.TTFBMillis:       {metricnames.TagModel},
		metricnames.DurationMillis:   {metricnames.TagModel},
		metricnames.UsageMissing:     {metricnames.TagReason},
		metricnames.LabelOverflow:    nil,
	}
	for name, want := range labels {
		fam, ok := fams[name]
		require.True(t, ok, "picker-svc does not emit %s", name)
		kind := dto.MetricType_COUNTER
		if slices.Contains(metricnames.Histograms, name) {
			kind = dto.MetricType_HISTOGRAM
		}
		require.Equal(t, kind, fam.GetType(), name)
		for _, m := range fam.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				if l.GetName() != "le" {
					got = append(got, l.GetName())
				}
			}
			require.ElementsMatch(t, want, got, name)
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, metricnames.Prefix) {
			require.True(t, slices.Contains(metricnames.Counters, name) || slices.Contains(metricnames.Histograms, name),
				"%s is not one of the filter's names", name)
		}
	}
}
