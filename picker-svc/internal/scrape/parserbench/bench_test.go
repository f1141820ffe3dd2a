// Package parserbench compares Prometheus text parsers on a realistic vLLM
// page. It is a separate module so that prometheus/prometheus (a very large
// dependency tree) stays out of meshllm's go.mod; the picker itself uses
// prometheus/common/expfmt (see docs/performance.md (picker-svc) for the figures).
package parserbench

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

var wanted = map[string]bool{
	"vllm:num_requests_running": true, "vllm:num_requests_waiting": true, "vllm:num_requests_swapped": true,
	"vllm:kv_cache_usage_perc": true, "vllm:gpu_cache_usage_perc": true, "vllm:lora_requests_info": true,
	"vllm:cache_config_info": true, "vllm:prefix_cache_queries_total": true, "vllm:prefix_cache_hits_total": true,
}

func page(b *testing.B) []byte {
	p, err := os.ReadFile("../testdata/vllm-v1.txt")
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// selectLines mirrors scrape.selectLines (kept in sync by hand: it is a
// benchmark, not production code).
func selectLines(dst, page []byte) []byte {
	for len(page) > 0 {
		line := page
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i+1], page[i+1:]
		} else {
			page = nil
		}
		if !bytes.HasPrefix(line, []byte("vllm:")) {
			continue
		}
		end := bytes.IndexAny(line, "{ \t")
		if end < 0 || !wanted[string(line[:end])] {
			continue
		}
		dst = append(dst, line...)
	}
	return dst
}

func textparseSum(b *testing.B, p []byte, st *labels.SymbolTable) float64 {
	tp := textparse.NewPromParser(p, st, false)
	var sum float64
	var ls labels.Labels
	for {
		e, err := tp.Next()
		if errors.Is(err, io.EOF) {
			return sum
		}
		if err != nil {
			b.Fatal(err)
		}
		if e != textparse.EntrySeries {
			continue
		}
		_, _, v := tp.Series()
		tp.Labels(&ls)
		if wanted[ls.Get(model.MetricNameLabel)] {
			sum += v
		}
	}
}

func expfmtSum(b *testing.B, p []byte) float64 {
	tp := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := tp.TextToMetricFamilies(bytes.NewReader(p))
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for name, f := range fams {
		if !wanted[name] {
			continue
		}
		for _, m := range f.Metric {
			sum += m.GetGauge().GetValue() + m.GetUntyped().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

func BenchmarkTextparseFull(b *testing.B) {
	p := page(b)
	st := labels.NewSymbolTable()
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		textparseSum(b, p, st)
	}
}

func BenchmarkExpfmtFull(b *testing.B) {
	p := page(b)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		expfmtSum(b, p)
	}
}

func BenchmarkTextparseSelected(b *testing.B) {
	p := page(b)
	st := labels.NewSymbolTable()
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		buf = selectLines(buf[:0], p)
		textparseSum(b, buf, st)
	}
}

func BenchmarkExpfmtSelected(b *testing.B) {
	p := page(b)
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		buf = selectLines(buf[:0], p)
		expfmtSum(b, buf)
	}
}

// TestSameAnswer keeps the comparison honest: both parsers read the same values.
func TestSameAnswer(t *testing.T) {
	b := &testing.B{}
	p, err := os.ReadFile("../testdata/vllm-v1.txt")
	if err != nil {
		t.Fatal(err)
	}
	a, c := textparseSum(b, p, labels.NewSymbolTable()), expfmtSum(b, p)
	if a != c || a == 0 {
		t.Fatalf("textparse %v, expfmt %v", a, c)
	}
}
