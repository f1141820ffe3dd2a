package main

// The label guard's admitted set lives in proxy-wasm shared data, so that
// the bound holds for the proxy, not per VM (filter/stats/guard.go).
//
// proxytest cannot run two VMs that share shared data: every host emulator
// has its own store (rootHostEmulator.sharedDataKVS), and
// internal.RegisterMockWasmHost holds a process-wide lock until the
// emulator is reset, so two emulators are never live at once. These tests
// therefore play the other VMs themselves, writing the shared value through
// the same host the filter uses (proxywasm calls from the test reach the
// registered emulator in both modes). Several real VMs sharing one store are
// tested in e2e/wasmhost (labels_test.go) and e2e/gateway.

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/internal/labelguard"
)

// modelRequest sends one request for model, answered as served by served.
func modelRequest(t *testing.T, host proxytest.HostEmulator, model, served string) {
	t.Helper()
	run(t, host, exchange{
		reqHeaders:  llmRequest("/v1/chat/completions"),
		reqChunks:   [][]byte{[]byte(`{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`)},
		respHeaders: jsonResponse("200"),
		respChunks:  [][]byte{[]byte(`{"model":"` + served + `","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1}}`)},
	})
}

func sharedLabelSet(t *testing.T) ([]byte, uint32) {
	t.Helper()
	v, cas, err := proxywasm.GetSharedData(labelguard.LabelSetKey)
	require.NoError(t, err, "the admitted set is in shared data")
	return append([]byte(nil), v...), cas
}

func sharedPairs(t *testing.T) [][2]string {
	t.Helper()
	v, _ := sharedLabelSet(t)
	var pairs [][2]string
	_, err := labelguard.DecodeLabelSet(v, func(_, m, tm []byte) bool {
		pairs = append(pairs, [2]string{string(m), string(tm)})
		return true
	})
	require.NoError(t, err)
	return pairs
}

func TestLabelsAdmittedInSharedData(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, `{"model_label_limit": 3}`)
		v, _ := sharedLabelSet(t)
		_, entries, err := labelguard.SplitLabelSet(v)
		require.NoError(t, err)
		require.Empty(t, entries, "plugin start creates the empty set")

		modelRequest(t, host, "llama", "llama-served")
		require.Equal(t, [][2]string{{"llama", "llama-served"}}, sharedPairs(t))

		// Another VM admits two pairs with compare-and-swap: the set is full.
		v, cas := sharedLabelSet(t)
		v = labelguard.AppendLabelPair(labelguard.AppendLabelPair(v, "b", "b"), "c", "c")
		require.NoError(t, proxywasm.SetSharedData(labelguard.LabelSetKey, v, cas))

		modelRequest(t, host, "b", "b") // admitted elsewhere: its own series here too
		modelRequest(t, host, "new", "new")
		modelRequest(t, host, "llama", "llama-served")
		require.Equal(t, uint64(7), counter(t, host, promptTokens("b", "b")))
		require.Equal(t, uint64(7), counter(t, host, promptTokens(labelguard.Other, labelguard.Other)))
		require.Equal(t, uint64(14), counter(t, host, promptTokens("llama", "llama-served")))
		require.Equal(t, uint64(1), counter(t, host, stats.LabelOverflow))
		require.Len(t, sharedPairs(t), 3, "the filter never writes past the limit")
	})
}

// A write by another VM between the filter's read and its write would make
// the filter's write fail (CasMismatch). proxytest cannot interleave inside a
// callback; what it can show is that the filter writes with the CAS it read,
// not unconditionally: after another VM's write, a stale CAS is refused.
func TestLabelsWriteWithTheCASRead(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, `{"model_label_limit": 5}`)
		_, before := sharedLabelSet(t)
		modelRequest(t, host, "a", "a")
		_, after := sharedLabelSet(t)
		require.NotEqual(t, before, after)
		require.ErrorIs(t, proxywasm.SetSharedData(labelguard.LabelSetKey, labelguard.EmptyLabelSet(0), before), types.ErrorStatusCasMismatch)
		require.Equal(t, [][2]string{{"a", "a"}}, sharedPairs(t))
	})
}

// A shared value that is not a label set (corrupt, or written by something
// else under the key) never traps the VM and never reaches a stat name: new
// labels become other, and the value is left alone.
func TestLabelsCorruptSharedValue(t *testing.T) {
	bothVMs(t, func(t *testing.T, vm types.VMContext) {
		host := startHost(t, vm, `{"model_label_limit": 5}`)
		modelRequest(t, host, "known", "known")
		garbage := append(labelguard.EmptyLabelSet(1), "\x05a;.;b\x00\xff"...)
		// With the CAS read: proxytest refuses CAS 0 on an existing key,
		// where Envoy would write unconditionally.
		_, cas := sharedLabelSet(t)
		require.NoError(t, proxywasm.SetSharedData(labelguard.LabelSetKey, garbage, cas))
		modelRequest(t, host, "fresh", "fresh")
		modelRequest(t, host, "known", "known")
		require.Equal(t, uint64(7), counter(t, host, promptTokens(labelguard.Other, labelguard.Other)))
		require.Equal(t, uint64(14), counter(t, host, promptTokens("known", "known")))
		for _, name := range definedMetricNames(t, host) {
			require.NotContains(t, name, "a;.;b")
		}
		v, _ := sharedLabelSet(t)
		require.Equal(t, garbage, v)
		require.Contains(t, strings.Join(host.GetWarnLogs(), "\n"), "not a label set")
	})
}
