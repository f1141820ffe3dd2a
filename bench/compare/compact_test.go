package compare

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/bench"
)

func TestSplitResult(t *testing.T) {
	o := bench.Object{{Key: "a", Value: 1.5}, {Key: "latencies", Value: []any{1.0, 2.0}}, {Key: "served_models", Value: bench.Object{}},
		{Key: "output_lens", Value: []int{3}}, {Key: "label", Value: nil}}
	c, per := splitResult(o)
	require.Equal(t, bench.Object{{Key: "a", Value: 1.5}, {Key: "served_models", Value: bench.Object{}}, {Key: "label", Value: nil}}, c)
	require.Equal(t, bench.Object{{Key: "latencies", Value: []any{1.0, 2.0}}, {Key: "output_lens", Value: []int{3}}}, per)
}

func TestCompactSummary(t *testing.T) {
	in := []byte(`{"workload": "w", "policies": {"round_robin": [{"date": "x", "duration": 1351.825246432, "latencies": [1, 2],
 "served_models": {"m": 3}, "itls": [[1], []], "p90_ttft_ms": 530.3}], "default": []}}`)
	out, err := CompactSummary(in)
	require.NoError(t, err)
	require.Equal(t, `{
 "workload": "w",
 "policies": {
  "round_robin": [
   {
    "date": "x",
    "duration": 1351.825246432,
    "served_models": {
     "m": 3
    },
    "p90_ttft_ms": 530.3
   }
  ],
  "default": []
 }
}
`, string(out), "keys in order, numbers as written, lists gone")
	again, err := CompactSummary(out)
	require.NoError(t, err)
	require.Equal(t, out, again, "compacting twice changes nothing")

	for _, bad := range []string{`{`, `[]`, `{"workload": "w"}`, `{"policies": {"p": {}}}`, `{"policies": {"p": [1]}}`} {
		_, err := CompactSummary([]byte(bad))
		require.Error(t, err, bad)
	}
}

func TestCompactCommand(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "summary.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"workload":"w","policies":{"p":[{"latencies":[1,2,3],"x":1}]}}`), 0o644))
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, Main(t.Context(), []string{"compact", path}, &stdout, &stderr), stderr.String())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(b), "latencies")
	require.Contains(t, stdout.String(), "summary.json: ")
	require.Equal(t, 1, Main(t.Context(), []string{"compact", filepath.Join(dir, "missing.json")}, &stdout, &stderr))
	require.Equal(t, 2, Main(t.Context(), []string{"compact"}, &stdout, &stderr))
}
