package helm

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/deploycheck"
)

// One source of truth, checked rather than generated: the static files stay
// hand-written because their comments are the deployment's documentation
// (why each setting, what to change), which rendered templates cannot carry
// as readably, and `kubectl apply -f istio/` must keep working without Helm.
// This test makes the chart's default rendering and the static files the same
// objects, field for field (only the chart's own labels differ), so that an
// edit to either side fails until the other follows.

// staticFiles maps each static file to the rendering that must contain its
// objects; notRendered are the files the chart deliberately leaves out.
var (
	meshWasmPlugin = []string{"istio/picker-rbac.yaml", "istio/picker-deployment.yaml", "istio/inferencepool.yaml", "istio/wasmplugin.yaml", "istio/envoyfilter-pool-cluster.yaml"}
	meshBody       = []string{"istio/picker-rbac.yaml", "istio/picker-deployment.yaml", "istio/inferencepool.yaml", "istio/envoyfilter.yaml", "istio/envoyfilter-pool-cluster.yaml"}
	gatewayPath    = []string{"gateway/picker-rbac.yaml", "gateway/picker-epp.yaml", "gateway/inferencepool.yaml", "gateway/gateway.yaml"}
	notRendered    = map[string]string{
		"istio/inferencemodel.yaml": "sample InferenceModels: the user's model names and canaries",
		"istio/telemetry.yaml":      "mesh config (IstioOperator) merged into the user's Istio install",
	}
)

// object is a document as plain JSON values, keyed for comparison.
func object(t *testing.T, raw []byte) (string, map[string]any) {
	t.Helper()
	j, err := deploycheck.YAMLToJSON(raw)
	require.NoError(t, err)
	var o map[string]any
	require.NoError(t, json.Unmarshal(j, &o))
	meta, _ := o["metadata"].(map[string]any)
	if labels, ok := meta["labels"].(map[string]any); ok {
		for _, l := range helmLabels {
			delete(labels, l)
		}
		if len(labels) == 0 {
			delete(meta, "labels")
		}
	}
	return o["apiVersion"].(string) + " " + o["kind"].(string) + " " + meta["namespace"].(string) + "/" + meta["name"].(string), o
}

func TestChartMatchesStaticFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		files  []string
	}{
		{"mesh path, WasmPlugin (defaults)", nil, meshWasmPlugin},
		{"mesh path, EnvoyFilter", set("mesh.routeOn", "body"), meshBody},
		{"gateway path", set("mesh.enabled", false, "gateway.enabled", true), gatewayPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			static := map[string]map[string]any{}
			for _, f := range tc.files {
				docs, err := deploycheck.Docs(readRepo(t, f))
				require.NoError(t, err)
				for _, d := range docs {
					k, o := object(t, d)
					require.NotContains(t, static, k, "%s: %s twice", f, k)
					static[k] = o
				}
			}
			docs, err := render("default", tc.values)
			require.NoError(t, err)
			rendered := map[string]map[string]any{}
			for _, d := range docs {
				k, o := object(t, d.raw)
				rendered[k] = o
			}
			require.ElementsMatch(t, keys(static), keys(rendered), "the same objects")
			for k, o := range static {
				require.Equal(t, o, rendered[k], "%s: the chart's default rendering differs from the static file", k)
			}
		})
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Every static manifest is compared above or named as left out on purpose.
func TestEveryStaticFileIsCovered(t *testing.T) {
	covered := map[string]bool{}
	for _, f := range slices.Concat(meshWasmPlugin, meshBody, gatewayPath) {
		covered[f] = true
	}
	for _, dir := range []string{"istio", "gateway"} {
		files, err := filepath.Glob("../../" + dir + "/*.yaml")
		require.NoError(t, err)
		require.NotEmpty(t, files)
		for _, f := range files {
			rel := dir + "/" + filepath.Base(f)
			require.True(t, covered[rel] || notRendered[rel] != "", "%s is neither rendered by the chart nor listed in notRendered", rel)
		}
	}
}
