package wasmhost

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/filter/stats"
)

func filterWasm(t testing.TB) []byte {
	b, err := os.ReadFile("../../wasm/meshllm.wasm")
	require.NoError(t, err, "run `make wasm` first (make test does)")
	return b
}

const routed = `{"route_on":"body","picker_cluster":"picker","picker_authority":"picker","pool":"p"}`

var testCache = wazero.NewCompilationCache()

func newVM(t *testing.T, cfg Config) *VM {
	cfg.Wasm = filterWasm(t)
	cfg.Cache = testCache
	vm, err := New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = vm.Close() })
	return vm
}

var chatBody = []byte(`{"model":"chat","messages":[{"role":"user","content":"hello there, how are you doing today? tell me a long story please"}]}`)

func reqHeaders() [][2]string {
	return [][2]string{{":method", "POST"}, {":path", "/v1/chat/completions"}, {":authority", "gw"},
		{"content-type", "application/json"}, {"content-length", "118"}, {"x-gateway-destination-endpoint", "6.6.6.6:1"}}
}

func get(h [][2]string, k string) string {
	for _, kv := range h {
		if kv[0] == k {
			return kv[1]
		}
	}
	return ""
}

func TestBodyRoutingWithFlag(t *testing.T) {
	calls := make(chan CallRequest, 1)
	vm := newVM(t, Config{
		PluginConfig: []byte(routed), AllowOnHeadersStopIteration: true, Clusters: map[string]bool{"picker": true},
		Call: func(r CallRequest) CallResponse {
			calls <- r
			return CallResponse{Headers: [][2]string{{":status", "200"}},
				Body: []byte(`{"endpoint":"127.0.0.1:9001","target_model":"chat-lora-2","strategy":"DEFAULT","pool":"p"}`)}
		},
		ForeignFunctions: map[string]func([]byte) []byte{"clear_route_cache": func([]byte) []byte { return nil }},
	})
	s, err := vm.NewStream()
	require.NoError(t, err)
	a, err := s.RequestHeaders(reqHeaders(), false)
	require.NoError(t, err)
	require.Equal(t, Pause, a)
	a, released, err := s.RequestBody(chatBody, true)
	require.NoError(t, err)
	require.Equal(t, Pause, a)
	require.Nil(t, released)
	c := <-calls
	require.Equal(t, "picker", c.Cluster)
	require.Equal(t, 50*time.Millisecond, c.Timeout)
	body, err := s.WaitRequest(context.Background())
	require.NoError(t, err)
	require.Equal(t, "chat-lora-2", gjson.GetBytes(body, "model").Str)
	require.Equal(t, "127.0.0.1:9001", get(s.ReqHeaders, "x-gateway-destination-endpoint"))
	require.Equal(t, fmt.Sprint(len(chatBody)+len("-lora-2")), get(s.ReqHeaders, "content-length"))
	_, err = s.ResponseHeaders([][2]string{{":status", "200"}, {"content-type", "application/json"}}, false)
	require.NoError(t, err)
	_, out, err := s.ResponseBody([]byte(`{"model":"chat-lora-2","usage":{"prompt_tokens":3,"completion_tokens":4}}`), true)
	require.NoError(t, err)
	require.Contains(t, string(out), "usage")
	st := s.Done()
	require.Equal(t, "picked", st["wasm.llm_route"])
	require.Equal(t, "127.0.0.1:9001", st["wasm.llm_endpoint"])
	v, ok := vm.cfg.Stats.Lookup(stats.Name(stats.PromptTokens, stats.Tag{Name: "model", Value: "chat"}, stats.Tag{Name: "target_model", Value: "chat-lora-2"}))
	require.True(t, ok)
	require.Equal(t, uint64(3), v)
}

// Envoy answers BadArgument to a call to a cluster it does not know; the
// filter fails open at once and says why.
func TestDispatchToUnknownClusterIsBadArgument(t *testing.T) {
	var logs []string
	vm := newVM(t, Config{
		PluginConfig: []byte(routed), AllowOnHeadersStopIteration: true, Clusters: map[string]bool{"other": true},
		Call: func(CallRequest) CallResponse { t.Error("no call may be made"); return CallResponse{} },
		Log:  func(_ int, m string) { logs = append(logs, m) },
	})
	s, _ := vm.NewStream()
	_, _ = s.RequestHeaders(reqHeaders(), false)
	a, released, err := s.RequestBody(chatBody, true)
	require.NoError(t, err)
	require.Equal(t, Continue, a)
	require.Equal(t, chatBody, released)
	require.Empty(t, get(s.ReqHeaders, "x-gateway-destination-endpoint"), "the spoofed header is gone")
	st := s.Done()
	require.Equal(t, "failopen", st["wasm.llm_route"])
	v, _ := vm.cfg.Stats.Lookup(stats.Name(stats.PickerErrors, stats.Tag{Name: "reason", Value: "dispatch"}))
	require.Equal(t, uint64(1), v)
	require.Contains(t, strings.Join(logs, "\n"), `cluster "picker"`)
}

// Headers paused, flag missing: the body stays with the host; the ticker's
// watchdog resumes the request.
func TestWatchdogWithoutFlag(t *testing.T) {
	vm := newVM(t, Config{
		PluginConfig: []byte(strings.Replace(routed, "{", `{"watchdog_ms":40,`, 1)), Clusters: map[string]bool{"picker": true},
		Call: func(CallRequest) CallResponse { return CallResponse{} },
	})
	require.Equal(t, 10*time.Millisecond, vm.TickPeriod())
	s, _ := vm.NewStream()
	a, _ := s.RequestHeaders(reqHeaders(), false)
	require.Equal(t, Pause, a)
	require.False(t, vm.AllowsBodyWhileHeadersPaused())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.WaitRequest(ctx) // released by the watchdog, driven by the VM's own ticker
	require.NoError(t, err)
	a, released, err := s.RequestBody(chatBody, true)
	require.NoError(t, err)
	require.Equal(t, Continue, a)
	require.Equal(t, chatBody, released)
	require.Equal(t, "watchdog", s.Done()["wasm.llm_route"])
}

func TestHeadersAreFinalOnceSent(t *testing.T) {
	vm := newVM(t, Config{PluginConfig: []byte(`{}`)})
	s, _ := vm.NewStream()
	a, _ := s.RequestHeaders(reqHeaders(), false)
	require.Equal(t, Continue, a)
	vm.mu.Lock()
	require.False(t, vm.headersWritable(mapRequestHeaders))
	vm.mu.Unlock()
	s.Done()
}

func TestBadPluginConfigFailsStart(t *testing.T) {
	_, err := New(context.Background(), Config{Wasm: filterWasm(t), PluginConfig: []byte(`{"nope":1}`)})
	require.ErrorContains(t, err, `unknown key "nope"`)
}

// Many streams through one VM: memory stays flat (proxy_on_delete runs).
func TestManyStreamsMemoryFlat(t *testing.T) {
	vm := newVM(t, Config{PluginConfig: []byte(`{}`)})
	resp := []byte(`{"model":"chat","usage":{"prompt_tokens":3,"completion_tokens":4}}`)
	var base int
	for i := 0; i < 30000; i++ {
		s, err := vm.NewStream()
		require.NoError(t, err)
		_, _ = s.RequestHeaders(reqHeaders(), false)
		_, _, _ = s.RequestBody(chatBody, true)
		_, _ = s.ResponseHeaders([][2]string{{":status", "200"}, {"content-type", "application/json"}}, false)
		_, _, _ = s.ResponseBody(resp, true)
		s.Done()
		if i == 5000 {
			base = vm.MemoryBytes()
		}
	}
	require.LessOrEqual(t, vm.MemoryBytes(), base+(1<<20))
	require.Empty(t, vm.streams)
}
