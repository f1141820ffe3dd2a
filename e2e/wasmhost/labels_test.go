package wasmhost

import (
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/filter/stats"
	"github.com/meshllm/meshllm/internal/labelguard"
	"github.com/meshllm/meshllm/internal/testsupport/envoystats"
)

// modelExchange sends one request for model through vm, answered as served
// by served with 10 prompt tokens.
func modelExchange(vm *VM, model, served string) error {
	s, err := vm.NewStream()
	if err != nil {
		return err
	}
	body := []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`)
	h := [][2]string{{":method", "POST"}, {":path", "/v1/chat/completions"}, {":authority", "gw"},
		{"content-type", "application/json"}, {"content-length", fmt.Sprint(len(body))}}
	if _, err := s.RequestHeaders(h, false); err != nil {
		return err
	}
	if _, _, err := s.RequestBody(body, true); err != nil {
		return err
	}
	if _, err := s.ResponseHeaders([][2]string{{":status", "200"}, {"content-type", "application/json"}}, false); err != nil {
		return err
	}
	resp := []byte(`{"model":"` + served + `","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":2}}`)
	if _, _, err := s.ResponseBody(resp, true); err != nil {
		return err
	}
	s.Done()
	return nil
}

// series is one stat as Envoy exposes it with envoy.yaml's stats_tags.
type series struct {
	family string
	tags   map[string]string
	value  uint64
}

func exposed(t *testing.T, st *Stats) []series {
	t.Helper()
	specs, err := envoystats.LoadStatsTags("../../envoy/envoy.yaml")
	require.NoError(t, err)
	ex, err := envoystats.NewExtractor(specs)
	require.NoError(t, err)
	var out []series
	for _, m := range st.Snapshot() {
		name, tags := ex.Extract(envoystats.WasmNamespace + "." + m.Name)
		s := series{family: envoystats.PrometheusName(name), tags: map[string]string{}, value: m.Value}
		for _, tg := range tags {
			s.tags[tg.Name] = tg.Value
		}
		out = append(out, s)
	}
	return out
}

func decodedPairs(t *testing.T, sd *SharedData) map[[2]string]bool {
	t.Helper()
	v, _, ok := sd.Get(labelguard.LabelSetKey)
	require.True(t, ok, "the admitted set is in shared data")
	pairs := map[[2]string]bool{}
	_, err := labelguard.DecodeLabelSet(v, func(_, m, tm []byte) bool {
		require.False(t, pairs[[2]string{string(m), string(tm)}], "pair written twice")
		pairs[[2]string{string(m), string(tm)}] = true
		return true
	})
	require.NoError(t, err)
	return pairs
}

// TestModelLabelBoundAcrossVMs: four VMs (four Envoy workers) share one
// stats store and one shared data store, and each serves a stream of random
// model names at the same time as the others. The proxy, not each VM, keeps
// model_label_limit pairs plus other. (Before the admitted set was shared,
// the same run gave each VM its own 100: 401 label sets per family.)
func TestModelLabelBoundAcrossVMs(t *testing.T) {
	const (
		workers = 4
		perVM   = 1500
		limit   = 100
	)
	st, sd := NewStats(), NewSharedData()
	vms := make([]*VM, workers)
	for i := range vms {
		vms[i] = newVM(t, Config{PluginConfig: []byte(fmt.Sprintf(`{"model_label_limit": %d}`, limit)), Stats: st, SharedData: sd})
	}
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(i)))
			for j := range perVM {
				model := fmt.Sprintf("m-%d-%d-%x", i, j, rng.Uint64())
				if err := modelExchange(vm, model, "served-"+model); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	all := exposed(t, st)
	per := map[string]int{}
	for _, s := range all {
		per[s.family]++
	}
	t.Logf("label sets per family: %v; CAS mismatches: %d", per, sd.CasMismatches())
	for _, m := range []string{stats.PromptTokens, stats.CompletionTokens, stats.TTFBMillis, stats.DurationMillis, stats.Requests} {
		require.Equal(t, limit+1, per[m], "%s: the proxy keeps %d label sets plus other", m, limit)
	}
	pairs := decodedPairs(t, sd)
	require.Len(t, pairs, limit)
	var prompt uint64
	for _, s := range all {
		if s.family != stats.PromptTokens {
			continue
		}
		prompt += s.value
		p := [2]string{s.tags[stats.TagModel], s.tags[stats.TagTargetModel]}
		require.True(t, pairs[p] || p == [2]string{labelguard.Other, labelguard.Other}, "%v labels a stat but is not in the shared set", p)
	}
	require.Equal(t, uint64(workers*perVM*10), prompt, "no tokens lost: beyond the limit they count under other")
}

// A VM started later learns the pairs the others admitted, and a full set
// turns its new names into other at once.
func TestLateVMJoinsTheSharedSet(t *testing.T) {
	st, sd := NewStats(), NewSharedData()
	cfg := Config{PluginConfig: []byte(`{"model_label_limit": 2}`), Stats: st, SharedData: sd}
	first := newVM(t, cfg)
	require.NoError(t, modelExchange(first, "a", "a"))
	require.NoError(t, modelExchange(first, "b", "b"))
	late := newVM(t, cfg)
	require.NoError(t, modelExchange(late, "b", "b"))
	require.NoError(t, modelExchange(late, "c", "c"))
	b, _ := st.Lookup(stats.Name(stats.PromptTokens, stats.Tag{Name: stats.TagModel, Value: "b"}, stats.Tag{Name: stats.TagTargetModel, Value: "b"}))
	require.Equal(t, uint64(20), b)
	o, _ := st.Lookup(stats.Name(stats.PromptTokens, stats.Tag{Name: stats.TagModel, Value: labelguard.Other}, stats.Tag{Name: stats.TagTargetModel, Value: labelguard.Other}))
	require.Equal(t, uint64(10), o)
	require.Len(t, decodedPairs(t, sd), 2)
}

// SharedData follows proxy-wasm-cpp-host src/shared_data.cc SharedData::set,
// which Envoy uses for proxy_set_shared_data (Envoy's Context does not
// override ContextBase::setSharedData; cpp-host src/context.cc).
func TestSharedDataCASLikeEnvoy(t *testing.T) {
	sd := NewSharedData()
	require.True(t, sd.Set("k", []byte("a"), 42), "a key with no value is written whatever the CAS")
	_, cas, ok := sd.Get("k")
	require.True(t, ok)
	require.NotZero(t, cas, "0 is never a CAS")
	require.False(t, sd.Set("k", []byte("b"), cas+1), "a stale CAS is a mismatch")
	require.True(t, sd.Set("k", []byte("b"), cas))
	require.False(t, sd.Set("k", []byte("c"), cas), "the CAS changed with the write")
	require.True(t, sd.Set("k", []byte("c"), 0), "CAS 0 writes unconditionally")
	v, _, _ := sd.Get("k")
	require.Equal(t, "c", string(v))
	require.Equal(t, 2, sd.CasMismatches())
	_, _, ok = sd.Get("missing")
	require.False(t, ok)
}

// BenchmarkCycleNewModel: BenchmarkCycle's shape (16 KiB request, 2 KiB JSON
// response) with a model name never seen before on every request, once the
// proxy's label set is full: the steady state of a cardinality attack.
func BenchmarkCycleNewModel(b *testing.B) {
	vm, err := New(b.Context(), Config{Wasm: filterWasm(b), PluginConfig: []byte(`{}`), Cache: testCache})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	body := benchBody(16 << 10)
	resp := []byte(`{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` +
		strings.Repeat("word ", 380) + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4000,"completion_tokens":400}}`)
	hdrs := [][2]string{{":method", "POST"}, {":path", "/v1/chat/completions"}, {":authority", "gw"}, {"content-type", "application/json"}}
	rh := [][2]string{{":status", "200"}, {"content-type", "application/json"}}
	const model = `"model":"meta-llama/Llama-3.1-8B-Instruct"`
	cycle := func(i int) {
		req := strings.Replace(string(body), model, fmt.Sprintf(`"model":"meta-llama/Llama-3.1-8B-%08d"`, i), 1)
		s, _ := vm.NewStream()
		_, _ = s.RequestHeaders(hdrs, false)
		_, _, _ = s.RequestBody([]byte(req), true)
		_, _ = s.ResponseHeaders(rh, false)
		_, _, _ = s.ResponseBody(resp, true)
		s.Done()
	}
	for i := range 200 { // fill the set (limit 100)
		cycle(i)
	}
	b.ReportAllocs()
	i := 200
	for b.Loop() {
		i++
		cycle(i)
	}
}
