package helm

import (
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"sigs.k8s.io/yaml"

	"github.com/meshllm/meshllm/e2e/deploycheck"
)

const chartDir = "meshllm"

var loadChart = sync.OnceValues(func() (*chart.Chart, error) { return loader.LoadDir(chartDir) })

// doc is one rendered object.
type doc struct {
	file       string // the template it came from, e.g. mesh-picker.yaml
	raw        []byte
	apiVersion string
	kind       string
	name       string
	namespace  string
	labels     map[string]string
}

func (d doc) key() string { return d.apiVersion + " " + d.kind + " " + d.namespace + "/" + d.name }

// render renders the chart as `helm install --dry-run` would for release
// "meshllm" in ns: values coalesced with the chart's and validated against
// values.schema.json, then every template through Helm's engine.
func render(ns string, values map[string]any) ([]doc, error) {
	ch, err := loadChart()
	if err != nil {
		return nil, err
	}
	rv, err := util.ToRenderValuesWithSchemaValidation(ch, values,
		common.ReleaseOptions{Name: "meshllm", Namespace: ns, IsInstall: true}, nil, false)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	var docs []doc
	for _, name := range slices.Sorted(maps.Keys(out)) {
		if path.Ext(name) != ".yaml" {
			continue // NOTES.txt
		}
		parts, err := deploycheck.Docs([]byte(out[name]))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, p := range parts {
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name      string            `json:"name"`
					Namespace string            `json:"namespace"`
					Labels    map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(p, &meta); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			docs = append(docs, doc{file: path.Base(name), raw: p, apiVersion: meta.APIVersion, kind: meta.Kind,
				name: meta.Metadata.Name, namespace: meta.Metadata.Namespace, labels: meta.Metadata.Labels})
		}
	}
	return docs, nil
}

// set builds a values map from dotted keys: set("mesh.enabled", false, ...).
func set(kv ...any) map[string]any {
	out := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		keys := strings.Split(kv[i].(string), ".")
		m := out
		for _, k := range keys[:len(keys)-1] {
			if _, ok := m[k]; !ok {
				m[k] = map[string]any{}
			}
			m = m[k].(map[string]any)
		}
		m[keys[len(keys)-1]] = kv[i+1]
	}
	return out
}

// serverSource is picker-svc's route table, which the probes must name.
func serverSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../picker-svc/internal/server/server.go")
	require.NoError(t, err)
	return string(b)
}

// TestChartLint runs Helm's own linter (Chart.yaml, values against the
// schema, every template rendered and parsed) for each path.
func TestChartLint(t *testing.T) {
	for _, vals := range []map[string]any{
		nil,
		set("mesh.routeOn", "body"),
		set("mesh.enabled", false, "gateway.enabled", true),
	} {
		l := lint.RunAll(chartDir, vals, "default")
		var msgs []string
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				msgs = append(msgs, m.Error())
			}
		}
		require.Empty(t, msgs, "values %v", vals)
	}
}
