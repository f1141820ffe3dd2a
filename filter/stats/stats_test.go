package stats

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/internal/labelguard"
	"github.com/meshllm/meshllm/internal/testsupport/envoystats"
)

func envoyExtractor(t *testing.T) *envoystats.Extractor {
	t.Helper()
	specs, err := envoystats.LoadStatsTags("../../envoy/envoy.yaml")
	require.NoError(t, err)
	// envoy.yaml's stats_tags are exactly the filter's tags and regexes.
	require.Len(t, specs, len(AllTags))
	for i, tag := range AllTags {
		require.Equal(t, envoystats.TagSpecifier{TagName: tag, Regex: TagRegex(tag)}, specs[i])
	}
	ex, err := envoystats.NewExtractor(specs)
	require.NoError(t, err)
	return ex
}

// TestPrometheusSeries applies Envoy's tag extraction and Prometheus naming to
// the stat names the filter defines and checks the series a scraper sees.
func TestPrometheusSeries(t *testing.T) {
	ex := envoyExtractor(t)
	both := func(m, tm string) []Tag { return []Tag{{TagModel, m}, {TagTargetModel, tm}} }
	for _, tc := range []struct{ stat, want string }{
		{Name(PromptTokens, both("tweet-summary", "tweet-summary-1")...),
			`asm_llm_proxy_prompt_tokens{model="tweet-summary",target_model="tweet-summary-1"}`},
		{Name(CompletionTokens, both("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct")...),
			`asm_llm_proxy_completion_tokens{model="meta-llama/Llama-3.1-8B-Instruct",target_model="meta-llama/Llama-3.1-8B-Instruct"}`},
		// "model" must not be found inside "target_model", whatever the order.
		{Name(PromptTokens, Tag{TagTargetModel, "b"}, Tag{TagModel, "a"}),
			`asm_llm_proxy_prompt_tokens{model="a",target_model="b"}`},
		{Name(Requests, Tag{TagModel, "m"}, Tag{TagResponseClass, "2xx"}),
			`asm_llm_proxy_requests_total{model="m",response_class="2xx"}`},
		{Name(TTFBMillis, Tag{TagModel, "m.v2:latest"}), `asm_llm_proxy_time_to_first_byte_ms{model="m.v2:latest"}`},
		{Name(UsageMissing, Tag{TagReason, "not_reported"}), `asm_llm_proxy_usage_missing_total{reason="not_reported"}`},
		{Name(ParseErrors, Tag{TagPhase, "request"}), `asm_llm_proxy_parse_errors_total{phase="request"}`},
		{LabelOverflow, `asm_llm_proxy_label_overflow_total`},
	} {
		require.Equal(t, tc.want, ex.Of(tc.stat), tc.stat)
	}
}

// TestHostileValuesStayInTheirLabel: whatever a client sends as a model, the
// sanitised value cannot break out of its segment or forge another label.
func TestHostileValuesStayInTheirLabel(t *testing.T) {
	ex := envoyExtractor(t)
	for _, evil := range []string{
		`x;.;target_model=.=forged;.;`, `a";b`, "a\nb", `=.=`, `;.;`, "", string(make([]byte, 500)),
		"model=.=m;.;asm_llm_proxy_prompt_tokens", "ünïcode", `{"$gt":""}`,
	} {
		v := labelguard.TagValue(evil)
		require.LessOrEqual(t, len(v), labelguard.MaxValueLen)
		got := ex.Of(Name(PromptTokens, Tag{TagModel, v}, Tag{TagTargetModel, "t"}))
		require.Equal(t, fmt.Sprintf(`asm_llm_proxy_prompt_tokens{model=%q,target_model="t"}`, v), got, "value %q", evil)
	}
}
