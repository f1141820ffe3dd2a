// Package parserbench compares Prometheus text parsers on a realistic vLLM
// page. It is a separate module so that prometheus/prometheus (a very large
// dependency tree) stays out of meshllm's go.mod; the picker itself uses
// prometheus/common/expfmt (see docs/performance.md (picker-svc) for the figures).
// It requires meshllm through a replace of the checkout, so the series it
// sums and the line selection it times are the picker's own
// (scrape.Wanted, scrape.SelectLines), at the picker's prometheus/common.
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

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

func page(b *testing.B) []byte {
	p, err := os.ReadFile("../testdata/vllm-v1.txt")
	if err != nil {
		b.Fatal(err)
	}
	return p
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
		if scrape.Wanted(ls.Get(model.MetricNameLabel)) {
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
		if !scrape.Wanted(name) {
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
		buf = scrape.SelectLines(buf[:0], p)
		textparseSum(b, buf, st)
	}
}

func BenchmarkExpfmtSelected(b *testing.B) {
	p := page(b)
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		buf = scrape.SelectLines(buf[:0], p)
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
