package inference

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseObjectivesExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "objectives.yaml"))
	require.NoError(t, err)
	o, err := ParseYAML(b)
	require.NoError(t, err)
	require.Equal(t, []Objective{
		{Name: "batch-sheddable", Priority: -1, PrioritySet: true, Pools: []string{"sim-pool"}},
		{Name: "premium", Priority: 100, PrioritySet: true, Pools: []string{"sim-pool"}},
	}, o.Objectives)
	require.Equal(t, []Rewrite{{Name: "summarize-canary", PoolName: "sim-pool", Rules: []RewriteRule{
		{Models: []string{"summarize"}, Targets: []Target{{Name: "summarize-lora-v1", Weight: 90}, {Name: "summarize-lora-v2", Weight: 10}}},
		{Models: []string{"legacy-chat"}, Targets: []Target{{Name: "chat-lora-stable", Weight: 1}}},
	}}}, o.Rewrites)
}

func TestParseObjectiveAndRewrite(t *testing.T) {
	objective := func(apiVersion, spec string) string {
		return "apiVersion: " + apiVersion + "\nkind: InferenceObjective\nmetadata: {name: o1, namespace: ns, generation: 3}\nspec: " + spec + "\n"
	}
	for _, tc := range []struct {
		name string
		in   string
		want Objective
	}{
		{"unset priority is 0", objective("inference.networking.x-k8s.io/v1alpha2", "{poolRef: {name: p}}"),
			Objective{Name: "o1", Namespace: "ns", Generation: 3, Pools: []string{"p"}}},
		{"llm-d.ai group, poolRefs", objective("llm-d.ai/v1alpha2", "{priority: 0, poolRefs: [{name: a, group: llm-d.ai}, {name: b}]}"),
			Objective{Name: "o1", Namespace: "ns", Generation: 3, PrioritySet: true, Pools: []string{"a", "b"}}},
		{"poolRef and poolRefs, deduplicated", objective("llm-d.ai/v1alpha2", "{priority: -7, poolRef: {name: a}, poolRefs: [{name: a}, {name: c}]}"),
			Objective{Name: "o1", Namespace: "ns", Generation: 3, Priority: -7, PrioritySet: true, Pools: []string{"a", "c"}}},
		{"extreme priorities", objective("llm-d.ai/v1alpha2", "{priority: 2147483647, poolRef: {name: a}}"),
			Objective{Name: "o1", Namespace: "ns", Generation: 3, Priority: 2147483647, PrioritySet: true, Pools: []string{"a"}}},
	} {
		o, err := ParseYAML([]byte(tc.in))
		require.NoError(t, err, tc.name)
		require.Equal(t, []Objective{tc.want}, o.Objectives, tc.name)
	}

	y := "apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: r, creationTimestamp: '2026-01-02T03:04:05Z'}\n" +
		"spec: {poolRef: {name: p}, rules: [{targets: [{modelRewrite: base}, {modelRewrite: other}]}]}\n"
	o, err := ParseYAML([]byte(y))
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), o.Rewrites[0].Created)
	require.True(t, o.Rewrites[0].Rules[0].Generic(), "no matches: the rule matches every model")
	require.Equal(t, []Target{{Name: "base", Weight: 1}, {Name: "other", Weight: 1}}, o.Rewrites[0].Rules[0].Targets, "unset weights share equally")
}

func TestParseObjectiveAndRewriteErrors(t *testing.T) {
	objective := func(spec string) string {
		return "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\nmetadata: {name: o1}\nspec: " + spec + "\n"
	}
	rewrite := func(spec string) string {
		return "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: r1}\nspec: " + spec + "\n"
	}
	rules := func(r string) string { return rewrite("{poolRef: {name: p}, rules: [" + r + "]}") }
	for _, tc := range []struct{ in, want string }{
		{objective("{priority: 1}"), `InferenceObjective "o1": spec.poolRef: is required (or spec.poolRefs)`},
		{objective("{priority: 1.5, poolRef: {name: p}}"), `InferenceObjective "o1": spec.priority: 1.5 is not a 32-bit integer`},
		{objective("{priority: 4294967296, poolRef: {name: p}}"), `spec.priority: 4294967296 is not a 32-bit integer`},
		{objective(`{priority: "high", poolRef: {name: p}}`), `spec.priority: "high" is not a 32-bit integer`},
		{objective("{poolRef: {name: p, kind: Service}}"), `InferenceObjective "o1": spec.poolRef.kind: "Service" is not InferencePool`},
		{objective("{poolRef: {name: p, group: apps}}"), `spec.poolRef.group: "apps" is not`},
		{objective("{poolRefs: [{name: a}, {kind: InferencePool}]}"), `spec.poolRefs[1].name: is required`},
		{objective("{poolRef: {name: a}, poolRefs: [{name: b, kind: X}]}"), `spec.poolRefs[0].kind: "X" is not InferencePool`},
		{objective("{poolSelector: {matchLabels: {a: b}}}"), `spec.poolSelector: is not supported`},
		{"apiVersion: llm-d.ai/v1\nkind: InferenceObjective\nmetadata: {name: o1}\nspec: {poolRefs: [{name: p}]}\n", `InferenceObjective "o1": apiVersion: "llm-d.ai/v1" is not supported`},
		{"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceObjective\nmetadata: {}\nspec: {poolRef: {name: p}}\n", `InferenceObjective "<unnamed>": metadata.name: is required`},
		{objective("{poolRef: {name: p}}") + "---\n" + objective("{poolRef: {name: q}}"), `InferenceObjective "o1": metadata.name: declared twice`},
		{rewrite("{rules: [{targets: [{modelRewrite: a}]}]}"), `InferenceModelRewrite "r1": spec.poolRef: is required`},
		{rewrite("{poolRef: {name: p}}"), `InferenceModelRewrite "r1": spec.rules: must hold at least one rule`},
		{rules("{matches: [{model: {value: a}}]}"), `spec.rules[0].targets: must hold at least one target`},
		{rules("{matches: [{model: {type: RegularExpression, value: 'a.*'}}], targets: [{modelRewrite: b}]}"), `spec.rules[0].matches[0].model.type: "RegularExpression" is not supported (only Exact)`},
		{rules("{matches: [{model: {type: Exact}}], targets: [{modelRewrite: b}]}"), `spec.rules[0].matches[0].model.value: is required`},
		{rules("{matches: [{}], targets: [{modelRewrite: b}]}"), `spec.rules[0].matches[0].model: is required`},
		{rules("{targets: [{modelRewrite: b}]}, {targets: [{weight: 3}]}"), `spec.rules[1].targets[0].modelRewrite: is required`},
		{rules("{targets: [{modelRewrite: b, weight: 0}]}"), `spec.rules[0].targets[0].weight: 0 is outside 1..1000000`},
		{rules("{targets: [{modelRewrite: b, weight: 1000001}]}"), `weight: 1000001 is outside 1..1000000`},
		{rules("{targets: [{modelRewrite: b, weight: 1}, {modelRewrite: c}]}"), `spec.rules[0].targets: set a weight on every target or on none`},
		{rules("{targets: [{modelRewrite: b}, {modelRewrite: b}]}"), `spec.rules[0].targets[1].modelRewrite: "b" is listed twice`},
		{"apiVersion: llm-d.ai/v1alpha2\nkind: InferenceModelRewrite\nmetadata: {name: r1, creationTimestamp: yesterday}\nspec: {}\n", `metadata.creationTimestamp: "yesterday" is not an RFC 3339 time`},
	} {
		_, err := ParseYAML([]byte(tc.in))
		require.ErrorContains(t, err, tc.want, tc.in)
	}
}

func TestPoolRefNamesOfInvalidObjects(t *testing.T) {
	require.Equal(t, []string{"a", "b"}, PoolRefNames([]byte(`{"spec":{"poolRef":{"name":"a"},"poolRefs":[{"name":"b"}],"priority":"junk"}}`)))
	require.Empty(t, PoolRefNames([]byte(`{"spec":{"poolRef":"not an object"}}`)))
}
