package metricnames

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResponseClass(t *testing.T) {
	for status, want := range map[int]string{200: "2xx", 204: "2xx", 301: "3xx", 429: "4xx", 503: "5xx", 0: "none", 99: "none", 600: "none"} {
		require.Equal(t, want, ResponseClass(status))
	}
}

// TestEveryNameHasAKind: each `Prefix + "..."` constant of this package is
// listed once, in Counters or in Histograms (the dashboard check and the
// docs derive the Prometheus names from the kind).
func TestEveryNameHasAKind(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "metricnames.go", nil, 0)
	require.NoError(t, err)
	var declared []string
	ast.Inspect(f, func(n ast.Node) bool {
		if be, ok := n.(*ast.BinaryExpr); ok && be.Op == token.ADD {
			if id, ok := be.X.(*ast.Ident); ok && id.Name == "Prefix" {
				if s, ok := be.Y.(*ast.BasicLit); ok {
					v, err := strconv.Unquote(s.Value)
					require.NoError(t, err)
					declared = append(declared, Prefix+v)
				}
			}
		}
		return true
	})
	require.Len(t, declared, 16)
	kinds := append(append([]string{}, Counters...), Histograms...)
	require.ElementsMatch(t, declared, kinds, "Counters and Histograms must list every name once")
	for _, h := range Histograms {
		require.Regexp(t, `_ms$`, h, "histograms here are milliseconds (MillisBuckets)")
	}
}
