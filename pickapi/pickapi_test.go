package pickapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/internal/jsonscan"
)

func TestPickRequestRoundTrip(t *testing.T) {
	in := PickRequest{Pool: "p\"1", Model: "m\n", Criticality: Sheddable, Objective: "batch\u00e9\"", PrefixHashes: []uint64{1, 1<<64 - 1}, PromptBytes: 6200,
		Done: []uint64{1, MaxPickID}, DoneTokens: []int{-1, 1800}, MaxTokens: 2048, Explain: true}
	b := in.AppendJSON(nil)
	require.True(t, json.Valid(b), string(b))
	out, err := ParsePickRequest(b)
	require.NoError(t, err)
	require.Equal(t, in, out)

	// encoding/json reads the same thing (the picker may use either).
	var viaStd PickRequest
	require.NoError(t, json.Unmarshal(b, &viaStd))
	require.Equal(t, in, viaStd)
}

func TestParsePickRequestErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{`, "not valid JSON"},
		{`[]`, "JSON object"},
		{`{}`, "model or pool is required"},
		{`{"model":1}`, "model must be a string, got 1"},
		{`{"model":"m","criticality":"Urgent"}`, `unknown criticality "Urgent"`},
		{`{"model":"m","prefix_hashes":[-1]}`, "prefix_hashes holds -1"},
		{`{"model":"m","prefix_hashes":[1.5]}`, "prefix_hashes holds 1.5"},
		{`{"model":"m","bogus":1}`, `unknown field "bogus"`},
		{`{"model":"m","objective":7}`, "objective must be a string, got 7"},
		{`{"model":"m","objective":"` + strings.Repeat("o", MaxNameLen+1) + `"}`, "objective is 254 bytes long, the limit is 253"},
		{`{"model":"m","prompt_bytes":-1}`, "prompt_bytes is -1"},
		{`{"model":"m","prompt_bytes":1e3}`, "prompt_bytes is 1e3"},
		{`{"model":"m","prompt_bytes":"9"}`, `prompt_bytes is "9"`},
		{`{"model":"m","prompt_bytes":1073741825}`, "prompt_bytes is 1073741825"},
		{`{"model":"m","done":5}`, "done must be an array, got 5"},
		{`{"model":"m","done":[0]}`, "done holds 0"},
		{`{"model":"m","done":[9223372036854775808]}`, "done holds 9223372036854775808"},
		{`{"model":"m","done":["7"]}`, `done holds "7"`},
		{`{"model":"m","done":[` + strings.Repeat("1,", MaxDone) + `1]}`, "more than 64 ids"},
		{`{"model":"m","max_tokens":-1}`, "max_tokens is -1"},
		{`{"model":"m","max_tokens":16777217}`, "max_tokens is 16777217"},
		{`{"model":"m","max_tokens":1.5}`, "max_tokens is 1.5"},
		{`{"model":"m","explain":1}`, "explain must be true or false, got 1"},
		{`{"model":"m","done":[1],"done_tokens":5}`, "done_tokens must be an array, got 5"},
		{`{"model":"m","done":[1],"done_tokens":[-2]}`, "done_tokens holds -2"},
		{`{"model":"m","done":[1],"done_tokens":[7.5]}`, "done_tokens holds 7.5"},
		{`{"model":"m","done":[1,2],"done_tokens":[3]}`, "done_tokens holds 1 entries for 2 done ids"},
		{`{"model":"m","done_tokens":[3]}`, "done_tokens holds 1 entries for 0 done ids"},
	} {
		_, err := ParsePickRequest([]byte(tc.in))
		require.ErrorContains(t, err, tc.want, tc.in)
	}
	r, err := ParsePickRequest([]byte(`{"model":"m"}`))
	require.NoError(t, err)
	require.Equal(t, Standard, r.Criticality)
	// An older filter's "stream" is accepted and ignored.
	r, err = ParsePickRequest([]byte(`{"model":"m","stream":true}`))
	require.NoError(t, err)
	require.Equal(t, PickRequest{Model: "m", Criticality: Standard}, r)
	// No objective: nothing on the wire, so a picker older than the field
	// keeps accepting this filter's picks.
	require.NotContains(t, string((&PickRequest{Model: "m"}).AppendJSON(nil)), "objective")
	r, err = ParsePickRequest([]byte(`{"model":"m","objective":"premium"}`))
	require.NoError(t, err)
	require.Equal(t, "premium", r.Objective)
	// Level-2 fields stay off the wire when unset, so a filter that has
	// not heard APILevel 2 sends what an older picker reads.
	b := (&PickRequest{Model: "m", Done: []uint64{3}}).AppendJSON(nil)
	for _, f := range []string{"max_tokens", "done_tokens", "explain"} {
		require.NotContains(t, string(b), f)
	}
}

func TestParseStrategy(t *testing.T) {
	for _, st := range Strategies {
		got, err := ParseStrategy(string(st))
		require.NoError(t, err)
		require.Equal(t, st, got)
	}
	_, err := ParseStrategy("FASTEST")
	require.EqualError(t, err, `"FASTEST" is not a routing strategy (want DEFAULT, PREFIX_CACHE, PRECISE_PREFIX_CACHE or LATENCY)`)
}

func TestPickResponseRoundTrip(t *testing.T) {
	in := PickResponse{Endpoint: "10.0.0.1:8000", TargetModel: "a", Strategy: StrategyPrefixCache, Pool: "p",
		Fallbacks: []string{"10.0.0.2:8000", "[fd00::1]:8000"}, PickID: MaxPickID, APILevel: APILevel,
		Explain: `10.0.0.1:8000 "ttft" 12ms`}
	out, err := ParsePickResponse(in.AppendJSON(nil))
	require.NoError(t, err)
	require.Equal(t, in, out)

	// A bad level or explanation loses only those fields.
	for _, bad := range []string{`"api":"2"`, `"api":-1`, `"api":1e9`, `"explain":7`, `"explain":"` + strings.Repeat("x", MaxExplainLen+1) + `"`} {
		out, err = ParsePickResponse([]byte(`{"endpoint":"10.0.0.1:1",` + bad + `}`))
		require.NoError(t, err, bad)
		require.Zero(t, out.APILevel, bad)
		require.Empty(t, out.Explain, bad)
	}

	// A bad pick id only loses the end report: the pick stands.
	for _, id := range []string{`0`, `-3`, `1.5`, `"12"`, `9223372036854775808`, `[1]`} {
		out, err = ParsePickResponse([]byte(`{"endpoint":"10.0.0.1:1","pick_id":` + id + `}`))
		require.NoError(t, err, id)
		require.Zero(t, out.PickID, id)
	}

	// Bad fallbacks are dropped, a bad endpoint fails the whole answer.
	out, err = ParsePickResponse([]byte(`{"endpoint":"10.0.0.1:1","fallbacks":["evil.com:80","10.0.0.3:2"]}`))
	require.NoError(t, err)
	require.Equal(t, []string{"10.0.0.3:2"}, out.Fallbacks)
	_, err = ParsePickResponse([]byte(`{"endpoint":"evil.com:80"}`))
	require.ErrorContains(t, err, `"evil.com:80"`)
}

func TestValidateEndpoint(t *testing.T) {
	for _, ok := range []string{"1.2.3.4:80", "255.255.255.255:65535", "[::1]:8000", "[fd00:1::2]:1"} {
		require.NoError(t, ValidateEndpoint(ok), ok)
	}
	for _, bad := range []string{"", ":80", "1.2.3.4", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3:80",
		"1.2.3.4.5:80", "256.1.1.1:80", "01.1.1.1:80", "a.b.c.d:80", "[::1:80", "[zz::1]:80", "host:80", "1.2.3.4:80,5.6.7.8:80"} {
		require.Error(t, ValidateEndpoint(bad), bad)
	}
}

func TestPrefixHashes(t *testing.T) {
	a := make([]byte, 3*BlockSize+10)
	for i := range a {
		a[i] = byte('a' + i%26)
	}
	b := append([]byte(nil), a...)
	b[2*BlockSize+1] = 'Z' // differs in the third block

	ha := PrefixHashes(nil, "m", a)
	hb := PrefixHashes(nil, "m", b)
	require.Len(t, ha, 3) // the partial tail block is not hashed
	require.Equal(t, ha[:2], hb[:2])
	require.NotEqual(t, ha[2], hb[2])
	require.NotEqual(t, ha[0], PrefixHashes(nil, "other-model", a)[0], "hashes are per model")
	require.Empty(t, PrefixHashes(nil, "m", a[:BlockSize-1]))

	huge := make([]byte, (MaxBlocks+10)*BlockSize)
	require.Len(t, PrefixHashes(nil, "m", huge), MaxBlocks)
}

func TestErrorBody(t *testing.T) {
	b := ErrorBody(429, ErrTypeRateLimited, `pool "p" is saturated`)
	var v struct {
		Error struct {
			Message string
			Type    string
			Code    int
		}
	}
	require.NoError(t, json.Unmarshal(b, &v))
	require.Equal(t, `pool "p" is saturated`, v.Error.Message)
	require.Equal(t, 429, v.Error.Code)
}

func FuzzParsePickRequest(f *testing.F) {
	f.Add([]byte(`{"pool":"p","model":"m","criticality":"Critical","stream":true,"prefix_hashes":[1,2]}`))
	f.Add([]byte(`{"model":""}`))
	f.Add([]byte(`{"model":"m","done":[1,9223372036854775807],"objective":"o","prompt_bytes":12}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParsePickRequest(b)
		if err != nil {
			return
		}
		again, err := ParsePickRequest(r.AppendJSON(nil))
		if err != nil {
			t.Fatalf("re-encoding %+v does not parse: %v", r, err)
		}
		require.Equal(t, r, again)
	})
}

// Hostile answers and requests: nesting is refused without recursion, and
// an oversize answer without being read.
func TestParseBounds(t *testing.T) {
	deep := `{"endpoint":"10.0.0.1:8000","fallbacks":` + strings.Repeat("[", 4096) + strings.Repeat("]", 4096) + `}`
	_, err := ParsePickResponse([]byte(deep))
	require.ErrorIs(t, err, jsonscan.ErrTooDeep)
	_, err = ParsePickRequest([]byte(`{"model":"m","prefix_hashes":` + strings.Repeat("[", 4096) + `}`))
	require.ErrorIs(t, err, jsonscan.ErrTooDeep)
	big := `{"endpoint":"10.0.0.1:8000","target_model":"` + strings.Repeat("x", MaxResponseSize) + `"}`
	_, err = ParsePickResponse([]byte(big))
	require.ErrorContains(t, err, "exceeds")
	// A real answer at the limit's scale still parses.
	p := PickResponse{Endpoint: "10.0.0.1:8000", TargetModel: strings.Repeat("m", MaxNameLen), Pool: "p"}
	for range MaxFallbacks {
		p.Fallbacks = append(p.Fallbacks, "[fd00::1234:5678:9abc]:65535")
	}
	got, err := ParsePickResponse(p.AppendJSON(nil))
	require.NoError(t, err)
	require.Equal(t, p, got)
}
