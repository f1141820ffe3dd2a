package stack

import (
	"fmt"

	"github.com/meshllm/meshllm/pickapi"
)

// PluginConfig is envoy/envoy.yaml's LLM listener configuration (routing
// on the body, failing open, the fallback cache) for pool, with the
// picker timeout given: envoy.yaml's 50 ms suits a real gateway beside its
// picker, while everything here shares one machine with other work, where
// a pick has taken 200-350 ms (e2e/scenarios/main_test.go). The watchdog
// stays above the timeout.
func PluginConfig(pool string, pickerTimeoutMS int) string {
	return fmt.Sprintf(`{"route_on":"body","picker_cluster":"picker","picker_authority":"picker","picker_path":%q,`+
		`"picker_timeout_ms":%d,"pool":%q,"failure_mode":"open","watchdog_ms":%d,"fallback_cache":true,`+
		`"inject_stream_usage":true,"max_request_body_bytes":4194304}`, pickapi.Path, pickerTimeoutMS, pool, max(1000, 2*pickerTimeoutMS))
}
