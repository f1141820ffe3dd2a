package resolution

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/filter/route"
	"github.com/meshllm/meshllm/pickapi"
)

func table(pool string) pickapi.Resolution {
	t := pickapi.Resolution{Pool: pool, Models: map[string][]pickapi.Target{
		"tweet-summary": {{Name: "tweet-summary-1", Weight: 0}, {Name: "tweet-summary-2", Weight: 1}},
	}}
	t.Seal()
	return t
}

func TestEncodeDecode(t *testing.T) {
	tb := table("pool-a")
	k, err := Decode(Encode(1_767_225_600_123, &tb), "pool-a")
	require.NoError(t, err)
	require.Equal(t, Kept{SeenMillis: 1_767_225_600_123, Table: tb}, k)

	_, err = Decode(Encode(1, &tb), "pool-b")
	require.ErrorContains(t, err, "not \"pool-b\"", "another pool's table")
	empty := table("")
	_, err = Decode(Encode(1, &empty), "")
	require.NoError(t, err, "a filter that names no pool keeps the table of pool \"\"")

	good := string(Encode(5, &tb))
	for name, v := range map[string]string{
		"empty":             "",
		"no stamp":          "\n" + good[2:],
		"no line feed":      "123",
		"signed stamp":      "+5" + good[1:],
		"negative stamp":    "-5" + good[1:],
		"stamp overflows":   "99999999999999999999" + good[1:],
		"stamp not digits":  "1e3" + good[1:],
		"not a table":       "5\n{}",
		"trailing bytes":    good + "x",
		"oversize":          "5\n" + strings.Repeat(" ", pickapi.MaxResolutionSize+1),
		"a label set":       "meshllm.model_labels.v1",
		"an endpoint cache": "1767225600000,10.0.0.1:8000",
	} {
		_, err := Decode([]byte(v), "pool-a")
		require.Error(t, err, name)
	}
}

func TestUsable(t *testing.T) {
	const now, age = 1_000_000, 300_000
	for _, c := range []struct {
		seen    int64
		ok      bool
		outcome string
	}{
		{now, true, ""},
		{now - age, true, ""},
		{now - age - 1, false, OutcomeExpired},
		{0, false, OutcomeExpired},
		{now + futureSlackMillis, true, ""},
		{now + futureSlackMillis + 1, false, OutcomeInvalid},
	} {
		ok, outcome := Usable(c.seen, now, age)
		require.Equal(t, c.ok, ok, "seen %d", c.seen)
		require.Equal(t, c.outcome, outcome, "seen %d", c.seen)
	}
}

func TestDecideFetch(t *testing.T) {
	tb := table("pool-a")
	body := tb.AppendJSON(nil)
	got, outcome := DecideFetch(route.Answer{Headers: 2, Status: 200, BodySize: len(body), Body: body}, "pool-a")
	require.Equal(t, FetchOK, outcome)
	require.Equal(t, tb, got)
	for name, c := range map[string]struct {
		a    route.Answer
		want string
	}{
		"no answer":     {route.Answer{}, FetchTimeout},
		"404":           {route.Answer{Headers: 1, Status: 404, BodySize: 3, Body: []byte("{}x")}, FetchStatus},
		"not read":      {route.Answer{Headers: 1, Status: 200, BodySize: pickapi.MaxResolutionSize + 1}, FetchOversize},
		"short read":    {route.Answer{Headers: 1, Status: 200, BodySize: len(body) + 1, Body: body}, FetchOversize},
		"garbage":       {route.Answer{Headers: 1, Status: 200, BodySize: 2, Body: []byte("{}")}, FetchGarbage},
		"another pool":  {route.Answer{Headers: 1, Status: 200, BodySize: len(body), Body: body}, FetchGarbage},
		"nested deeply": {route.Answer{Headers: 1, Status: 200, BodySize: 4000, Body: []byte(strings.Repeat("[", 4000))}, FetchGarbage},
	} {
		pool := "pool-a"
		if name == "another pool" {
			pool = "pool-b"
		}
		_, outcome := DecideFetch(c.a, pool)
		require.Equal(t, c.want, outcome, name)
	}
	require.True(t, ReadBody(1))
	require.True(t, ReadBody(pickapi.MaxResolutionSize))
	require.False(t, ReadBody(pickapi.MaxResolutionSize+1))
	require.False(t, ReadBody(0))
}

func TestFetchPath(t *testing.T) {
	require.Equal(t, "/v1/resolution?pool=pool-a", FetchPath("/v1/resolution", "pool-a"))
	require.Equal(t, "/v1/resolution?pool=a+b%26c%3Dd", FetchPath("/v1/resolution", "a b&c=d"))
	require.Equal(t, "/v1/resolution", FetchPath("/v1/resolution", ""))
}

// The keeper takes the latest announced version, never while a fetch is in
// flight; confirms at most once a StepMillis; fetches again at once after a
// fetch that succeeded, a StepMillis after one that failed; and gives up on
// a fetch that never answers.
func TestKeeper(t *testing.T) {
	var k Keeper
	require.Empty(t, k.Take(1000), "nothing announced")
	k.Announce("v1")
	k.Announce("v2")
	require.Equal(t, "v2", k.Take(1000), "the latest version")
	require.Empty(t, k.Take(1000), "taken")

	require.True(t, k.ConfirmDue(1000))
	require.True(t, k.MayConfirm(1000), "the first confirmation at once")
	require.False(t, k.ConfirmDue(1999))
	require.False(t, k.MayConfirm(1999))
	require.True(t, k.MayConfirm(2000))
	require.True(t, k.MayConfirm(5), "a clock that went back stops nothing")

	require.True(t, k.MayFetch(3000))
	k.Fetching(3000, 2000)
	require.True(t, k.InFlight())
	require.False(t, k.MayFetch(3000), "one fetch at a time")
	k.Announce("v3")
	require.Empty(t, k.Take(4000), "kept while the fetch is in flight")
	k.Fetched(4000, true)
	require.Equal(t, "v3", k.Take(4000))
	require.True(t, k.MayFetch(4000), "after a success, a new version is fetched at once")

	k.Fetching(4000, 2000)
	k.Fetched(4100, false)
	require.False(t, k.MayFetch(5099), "a failed fetch is retried a step later")
	require.True(t, k.MayFetch(5100))

	k.Fetching(6000, 2000)
	k.Announce("v4")
	require.Empty(t, k.Take(9000))
	require.Equal(t, "v4", k.Take(9001), "a fetch silent past its timeout and a second is lost")
	require.False(t, k.InFlight())
	require.True(t, k.MayFetch(9001))
}

// Whatever shared data holds, Decode never panics, and whatever it accepts
// is a table within the limits, for the pool asked, that encodes back to
// the same value.
func FuzzDecode(f *testing.F) {
	tb := table("p")
	f.Add(Encode(1_767_225_600_000, &tb), "p")
	f.Add([]byte("5\n{\"version\":\"v\",\"pool\":\"p\",\"default\":[{\"name\":\"x\",\"weight\":0}]}"), "p")
	f.Add([]byte("1767225600000,10.0.0.1:8000"), "")
	f.Add([]byte("0\n"+strings.Repeat("[", 100)), "p")
	f.Fuzz(func(t *testing.T, b []byte, pool string) {
		k, err := Decode(b, pool)
		if err != nil {
			return
		}
		require.Equal(t, pool, k.Table.Pool)
		require.NoError(t, k.Table.CheckLimits())
		require.GreaterOrEqual(t, k.SeenMillis, int64(0))
		again, err := Decode(Encode(k.SeenMillis, &k.Table), pool)
		require.NoError(t, err)
		require.Equal(t, k, again)
	})
}
