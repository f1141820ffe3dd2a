// Package scenarios runs meshllm end to end: simulated vLLM servers,
// picker-svc and the compiled filter in the gateway host, each scenario with
// its own configuration. The .wasm must exist (make test builds it).
package scenarios

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/loadgen"
	"github.com/meshllm/meshllm/e2e/stack"
	"github.com/meshllm/meshllm/e2e/vllmsim"
)

var wasm []byte

func TestMain(m *testing.M) {
	var err error
	if wasm, err = stack.LoadWasm(); err != nil {
		fmt.Fprintln(os.Stderr, "scenarios:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// start brings a stack up for one test.
func start(t *testing.T, cfg stack.Config) *stack.Stack {
	t.Helper()
	cfg.Wasm = wasm
	if cfg.ConnectTimeout == 0 {
		// envoy.yaml's picker cluster connects within 0.25 s; on a loaded
		// 2-core machine a loopback dial has taken longer, and the filter
		// then fails open to round robin, which these scenarios would
		// count as the policy's. Loopback to a listener that is down still
		// refuses at once, so a long timeout hides no failure (as
		// routedConfig's pick timeout; timeouts have tests of their own).
		cfg.ConnectTimeout = time.Minute
	}
	// Every stack serves both deployment paths (routePaths).
	cfg.ExtProc = true
	if os.Getenv("MESHLLM_E2E_VERBOSE") != "" {
		cfg.Log, cfg.AccessLog = os.Stderr, os.Stderr
	}
	s, err := stack.Start(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// routePath is one way a gateway asks the picker: the Wasm filter's
// dispatch_http_call, or ext_proc as a gateway with an InferencePool
// backendRef does.
type routePath struct {
	name   string
	url    func(*stack.Stack) string
	counts func(*stack.Stack) map[string]int
}

var routePaths = []routePath{
	{"wasm", func(s *stack.Stack) string { return s.URL(stack.LLMListener) },
		func(s *stack.Stack) map[string]int { return s.Gateway.UpstreamCounts(stack.LLMCluster) }},
	{"ext_proc", func(s *stack.Stack) string { return s.ExtProcGateway.URL() },
		func(s *stack.Stack) map[string]int { return s.ExtProcGateway.UpstreamCounts() }},
}

// sims returns n simulator configs serving base with adapters.
func sims(n int, base string, speed float64, adapters ...string) []vllmsim.Config {
	var out []vllmsim.Config
	for i := 0; i < n; i++ {
		c := vllmsim.Config{Model: base, Speed: speed, MaxLoRAs: 4, Logger: quiet}
		for _, a := range adapters {
			c.LoRAModules = append(c.LoRAModules, vllmsim.LoRAModule{Name: a, Path: "/adapters/" + a})
		}
		out = append(out, c)
	}
	return out
}

const poolYAML = `
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: sim-pool
  annotations:
    inference.networking.x-k8s.io/routing-strategy: %s
spec:
  targetPortNumber: 8000
  selector: {app: vllm-sim}
`

const modelYAML = `---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata:
  name: %[1]s
spec:
  modelName: %[1]s
  criticality: %[2]s
  poolRef: {name: sim-pool}
%[3]s
`

// objects builds pool + models YAML; each model is name, criticality and
// "target:weight,..." (empty: the model itself).
func objects(strategy string, models ...[3]string) string {
	s := fmt.Sprintf(poolYAML, strategy)
	for _, m := range models {
		targets := ""
		if m[2] != "" {
			targets = "  targetModels:\n"
			for _, tw := range strings.Split(m[2], ",") {
				name, w, _ := strings.Cut(tw, ":")
				targets += fmt.Sprintf("  - name: %s\n    weight: %s\n", name, w)
			}
		}
		s += fmt.Sprintf(modelYAML, m[0], m[1], targets)
	}
	return s
}

// routedConfig's pick timeout is generous: these scenarios count where
// requests went, and on a loaded 2-core machine a pick (a Go HTTP server
// beside several VMs and simulators) has taken 200-350 ms, and under make
// test's parallel packages over 2 s (a scenario then saw round robin: the
// filter failed open). A timeout there is the machine, not the filter;
// timeouts have tests of their own.
const routedConfig = `{"route_on":"body","picker_cluster":"picker","picker_authority":"picker","pool":"sim-pool","picker_timeout_ms":10000%s}`

func routed(extra string) string { return fmt.Sprintf(routedConfig, extra) }

var client = loadgen.NewClient()

// quiet drops the simulators' logs unless MESHLLM_E2E_VERBOSE is set.
var quiet = func() *slog.Logger {
	if os.Getenv("MESHLLM_E2E_VERBOSE") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}()
