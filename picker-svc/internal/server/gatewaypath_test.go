package server

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/internal/llmapi"
	"github.com/meshllm/meshllm/picker-svc/internal/decision"
)

func usage(prompt, completion int64) llmapi.Outcome {
	return llmapi.Outcome{Source: llmapi.SourceJSON, Response: llmapi.Response{Usage: llmapi.Usage{
		PromptTokens: prompt, CompletionTokens: completion, HasPrompt: true, HasCompletion: true}}}
}

// What the picker sees over ext_proc is counted under the filter's series
// and labels, by the filter's rules.
func TestGatewayPathSeries(t *testing.T) {
	f := newFixture(t)
	t0 := time.Now()
	ok := func(target string, oc llmapi.Outcome) decision.Exchange {
		return decision.Exchange{Model: "m", Target: target, Status: 200, Start: t0, FirstByte: t0.Add(30 * time.Millisecond),
			End: t0.Add(100 * time.Millisecond), Outcome: oc}
	}
	f.dec.RecordExchange(ok("t", usage(3, 2)))
	f.dec.RecordExchange(ok("t", llmapi.Outcome{Missing: llmapi.MissingNotReported}))
	// Refused by the picker: a 4xx, no body; usage is not expected.
	f.dec.RecordExchange(decision.Exchange{Model: "m", Status: 429, Start: t0, End: t0, Outcome: llmapi.Outcome{Missing: llmapi.MissingNoBody}})
	// No response at all (the client left): class none.
	f.dec.RecordExchange(decision.Exchange{Model: "m", Target: "t", Start: t0, End: t0, Outcome: llmapi.Outcome{Missing: llmapi.MissingNoBody}})
	// No target from the picker: the response's model names it.
	served := usage(5, 1)
	served.Model = "lora-x"
	f.dec.RecordExchange(ok("", served))
	// A stream with a broken event.
	f.dec.RecordExchange(ok("t", llmapi.Outcome{Source: llmapi.SourceSSE, BadEvents: 1}))

	m := scrapeAsPrometheus(t, f.http.URL+"/metrics")
	for _, want := range []string{
		`asm_llm_proxy_prompt_tokens{model="m",target_model="t"} 3`,
		`asm_llm_proxy_completion_tokens{model="m",target_model="t"} 2`,
		`asm_llm_proxy_prompt_tokens{model="m",target_model="lora-x"} 5`,
		`asm_llm_proxy_label_overflow_total 0`,
		`asm_llm_proxy_requests_total{model="m",response_class="2xx"} 4`,
		`asm_llm_proxy_requests_total{model="m",response_class="4xx"} 1`,
		`asm_llm_proxy_requests_total{model="m",response_class="none"} 1`,
		`asm_llm_proxy_usage_missing_total{reason="not_reported"} 1`,
		`asm_llm_proxy_usage_missing_total{reason="no_body"} 0`,
		`asm_llm_proxy_parse_errors_total{phase="response"} 1`,
		`asm_llm_proxy_time_to_first_byte_ms_bucket{model="m",le="25"} 0`,
		`asm_llm_proxy_time_to_first_byte_ms_bucket{model="m",le="50"} 4`,
		`asm_llm_proxy_time_to_first_byte_ms_count{model="m"} 4`,
		`asm_llm_proxy_request_duration_ms_bucket{model="m",le="50"} 2`,
		`asm_llm_proxy_request_duration_ms_bucket{model="m",le="100"} 6`,
		`asm_llm_proxy_request_duration_ms_count{model="m"} 6`,
	} {
		requireLine(t, m, want)
	}
	// The filter's names exactly: a counter gets no _total added, and the
	// earlier meshllm_picker_*_tokens_total names are gone.
	require.NotContains(t, m, "asm_llm_proxy_prompt_tokens_total")
	require.NotContains(t, m, "meshllm_picker_prompt_tokens_total")
}

// The model labels are bounded by the filter's guard: random model names
// cannot grow the series.
func TestGatewayPathSeriesBounded(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 150; i++ {
		f.dec.RecordExchange(decision.Exchange{Model: fmt.Sprintf("random-%d", i), Target: "t", Status: 200, Outcome: usage(3, 2)})
	}
	m := scrapeAsPrometheus(t, f.http.URL+"/metrics")
	series := 0
	for _, l := range strings.Split(m, "\n") {
		if strings.HasPrefix(l, "asm_llm_proxy_prompt_tokens{") {
			series++
		}
	}
	require.Equal(t, decision.ModelLabelLimit+1, series, "the limit, then other")
	requireLine(t, m, `asm_llm_proxy_prompt_tokens{model="other",target_model="other"} 150`)
	requireLine(t, m, `asm_llm_proxy_completion_tokens{model="random-0",target_model="t"} 2`)
	requireLine(t, m, `asm_llm_proxy_label_overflow_total 50`)
}

// requireLine requires the exposition line want, showing the lines of the
// same series family when it is missing.
func requireLine(t *testing.T, page, want string) {
	t.Helper()
	lines := strings.Split(page, "\n")
	if slices.Contains(lines, want) {
		return
	}
	family := strings.FieldsFunc(want, func(r rune) bool { return r == '{' || r == ' ' })[0]
	var near []string
	for _, l := range lines {
		if strings.HasPrefix(l, family) && len(near) < 20 {
			near = append(near, l)
		}
	}
	t.Fatalf("no line %q; %s lines:\n%s", want, family, strings.Join(near, "\n"))
}

// scrapeAsPrometheus fetches a page with the Accept header Prometheus
// sends (OpenMetrics preferred): were OpenMetrics ever served, counters
// would be renamed with a _total suffix and no longer match the filter's.
func scrapeAsPrometheus(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
