package route

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/picker-svc/pickapi"
)

func TestDecide(t *testing.T) {
	d := Decide(3, 200, []byte(`{"endpoint":"10.0.0.1:8000","target_model":"a","strategy":"DEFAULT","pool":"p","fallbacks":["10.0.0.2:8000"]}`))
	require.Equal(t, Pick, d.Kind)
	require.Equal(t, "10.0.0.1:8000", d.Pick.Endpoint)
	require.Equal(t, []string{"10.0.0.2:8000"}, d.Pick.Fallbacks)

	for _, tc := range []struct {
		headers, status int
		body            string
		kind            Kind
		reason          string
	}{
		{0, 0, "", Fail, ReasonTimeout},
		{3, 500, "oops", Fail, ReasonStatus},
		{3, 400, `{"error":{}}`, Fail, ReasonStatus}, // our own request was bad: not the client's fault
		{3, 200, "not json", Fail, ReasonGarbage},
		{3, 200, `{"endpoint":"evil.example:80"}`, Fail, ReasonGarbage}, // never an address the picker did not validate
		{3, 200, `{"endpoint":"10.0.0.1:8000,10.0.0.2:8000"}`, Fail, ReasonGarbage},
	} {
		d := Decide(tc.headers, tc.status, []byte(tc.body))
		require.Equal(t, tc.kind, d.Kind, "%+v", tc)
		require.Equal(t, tc.reason, d.Reason, "%+v", tc)
	}
}

func TestDecideRefusals(t *testing.T) {
	body := pickapi.ErrorBody(429, pickapi.ErrTypeRateLimited, "pool saturated")
	d := Decide(2, 429, body)
	require.Equal(t, Refuse, d.Kind)
	require.Equal(t, 429, d.Status)
	require.Equal(t, body, d.Body, "the picker's error body is passed on")

	for _, status := range []int{404, 429, 503} {
		d := Decide(2, status, []byte("plain text"))
		require.Equal(t, Refuse, d.Kind)
		require.Equal(t, int64(status), gjson.GetBytes(d.Body, "error.code").Int(), "a non-JSON refusal is rewritten as an OpenAI error")
	}
}

func TestCache(t *testing.T) {
	b := EncodeCache(1234, []string{"10.0.0.1:8000", "[fd00::1]:8000"})
	ts, eps, ok := DecodeCache(b)
	require.True(t, ok)
	require.Equal(t, int64(1234), ts)
	require.Equal(t, []string{"10.0.0.1:8000", "[fd00::1]:8000"}, eps)

	ts, eps, ok = DecodeCache([]byte("99,evil.example:80,10.0.0.3:1"))
	require.True(t, ok)
	require.Equal(t, []string{"10.0.0.3:1"}, eps)
	require.Equal(t, int64(99), ts)
	for _, bad := range []string{"", "x,10.0.0.1:1", "5", "5,evil:1"} {
		_, _, ok := DecodeCache([]byte(bad))
		require.False(t, ok, bad)
	}
}
