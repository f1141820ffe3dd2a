package gateway

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/meshllm/meshllm/e2e/wasmhost"
	"github.com/meshllm/meshllm/internal/testsupport/envoystats"
)

// PrometheusText renders the filter's metrics as Envoy's /stats/prometheus
// does: tags extracted by stats_tags, the wasmcustom namespace stripped.
func (g *Gateway) PrometheusText() string {
	type series struct {
		m    wasmhost.Metric
		tags []envoystats.Tag
	}
	byName := map[string][]series{}
	var order []string
	for _, m := range g.stats.Snapshot() {
		name, tags := g.extractor.Extract("wasmcustom." + m.Name)
		pname := envoystats.PrometheusName(name)
		if _, ok := byName[pname]; !ok {
			order = append(order, pname)
		}
		byName[pname] = append(byName[pname], series{m: m, tags: tags})
	}
	var b strings.Builder
	for _, name := range order {
		list := byName[name]
		switch list[0].m.Type {
		case wasmhost.Counter:
			fmt.Fprintf(&b, "# TYPE %s counter\n", name)
		case wasmhost.Gauge:
			fmt.Fprintf(&b, "# TYPE %s gauge\n", name)
		default:
			fmt.Fprintf(&b, "# TYPE %s histogram\n", name)
		}
		for _, s := range list {
			if s.m.Type != wasmhost.Histogram {
				fmt.Fprintf(&b, "%s %d\n", seriesName(name, s.tags, ""), s.m.Value)
				continue
			}
			for i, le := range wasmhost.DefaultBuckets {
				fmt.Fprintf(&b, "%s %d\n", seriesName(name+"_bucket", s.tags, strconv.FormatFloat(le, 'f', -1, 64)), s.m.Cumulative[i])
			}
			fmt.Fprintf(&b, "%s %d\n", seriesName(name+"_bucket", s.tags, "+Inf"), s.m.Count)
			fmt.Fprintf(&b, "%s %s\n", seriesName(name+"_sum", s.tags, ""), strconv.FormatFloat(s.m.Sum, 'f', -1, 64))
			fmt.Fprintf(&b, "%s %d\n", seriesName(name+"_count", s.tags, ""), s.m.Count)
		}
	}
	g.writeWasmStats(&b)
	return b.String()
}

// writeWasmStats renders Envoy's own counters of each Wasm plugin
// (wasm.<name>.vm_reload_{backoff,success,failure}, Envoy's
// docs/root/configuration/other_features/wasm.rst), summed by plugin name as
// one stat store does.
func (g *Gateway) writeWasmStats(b *strings.Builder) {
	type sums struct{ backoff, success, failure uint64 }
	byName := map[string]*sums{}
	var names []string
	for _, l := range g.listeners {
		if l.spec.Wasm == nil {
			continue
		}
		n := l.spec.Wasm.Name
		if byName[n] == nil {
			byName[n] = &sums{}
			names = append(names, n)
		}
		byName[n].backoff += l.reloads.backoff.Load()
		byName[n].success += l.reloads.success.Load()
		byName[n].failure += l.reloads.failure.Load()
	}
	for _, n := range names {
		for _, c := range []struct {
			stat string
			v    uint64
		}{{"vm_reload_backoff", byName[n].backoff}, {"vm_reload_success", byName[n].success}, {"vm_reload_failure", byName[n].failure}} {
			name := envoystats.PrometheusName("wasm." + n + "." + c.stat)
			fmt.Fprintf(b, "# TYPE %s counter\n%s %d\n", name, name, c.v)
		}
	}
}

// seriesName renders name{tags[,le]} as /stats/prometheus does.
func seriesName(name string, tags []envoystats.Tag, le string) string {
	if le != "" {
		tags = append(append([]envoystats.Tag(nil), tags...), envoystats.Tag{Name: "le", Value: le})
	}
	return envoystats.Series(name, tags)
}
