package compare

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/bench"
)

// summary.json is committed beside the reports, so it keeps only
// aggregates: vllm bench's saved result carries per-request lists
// (latencies and queue_times always; ttfts, itls, start_times,
// generated_texts, ... with --save-detailed), about 1 MB a report at 3,000
// prompts. Every list in a saved result is per request, so "compact" is
// "no arrays"; the lists go to samples.json, which is not committed.

// splitResult returns the result without its array-valued keys, and those
// keys on their own.
func splitResult(o bench.Object) (compact, perRequest bench.Object) {
	for _, f := range o {
		if isArray(f.Value) {
			perRequest = append(perRequest, f)
		} else {
			compact = append(compact, f)
		}
	}
	return compact, perRequest
}

func isArray(v any) bool {
	switch v := v.(type) {
	case []any, []float64, []int, []string, [][]float64:
		return true
	case json.RawMessage:
		return gjson.ParseBytes(v).IsArray()
	}
	return false
}

// jsonNumber is x for JSON: NaN (a metric with no data, such as the TTFT
// after the first wave of a run that had none) is null.
func jsonNumber(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return x
}

// CompactSummary rewrites a summary.json written before summaries were
// compact: every per-request list is dropped from each policy's results,
// and everything else is kept as written (key order and numbers).
func CompactSummary(b []byte) ([]byte, error) {
	if !gjson.ValidBytes(b) {
		return nil, errors.New("not valid JSON")
	}
	root := gjson.ParseBytes(b)
	pols := root.Get("policies")
	if !root.IsObject() || !pols.IsObject() {
		return nil, errors.New(`not a meshllm-compare summary: want {"workload": ..., "policies": {...}}`)
	}
	var out bench.Object
	var bad error
	root.ForEach(func(k, v gjson.Result) bool {
		if k.String() != "policies" {
			out = append(out, bench.Field{Key: k.String(), Value: json.RawMessage(v.Raw)})
			return true
		}
		var ps bench.Object
		v.ForEach(func(pk, list gjson.Result) bool {
			if !list.IsArray() {
				bad = fmt.Errorf("policy %q: want a list of results", pk.String())
				return false
			}
			results := []bench.Object{}
			for _, r := range list.Array() {
				if !r.IsObject() {
					bad = fmt.Errorf("policy %q: a result is not an object", pk.String())
					return false
				}
				var c bench.Object
				r.ForEach(func(rk, rv gjson.Result) bool {
					if !rv.IsArray() {
						c = append(c, bench.Field{Key: rk.String(), Value: json.RawMessage(rv.Raw)})
					}
					return true
				})
				results = append(results, c)
			}
			ps = append(ps, bench.Field{Key: pk.String(), Value: results})
			return true
		})
		out = append(out, bench.Field{Key: "policies", Value: ps})
		return bad == nil
	})
	if bad != nil {
		return nil, bad
	}
	return marshalSummary(out)
}

// marshalSummary is summary.json's layout: indented by one space.
func marshalSummary(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// compactMain is `meshllm-compare compact FILE...`: it rewrites each
// summary.json in place in the compact form and says how much it saved.
func compactMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, "usage: meshllm-compare compact SUMMARY.json...\n\nRewrites each summary.json without its per-request lists (in place).")
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, path := range args {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(stderr, "meshllm-compare compact:", err)
			return 1
		}
		c, err := CompactSummary(b)
		if err != nil {
			fmt.Fprintf(stderr, "meshllm-compare compact: %s: %v\n", path, err)
			return 1
		}
		if err := os.WriteFile(path, c, 0o644); err != nil {
			fmt.Fprintln(stderr, "meshllm-compare compact:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %d -> %d bytes\n", path, len(b), len(c))
	}
	return 0
}
