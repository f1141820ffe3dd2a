package route

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/pickapi"
)

func TestDecide(t *testing.T) {
	d := Decide(answer(3, 200, `{"endpoint":"10.0.0.1:8000","target_model":"a","strategy":"DEFAULT","pool":"p","fallbacks":["10.0.0.2:8000"]}`), nil)
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
		d := Decide(answer(tc.headers, tc.status, tc.body), nil)
		require.Equal(t, tc.kind, d.Kind, "%+v", tc)
		require.Equal(t, tc.reason, d.Reason, "%+v", tc)
	}
}

func answer(headers, status int, body string) Answer {
	return Answer{Headers: headers, Status: status, BodySize: len(body), Body: []byte(body)}
}

// An answer too large to be a pick is not read; a deep one is refused
// without recursion; endpoints outside endpoint_cidrs never route.
func TestDecideHostile(t *testing.T) {
	require.False(t, ReadBody(100<<20))
	require.True(t, ReadBody(300))
	d := Decide(Answer{Headers: 3, Status: 200, BodySize: 100 << 20}, nil)
	require.Equal(t, Decision{Kind: Fail, Reason: ReasonOversize}, d)
	d = Decide(Answer{Headers: 3, Status: 429, BodySize: 100 << 20}, nil)
	require.Equal(t, Refuse, d.Kind, "a refusal is still a refusal, in our own words")
	require.Equal(t, int64(429), gjson.GetBytes(d.Body, "error.code").Int())
	d = Decide(answer(3, 503, `{"error":`+strings.Repeat("[", 4000)+`}`), nil)
	require.Equal(t, Refuse, d.Kind)
	require.Equal(t, int64(503), gjson.GetBytes(d.Body, "error.code").Int())
	d = Decide(answer(3, 200, `{"endpoint":"10.0.0.1:8000","x":`+strings.Repeat("[", 8000)+`}`), nil)
	require.Equal(t, Decision{Kind: Fail, Reason: ReasonGarbage}, d)

	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("fd00::/8")}
	pick := `{"endpoint":"%s","fallbacks":["169.254.169.254:80","10.0.9.9:8000","[fd00::2]:8000"]}`
	d = Decide(answer(3, 200, fmt.Sprintf(pick, "10.0.3.4:8000")), allow)
	require.Equal(t, Pick, d.Kind)
	require.Equal(t, []string{"10.0.9.9:8000", "[fd00::2]:8000"}, d.Pick.Fallbacks)
	for _, ep := range []string{"169.254.169.254:80", "10.1.0.1:8000", "127.0.0.1:15000", "[fe80::1]:8000"} {
		d = Decide(answer(3, 200, fmt.Sprintf(pick, ep)), allow)
		require.Equal(t, Decision{Kind: Fail, Reason: ReasonNotAllowed}, d, ep)
	}
}

func TestDecideRefusals(t *testing.T) {
	body := pickapi.ErrorBody(429, pickapi.ErrTypeRateLimited, "pool saturated")
	d := Decide(Answer{Headers: 2, Status: 429, BodySize: len(body), Body: body}, nil)
	require.Equal(t, Refuse, d.Kind)
	require.Equal(t, 429, d.Status)
	require.Equal(t, body, d.Body, "the picker's error body is passed on")

	for _, status := range []int{404, 429, 503} {
		d := Decide(answer(2, status, "plain text"), nil)
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

func TestHeaderSafe(t *testing.T) {
	require.True(t, HeaderSafe("LATENCY 10.0.0.1:8000 ttft=12ms total=10.00 predicted_ttft=1.00"))
	for _, bad := range []string{"", "a\r\nx-evil: 1", "tab\there", "caf\u00e9", "\x7f"} {
		require.False(t, HeaderSafe(bad), "%q", bad)
	}
}
