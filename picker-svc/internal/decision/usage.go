package decision

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshllm/meshllm/internal/labelguard"
	"github.com/meshllm/meshllm/internal/llmapi"
)

// Token usage seen on the ext_proc path, where the filter (which counts
// tokens in the gateway) is not in the request's way. The labels are the
// filter's: model and target_model sanitised and bounded by the same
// guard (labelguard.Guard: at most ModelLabelLimit pairs, then "other"), so a
// client sending random model names cannot grow the series without bound.

// ModelLabelLimit bounds the (model, target_model) pairs of the usage
// series, as the filter's model_label_limit default.
const ModelLabelLimit = 100

type usageMetrics struct {
	prompt, completion *prometheus.CounterVec
	missing            *prometheus.CounterVec

	mu    sync.Mutex
	guard *labelguard.Guard
}

func newUsageMetrics() *usageMetrics {
	u := &usageMetrics{
		prompt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_prompt_tokens_total", Help: "Prompt tokens of responses the picker saw over ext_proc (the gateway path), by model and target model.",
		}, []string{"model", "target_model"}),
		completion: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_completion_tokens_total", Help: "Completion tokens of responses the picker saw over ext_proc, by model and target model.",
		}, []string{"model", "target_model"}),
		missing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshllm_picker_usage_missing_total", Help: "Responses seen over ext_proc without usage, by reason (not_reported, encoded, oversize, unparsable, too_deep, no_body).",
		}, []string{"reason"}),
		guard: labelguard.NewGuard(ModelLabelLimit, nil, &labelguard.InProcess{}),
	}
	_ = u.guard.Start() // in memory: cannot fail
	return u
}

// RecordUsage counts one finished response's usage.
func (m *Metrics) RecordUsage(model, target string, oc llmapi.Outcome) {
	u := m.usage
	if oc.Missing != "" {
		u.missing.WithLabelValues(oc.Missing).Inc()
		return
	}
	u.mu.Lock()
	mod, tgt, _ := u.guard.Labels(model, target)
	u.mu.Unlock()
	if oc.Usage.HasPrompt {
		u.prompt.WithLabelValues(mod, tgt).Add(float64(oc.Usage.PromptTokens))
	}
	if oc.Usage.HasCompletion {
		u.completion.WithLabelValues(mod, tgt).Add(float64(oc.Usage.CompletionTokens))
	}
}
