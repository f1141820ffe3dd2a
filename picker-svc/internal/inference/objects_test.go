package inference

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func TestParseExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "pool.yaml"))
	require.NoError(t, err)
	o, err := ParseYAML(b)
	require.NoError(t, err)
	require.Len(t, o.Pools, 1)
	p := o.Pools[0]
	require.Equal(t, "sim-pool", p.Name)
	require.EqualValues(t, 8000, p.TargetPort)
	require.Equal(t, map[string]string{"app": "vllm-sim"}, p.Selector)
	require.Equal(t, pickapi.StrategyPrefixCache, p.Strategy)
	require.Equal(t, "meshllm-picker", p.ExtensionRef)
	require.Len(t, o.Models, 3)
	require.Equal(t, Model{Name: "chat", ModelName: "chat", Criticality: pickapi.Standard, CriticalitySet: true, PoolName: "sim-pool",
		Targets: []Target{{Name: "chat-lora-stable", Weight: 90}, {Name: "chat-lora-canary", Weight: 10}}}, o.Models[0])
	require.Equal(t, pickapi.Sheddable, o.Models[1].Criticality)
	require.Equal(t, []Target{{Name: "batch", Weight: 1}}, o.Models[1].Targets, "no targets: the model name serves itself")
	require.Equal(t, pickapi.Critical, o.Models[2].Criticality)

	b, err = os.ReadFile(filepath.Join("..", "..", "examples", "pool-v1alpha1.yaml"))
	require.NoError(t, err)
	o, err = ParseYAML(b)
	require.NoError(t, err)
	require.Equal(t, pickapi.DefaultStrategy, o.Pools[0].Strategy, "no annotation")
	require.Equal(t, pickapi.Standard, o.Models[0].Criticality)

	b, err = os.ReadFile(filepath.Join("..", "..", "examples", "pool-v1.yaml"))
	require.NoError(t, err)
	o, err = ParseYAML(b)
	require.NoError(t, err)
	require.Equal(t, Pool{Name: "ga-pool", APIVersion: "inference.networking.k8s.io/v1", TargetPort: 8000,
		Selector: map[string]string{"app": "vllm-ga"}, Strategy: pickapi.DefaultStrategy, ExtensionRef: "meshllm-picker"}, o.Pools[0])
}

func TestParseJSONSameAsYAML(t *testing.T) {
	y := "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\nmetadata: {name: p, namespace: ns}\nspec: {targetPortNumber: 9000, selector: {app: x}}\n"
	j := `{"apiVersion":"inference.networking.x-k8s.io/v1alpha2","kind":"InferencePool","metadata":{"name":"p","namespace":"ns","uid":"1"},"spec":{"targetPortNumber":9000,"selector":{"app":"x"}},"status":{}}`
	a, err := ParseYAML([]byte(y))
	require.NoError(t, err)
	b, err := ParseJSON([]byte(j))
	require.NoError(t, err)
	require.Equal(t, a, b)
}

func TestParseErrorsNameObjectAndField(t *testing.T) {
	pool := func(meta, spec string) string {
		return "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\nmetadata: " + meta + "\nspec: " + spec + "\n"
	}
	model := func(spec string) string {
		return "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModel\nmetadata: {name: m1}\nspec: " + spec + "\n"
	}
	for _, tc := range []struct{ in, want string }{
		{pool("{name: p}", "{selector: {app: a}}"), `InferencePool "p": spec.targetPortNumber: is required`},
		{pool("{name: p}", "{targetPortNumber: 70000, selector: {app: a}}"), `InferencePool "p": spec.targetPortNumber: 70000 is not a port`},
		{pool("{name: p}", "{targetPortNumber: 80}"), `InferencePool "p": spec.selector: must hold at least one label`},
		{pool("{name: p}", "{targetPortNumber: 80, selector: {app: 1}}"), `InferencePool "p": spec.selector: label "app" must be a string`},
		{pool("{}", "{targetPortNumber: 80, selector: {app: a}}"), `InferencePool "<unnamed>": metadata.name: is required`},
		{pool("{name: p, annotations: {inference.networking.x-k8s.io/routing-strategy: FASTEST}}", "{targetPortNumber: 80, selector: {app: a}}"),
			`InferencePool "p": metadata.annotations[inference.networking.x-k8s.io/routing-strategy]: "FASTEST" is not a routing strategy`},
		{pool("{name: p, annotations: {meshllm.io/engine: tgi}}", "{targetPortNumber: 80, selector: {app: a}}"),
			`InferencePool "p": metadata.annotations[meshllm.io/engine]: engine "tgi": want auto, vllm, sglang, triton-trtllm`},
		{pool("{name: p, annotations: {meshllm.io/engine: \"\"}}", "{targetPortNumber: 80, selector: {app: a}}"),
			`InferencePool "p": metadata.annotations[meshllm.io/engine]: engine ""`},
		{"apiVersion: inference.networking.x-k8s.io/v9\nkind: InferencePool\nmetadata: {name: p}\nspec: {}\n", `InferencePool "p": apiVersion: "inference.networking.x-k8s.io/v9" is not supported`},
		{"apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: g}\nspec: {selector: {matchLabels: {a: b}}}\n", `InferencePool "g": spec.targetPorts: must hold one port`},
		{model("{poolRef: {name: p}}"), `InferenceModel "m1": spec.modelName: is required`},
		{model("{modelName: x}"), `InferenceModel "m1": spec.poolRef.name: is required`},
		{model("{modelName: x, poolRef: {name: p, kind: Service}}"), `InferenceModel "m1": spec.poolRef.kind: "Service" is not InferencePool`},
		{model("{modelName: x, criticality: Urgent, poolRef: {name: p}}"), `InferenceModel "m1": spec.criticality: "Urgent" is not`},
		{model("{modelName: x, poolRef: {name: p}, targetModels: [{name: a, weight: 1}, {name: b}]}"), `InferenceModel "m1": spec.targetModels: set a weight on every target model or on none`},
		{model("{modelName: x, poolRef: {name: p}, targetModels: [{name: a, weight: -1}]}"), `InferenceModel "m1": spec.targetModels[0].weight: -1 is outside`},
		{model("{modelName: x, poolRef: {name: p}, targetModels: [{name: a, weight: 0}]}"), `InferenceModel "m1": spec.targetModels: weights sum to 0`},
		{model("{modelName: x, poolRef: {name: p}, targetModels: [{name: a}, {name: a}]}"), `InferenceModel "m1": spec.targetModels[1].name: "a" is listed twice`},
		{model("{modelName: x, poolRef: {name: p}, targetModels: [{weight: 3}]}"), `InferenceModel "m1": spec.targetModels[0].name: is required`},
		{model("{modelName: x, poolRef: {name: p}}") + "---\n" + model("{modelName: x, poolRef: {name: p}}"), `spec.modelName: "x" is already served in pool "p"`},
		{"kind: [", "yaml:"},
	} {
		_, err := ParseYAML([]byte(tc.in))
		require.ErrorContains(t, err, tc.want, tc.in)
	}
}

func TestParseEngineAnnotation(t *testing.T) {
	pool := func(annotations string) string {
		return "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p" + annotations +
			"}\nspec: {targetPorts: [{number: 30000}], selector: {matchLabels: {app: a}}}\n"
	}
	for _, tc := range []struct {
		name, annotations string
		want              scrape.Engine
	}{
		{name: "absent: the picker's --engine", annotations: "", want: ""},
		{name: "sglang", annotations: ", annotations: {meshllm.io/engine: sglang}", want: scrape.EngineSGLang},
		{name: "vllm", annotations: ", annotations: {meshllm.io/engine: vllm}", want: scrape.EngineVLLM},
		{name: "triton", annotations: ", annotations: {meshllm.io/engine: triton-trtllm}", want: scrape.EngineTritonTRTLLM},
		{name: "auto overrides a pinned --engine", annotations: ", annotations: {meshllm.io/engine: auto}", want: scrape.EngineAuto},
		{name: "beside a routing strategy", annotations: ", annotations: {meshllm.io/engine: sglang, inference.networking.x-k8s.io/routing-strategy: PREFIX_CACHE}", want: scrape.EngineSGLang},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseYAML([]byte(pool(tc.annotations)))
			require.NoError(t, err)
			require.Equal(t, tc.want, o.Pools[0].Engine)
		})
	}
	j := `{"apiVersion":"inference.networking.k8s.io/v1","kind":"InferencePool","metadata":{"name":"p","annotations":{"meshllm.io/engine":"sglang"}},"spec":{"targetPorts":[{"number":30000}],"selector":{"matchLabels":{"app":"a"}}}}`
	o, err := ParseJSON([]byte(j))
	require.NoError(t, err)
	require.Equal(t, scrape.EngineSGLang, o.Pools[0].Engine, "cluster objects carry it the same way")
}

func TestParseIgnoresOtherKinds(t *testing.T) {
	o, err := ParseYAML([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n---\n# just a comment\n"))
	require.NoError(t, err)
	require.Empty(t, o.Pools)
	require.Empty(t, o.Models)
}
