package pickapi

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/internal/jsonscan"
)

func sampleResolution() Resolution {
	r := Resolution{Pool: "pool-a", Models: map[string][]Target{
		"tweet-summary": {{"tweet-summary-1", 50}, {"tweet-summary-2", 50}},
		"sql":           {{"sql-lora", 1}},
	}, Default: []Target{{"base", 1}}}
	r.Seal()
	return r
}

func TestResolutionRoundTrip(t *testing.T) {
	in := sampleResolution()
	require.True(t, ValidVersion(in.Version), in.Version)
	b := in.AppendJSON(nil)
	require.Equal(t, `{"pool":"pool-a","version":"`+in.Version+`","models":[`+
		`{"model":"sql","targets":[{"name":"sql-lora","weight":1}]},`+
		`{"model":"tweet-summary","targets":[{"name":"tweet-summary-1","weight":50},{"name":"tweet-summary-2","weight":50}]}],`+
		`"default":[{"name":"base","weight":1}]}`, string(b), "models sorted: equal tables, equal bytes")
	out, err := ParseResolution(b)
	require.NoError(t, err)
	require.Equal(t, in, out)

	// No default, no models: still a table (every model stays as it is).
	empty := Resolution{Models: map[string][]Target{}}
	empty.Seal()
	out, err = ParseResolution(empty.AppendJSON(nil))
	require.NoError(t, err)
	require.Equal(t, empty, out)
	require.NotEqual(t, in.Version, empty.Version)

	// Unknown fields are a newer picker's: ignored.
	out, err = ParseResolution([]byte(`{"version":"v1","models":[{"model":"m","targets":[{"name":"t","weight":1,"x":2}],"y":3}],"z":{}}`))
	require.NoError(t, err)
	require.Equal(t, map[string][]Target{"m": {{"t", 1}}}, out.Models)
}

// Seal digests the content: the same objects give the same version on
// every replica; any change of a name or weight gives another.
func TestResolutionSeal(t *testing.T) {
	a, b := sampleResolution(), sampleResolution()
	require.Equal(t, a.Version, b.Version)
	b.Models["tweet-summary"][1].Weight = 49
	b.Seal()
	require.NotEqual(t, a.Version, b.Version)
	c := sampleResolution()
	c.Pool = "pool-b"
	c.Seal()
	require.NotEqual(t, a.Version, c.Version)
}

func TestParseResolutionRefuses(t *testing.T) {
	target := func(name string, w int) string { return fmt.Sprintf(`{"name":%q,"weight":%d}`, name, w) }
	many := func(n int, f func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = f(i)
		}
		return strings.Join(parts, ",")
	}
	for name, body := range map[string]string{
		"not an object":          `[]`,
		"no version":             `{"models":[]}`,
		"empty version":          `{"version":"","models":[]}`,
		"version with a slash":   `{"version":"a/b"}`,
		"version too long":       `{"version":"` + strings.Repeat("a", MaxVersionLen+1) + `"}`,
		"version twice":          `{"version":"a","version":"b"}`,
		"models not an array":    `{"version":"a","models":{}}`,
		"entry not an object":    `{"version":"a","models":["m"]}`,
		"entry without targets":  `{"version":"a","models":[{"model":"m"}]}`,
		"empty targets":          `{"version":"a","models":[{"model":"m","targets":[]}]}`,
		"model twice":            `{"version":"a","models":[{"model":"m","targets":[` + target("t", 1) + `]},{"model":"m","targets":[` + target("t", 1) + `]}]}`,
		"empty model name":       `{"version":"a","models":[{"model":"","targets":[` + target("t", 1) + `]}]}`,
		"model name not a str":   `{"version":"a","models":[{"model":7,"targets":[` + target("t", 1) + `]}]}`,
		"newline in a name":      `{"version":"a","default":[{"name":"a\nb","weight":1}]}`,
		"C1 control in a name":   "{\"version\":\"a\",\"default\":[{\"name\":\"a\u0085b\",\"weight\":1}]}",
		"invalid UTF-8":          "{\"version\":\"a\",\"default\":[{\"name\":\"\xff\",\"weight\":1}]}",
		"name too long":          `{"version":"a","default":[` + target(strings.Repeat("n", MaxNameLen+1), 1) + `]}`,
		"target twice":           `{"version":"a","default":[` + target("t", 1) + `,` + target("t", 2) + `]}`,
		"target without weight":  `{"version":"a","default":[{"name":"t"}]}`,
		"negative weight":        `{"version":"a","default":[` + target("t", -1) + `]}`,
		"weight too large":       `{"version":"a","default":[` + target("t", MaxTargetWeight+1) + `]}`,
		"fractional weight":      `{"version":"a","default":[{"name":"t","weight":1.5}]}`,
		"NaN weight":             `{"version":"a","default":[{"name":"t","weight":NaN}]}`,
		"string weight":          `{"version":"a","default":[{"name":"t","weight":"1"}]}`,
		"too many targets":       `{"version":"a","default":[` + many(MaxResolutionTargets+1, func(i int) string { return target(fmt.Sprint("t", i), 1) }) + `]}`,
		"too many models":        `{"version":"a","models":[` + many(MaxResolutionModels+1, func(i int) string { return fmt.Sprintf(`{"model":"m%d","targets":[{"name":"t","weight":1}]}`, i) }) + `]}`,
		"pool not a string":      `{"version":"a","pool":1}`,
		"default not an array":   `{"version":"a","default":{"name":"t","weight":1}}`,
		"default of non-objects": `{"version":"a","default":["t"]}`,
		"trailing garbage":       `{"version":"a"} x`,
	} {
		_, err := ParseResolution([]byte(body))
		require.Error(t, err, name)
	}
	_, err := ParseResolution([]byte(`{"version":"a","models":` + strings.Repeat("[", 64) + `}`))
	require.ErrorIs(t, err, jsonscan.ErrTooDeep)
	_, err = ParseResolution([]byte(`{"version":"a","pad":"` + strings.Repeat("x", MaxResolutionSize) + `"}`))
	require.ErrorContains(t, err, "exceeds")
}

func TestResolutionCheckLimits(t *testing.T) {
	r := sampleResolution()
	require.NoError(t, r.CheckLimits())
	for i := range MaxResolutionModels + 1 {
		r.Models[fmt.Sprint("m", i)] = []Target{{"t", 1}}
	}
	require.ErrorContains(t, r.CheckLimits(), "models")
	r = sampleResolution()
	for i := range 300 {
		r.Models[fmt.Sprint(strings.Repeat("m", 200), i)] = []Target{{strings.Repeat("t", 200), 1}}
	}
	require.ErrorContains(t, r.CheckLimits(), "bytes")
	r = sampleResolution()
	for i := range MaxResolutionTargets + 1 {
		r.Default = append(r.Default, Target{fmt.Sprint("t", i), 1})
	}
	require.ErrorContains(t, r.CheckLimits(), "default")
}

// The weighted draw: proportional to the weights, zero weights never drawn,
// all-zero weights the first target, and a draw that misbehaves still names
// a target.
func TestChooseTarget(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	draw := rng.Int64N
	ts := []Target{{"a", 90}, {"zero", 0}, {"b", 10}}
	counts := map[string]int{}
	for range 20000 {
		counts[ChooseTarget(ts, draw)]++
	}
	require.Zero(t, counts["zero"])
	require.InDelta(t, 0.9, float64(counts["a"])/20000, 0.01)
	require.InDelta(t, 0.1, float64(counts["b"])/20000, 0.01)

	noDraw := func(int64) int64 { t.Fatal("drew for a single target"); return 0 }
	require.Equal(t, "only", ChooseTarget([]Target{{"only", 0}}, noDraw))
	require.Equal(t, "", ChooseTarget(nil, noDraw))
	require.Equal(t, "first", ChooseTarget([]Target{{"first", 0}, {"second", 0}}, noDraw))
	require.Equal(t, "b", ChooseTarget([]Target{{"a", 1}, {"b", 1}}, func(int64) int64 { return 99 }), "out of range: the last")

	r := sampleResolution()
	got, ok := r.Target("sql", noDraw)
	require.True(t, ok)
	require.Equal(t, "sql-lora", got)
	got, ok = r.Target("anything", noDraw)
	require.True(t, ok)
	require.Equal(t, "base", got, "the default rule")
	r.Default = nil
	_, ok = r.Target("anything", noDraw)
	require.False(t, ok, "no default: left as it is")
}

func TestPickResponseResolution(t *testing.T) {
	in := PickResponse{Endpoint: "10.0.0.1:8000", Resolution: "5c0e1b9d7a3f2e41"}
	out, err := ParsePickResponse(in.AppendJSON(nil))
	require.NoError(t, err)
	require.Equal(t, in, out)
	require.NotContains(t, string((&PickResponse{Endpoint: "10.0.0.1:8000"}).AppendJSON(nil)), "resolution")
	// A bad version costs the table's refresh, never the pick.
	for _, v := range []string{`""`, `"a b"`, `7`, `"` + strings.Repeat("a", MaxVersionLen+1) + `"`, `["a"]`} {
		out, err = ParsePickResponse([]byte(`{"endpoint":"10.0.0.1:1","resolution":` + v + `}`))
		require.NoError(t, err, v)
		require.Empty(t, out.Resolution, v)
	}
}

// Any table ParseResolution accepts is within the limits, re-encodes to a
// table that parses to the same, and resolves every model to one of its
// names without panicking.
func FuzzParseResolution(f *testing.F) {
	r := sampleResolution()
	f.Add(r.AppendJSON(nil))
	f.Add([]byte(`{"version":"v","models":[{"model":"m","targets":[{"name":"a","weight":0},{"name":"b","weight":0}]}]}`))
	f.Add([]byte(`{"version":"v","default":[{"name":"a","weight":1000000}],"models":[]}`))
	f.Add([]byte(`{"version":"0"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResolution(b)
		if err != nil {
			return
		}
		require.NoError(t, r.CheckLimits())
		again, err := ParseResolution(r.AppendJSON(nil))
		require.NoError(t, err)
		require.Equal(t, r, again)
		draw := rand.New(rand.NewPCG(3, 4)).Int64N
		for m, ts := range r.Models {
			got, ok := r.Target(m, draw)
			require.True(t, ok)
			require.True(t, hasTarget(ts, got), "%q resolved to %q, not one of %v", m, got, ts)
		}
	})
}

func hasTarget(ts []Target, name string) bool {
	for _, t := range ts {
		if t.Name == name {
			return true
		}
	}
	return false
}
