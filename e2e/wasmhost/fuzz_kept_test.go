package wasmhost

// FuzzWasmKeptResolution writes arbitrary bytes where the COMPILED filter
// keeps its resolution table (shared data: any plugin of the proxy can
// write it), then sends a request whose pick fails. Whatever the value, the
// VM stays alive, the request goes upstream unpaused with no destination
// the picker did not give, and its body is the client's, or the client's
// with only "model" replaced by a target of a table the native decoder
// accepts, fresh, for this pool.

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/meshllm/meshllm/filter/resolution"
	"github.com/meshllm/meshllm/internal/jsonscan"
	"github.com/meshllm/meshllm/internal/llmapi"
	"github.com/meshllm/meshllm/pickapi"
)

// keptVMOptions: body routing to pool "p", nothing injected (so the body
// changes only by the model), the default age of 5 minutes.
var keptVMOptions = vmOptions{
	pluginConfig: `{"route_on":"body","picker_cluster":"picker","picker_authority":"picker","pool":"p","inject_stream_usage":false}`,
	allowFlag:    true,
}

const keptMaxAgeMillis = 300_000

var keptVM struct {
	sync.Mutex
	tv *testVM
}

// keptInput: value is written as is when raw, else after a time stamp
// ageMillis before the guest's clock (so the fuzzer reaches fresh, old and
// future tables without guessing the fake clock).
type keptInput struct {
	value, req []byte
	ageMillis  int64
	raw        bool
}

func (in keptInput) written(guestMillis int64) []byte {
	if in.raw {
		return in.value
	}
	return append(strconv.AppendInt(nil, guestMillis-in.ageMillis, 10), append([]byte{'\n'}, in.value...)...)
}

// startKeptVM starts the shared VM if there is none; keptVM is locked.
func startKeptVM(t testing.TB) *testVM {
	if keptVM.tv == nil {
		o := keptVMOptions
		o.cache = fuzzCache()
		tv, err := startTestVM(filterWasm(t), "", o)
		if err != nil {
			t.Fatal(err)
		}
		keptVM.tv = tv
	}
	return keptVM.tv
}

// runKept writes the input's value and drives its request (every pick
// fails, as a timeout does: no picker).
func runKept(tv *testVM, in keptInput) ([]byte, result, error) {
	value := in.written(tv.clock.Load() / 1e6)
	tv.cfg.SharedData.Set(resolution.Key("p"), value, 0)
	ex := exchange{
		reqHeaders: [][2]string{{":method", "POST"}, {":path", "/v1/chat/completions"}, {":authority", "gateway"},
			{"content-type", "application/json"}, {"content-length", strconv.Itoa(len(in.req))}},
		respHeaders: jsonHeaders("200"), respChunks: [][]byte{[]byte(`{}`)},
	}
	if len(in.req) > 0 {
		ex.reqChunks = [][]byte{in.req}
	}
	r, err := drive(tv, ex)
	if err == nil {
		err = checkKept(in, value, r)
	}
	return value, r, err
}

func fuzzKeptOne(t *testing.T, in keptInput) {
	keptVM.Lock()
	defer keptVM.Unlock()
	tv := startKeptVM(t)
	value, r, err := runKept(tv, in)
	if err != nil {
		_ = tv.Close()
		keptVM.tv = nil // the next input gets a fresh VM
		t.Fatalf("%v\nvalue %q\nresult:\n%.4000s", err, clip(value), r.render())
	}
}

// checkKept: what must hold whatever the kept value.
func checkKept(in keptInput, value []byte, r result) error {
	if !r.upstream {
		return fmt.Errorf("the request did not go upstream (local reply %v, reset %v)", r.local, r.reset)
	}
	for _, kv := range r.upstreamHeaders {
		if kv[0] == pickapi.HeaderDestinationEndpoint {
			return fmt.Errorf("destination %q upstream, yet no pick answered", kv[1])
		}
	}
	if bytes.Equal(r.upstreamBody, in.req) {
		return nil // unchanged: always allowed (not virtual, no table, old, or a boundary case)
	}
	// Changed: only the model, to a target of a valid, fresh table.
	k, err := resolution.Decode(value, "p")
	if err != nil {
		return fmt.Errorf("the body changed, but the kept value is not a table (%v): %q", err, clip(r.upstreamBody))
	}
	if !in.raw && (in.ageMillis < 0 || in.ageMillis > keptMaxAgeMillis) {
		return fmt.Errorf("the body changed by a table %d ms old (max %d)", in.ageMillis, keptMaxAgeMillis)
	}
	req, err := llmapi.ParseRequest(in.req, jsonscan.DefaultMaxDepth)
	if err != nil {
		return fmt.Errorf("the body changed, but the request does not parse (%v)", err)
	}
	got, err := llmapi.ParseRequest(r.upstreamBody, jsonscan.DefaultMaxDepth)
	if err != nil {
		return fmt.Errorf("the rewritten body does not parse (%v): %q", err, clip(r.upstreamBody))
	}
	targets, ok := k.Table.Models[req.Model]
	if !ok {
		targets = k.Table.Default
	}
	found := false
	for _, tg := range targets {
		found = found || tg.Name == got.Model
	}
	if !found {
		return fmt.Errorf("model %q became %q, not one of its targets %v", req.Model, got.Model, targets)
	}
	want, ok := req.RewriteModel(in.req, got.Model)
	if !ok || !bytes.Equal(want, r.upstreamBody) {
		return fmt.Errorf("more than the model changed: %q", clip(r.upstreamBody))
	}
	return nil
}

func FuzzWasmKeptResolution(f *testing.F) {
	// Compile before fuzzing (a worker gives up on a 10 s input).
	keptVM.Lock()
	startKeptVM(f)
	keptVM.Unlock()
	for _, in := range keptSeeds(f) {
		f.Add(in.value, in.req, in.ageMillis, in.raw)
	}
	f.Fuzz(func(t *testing.T, value, req []byte, ageMillis int64, raw bool) {
		fuzzKeptOne(t, keptInput{value: value, req: req, ageMillis: ageMillis, raw: raw})
	})
}

func keptSeeds(t testing.TB) []keptInput {
	chat := fixture(t, "chat_request.json") // model tweet-summary
	table := pickapi.Resolution{Pool: "p", Models: map[string][]pickapi.Target{
		"tweet-summary": {{Name: "tweet-summary-1", Weight: 1}, {Name: "tweet-summary-2", Weight: 1}},
	}, Default: []pickapi.Target{{Name: "base \"quoted\" é", Weight: 1}}}
	table.Seal()
	good := table.AppendJSON(nil)
	other := table
	other.Pool = "q"
	other.Seal()
	return []keptInput{
		{value: good, req: chat, ageMillis: 1000},
		{value: good, req: []byte(`{"model":"anything","model":"x","prompt":"p"}`), ageMillis: 1000},
		{value: good, req: chat, ageMillis: keptMaxAgeMillis + 60_000},
		{value: good, req: chat, ageMillis: -600_000},
		{value: other.AppendJSON(nil), req: chat, ageMillis: 1000},
		{value: []byte(`{"version":"v","models":` + strings.Repeat("[", 200_000)), req: chat},
		{value: []byte(`{"version":"v","default":[{"name":"` + strings.Repeat("x", 1<<20) + `","weight":1}]}`), req: chat},
		{value: []byte("99999999999999999999\n" + string(good)), req: chat, raw: true},
		{value: []byte("meshllm.model_labels.v1"), req: chat, raw: true},
		{value: good, req: []byte(`{"model":"tweet-summary","messages":` + strings.Repeat("[", 100_000)), ageMillis: 1000},
	}
}

// The seeds reach every branch of checkKept that matters: a fresh table
// rewrites (an InferenceModel's name, and the default rule for another
// name), an old one, a future one and another pool's do not.
func TestKeptResolutionSeedsReachTheRewrite(t *testing.T) {
	keptVM.Lock()
	defer keptVM.Unlock()
	tv := startKeptVM(t)
	seeds := keptSeeds(t)
	for i, want := range []string{"tweet-summary-", `base "quoted" é`, "tweet-summary", "tweet-summary", "tweet-summary"} {
		_, r, err := runKept(tv, seeds[i])
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		got, err := llmapi.ParseRequest(r.upstreamBody, jsonscan.DefaultMaxDepth)
		if err != nil || !strings.HasPrefix(got.Model, want) || (want == "tweet-summary" && got.Model != want) {
			t.Fatalf("seed %d: model %q upstream, want %q (%v)", i, got.Model, want, err)
		}
	}
}
