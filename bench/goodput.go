package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// goodputMetrics are the request-level metrics --goodput may bound, in the
// order vllm bench checks them (serve.py check_goodput_args, calculate_metrics).
var goodputMetrics = []string{"ttft", "tpot", "e2el"}

// ParseGoodput parses --goodput's KEY:VALUE pairs (milliseconds) as vllm
// bench's parse_goodput and check_goodput_args do: each key one of ttft,
// tpot, e2el, each value a non-negative number.
func ParseGoodput(pairs []string) (map[string]float64, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	slo := map[string]float64{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, ":")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || strings.Contains(v, ":") || err != nil {
			return nil, fmt.Errorf("--goodput %q: want KEY:VALUE, the key a metric name and the value a number of milliseconds", p)
		}
		valid := false
		for _, m := range goodputMetrics {
			valid = valid || m == k
		}
		if !valid {
			return nil, fmt.Errorf("--goodput %q: the metric must be one of %s", p, strings.Join(goodputMetrics, ", "))
		}
		if !(f >= 0) {
			return nil, fmt.Errorf("--goodput %q: the bound must be non-negative", p)
		}
		slo[k] = f
	}
	return slo, nil
}

// withinSLO reports whether one successful request meets every bound (ms)
// of slo, as vllm bench's calculate_metrics judges it: TTFT, TPOT (0 for a
// request of at most one output token) and E2EL, each in seconds, at most
// its bound.
func withinSLO(slo map[string]float64, ttft, tpot, e2el float64) bool {
	value := map[string]float64{"ttft": ttft, "tpot": tpot, "e2el": e2el}
	for k, bound := range slo {
		if value[k] > bound/1000 {
			return false
		}
	}
	return true
}
