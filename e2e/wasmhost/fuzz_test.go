package wasmhost

// FuzzWasmExchange drives the COMPILED filter (wasm/meshllm.wasm on wazero)
// with random request bodies, response bodies (JSON and SSE, chunked at
// random), pick answers and picker statuses. The native fuzz targets in
// filter/ cannot see a trap; this one can. Every input must leave the VM
// alive, finish its stream, and keep the invariants in checkInvariants.
//
// One VM serves every iteration of a fuzz process (instantiating costs
// about a second); it carries state across inputs (fallback cache, label
// guard, heap), as a worker's VM does in Envoy. After a failure the next
// input gets a fresh VM.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"

	"github.com/meshllm/meshllm/pickapi"
)

// fuzzVMOptions: routing at body time with the Envoy flag, so requests,
// responses and pick answers are all read; everything else default.
var fuzzVMOptions = vmOptions{
	pluginConfig: `{"route_on":"body","picker_cluster":"picker","picker_authority":"picker","pool":"p"}`,
	allowFlag:    true,
}

// fuzzMaxMemory bounds the guest's linear memory after any input. The
// steady state is 4-9 MiB; issue 8 allows a few MiB of growth after a
// hostile body; the fuzzer's inputs are at most about a MiB (the largest
// seeds), far below the 4 MiB caps. Memory never shrinks, so the bound is
// absolute.
const fuzzMaxMemory = 32 << 20

// fuzzInput is one input of FuzzWasmExchange.
type fuzzInput struct {
	name            string
	req, resp, pick []byte
	shape           uint64
}

// Bits of fuzzInput.shape.
const (
	shapePath       = 0x7 << 0  // which request (fuzzPaths)
	shapeSSE        = 1 << 3    // the response is an event stream (else JSON)
	shapeGzip       = 1 << 4    // the response is gzip-encoded
	shapeStatus     = 0x7 << 5  // response status (fuzzStatuses)
	shapePickStatus = 0x7 << 8  // picker status (fuzzStatuses)
	shapeCallFails  = 1 << 11   // the pick call fails (no answer, as a timeout)
	shapeSpoof      = 1 << 12   // the client sends x-gateway-destination-endpoint
	shapeReqCuts    = 0x7 << 13 // number of request chunk cuts
	shapeRespCuts   = 0xf << 16 // number of response chunk cuts
	shapeCR         = 1 << 20   // response line feeds become CR
	shapeCRLF       = 1 << 21   // response line feeds become CRLF
	shapeNoRespBody = 1 << 22   // the response headers end the stream
	shapeNoResponse = 1 << 23   // the upstream resets: no response at all
	shapeSeedShift  = 32        // the rest seeds the cut positions
)

var fuzzStatuses = [8]int{200, 200, 200, 200, 404, 429, 503, 500}

var fuzzPaths = [8]struct{ method, path, ctype string }{
	{"POST", "/v1/chat/completions", "application/json"},
	{"POST", "/v1/chat/completions", "application/json"},
	{"POST", "/v1/completions", "application/json"},
	{"POST", "/v1/embeddings", "application/json"},
	{"POST", "/v1/responses", "application/json; charset=utf-8"},
	{"GET", "/v1/models", ""},
	{"POST", "/upload", "application/json"},
	{"POST", "/v1/chat/completions", "text/plain"},
}

// cuts splits b at n positions drawn from rng (empty chunks included, as
// a host may deliver them).
func cuts(b []byte, n int, rng *rand.Rand) [][]byte {
	pos := make([]int, n)
	for i := range pos {
		pos[i] = rng.IntN(len(b) + 1)
	}
	for i := 1; i < len(pos); i++ { // insertion sort: n is small
		for j := i; j > 0 && pos[j] < pos[j-1]; j-- {
			pos[j], pos[j-1] = pos[j-1], pos[j]
		}
	}
	out := make([][]byte, 0, n+1)
	prev := 0
	for _, p := range pos {
		out = append(out, b[prev:p])
		prev = p
	}
	return append(out, b[prev:])
}

// exchange builds the exchange an input describes.
func (in fuzzInput) exchange() exchange {
	rng := rand.New(rand.NewPCG(in.shape>>shapeSeedShift, 0x6d6573686c6c6d))
	p := fuzzPaths[in.shape&shapePath]
	hs := [][2]string{{":method", p.method}, {":path", p.path}, {":authority", "gateway"}, {":scheme", "http"}}
	if p.ctype != "" {
		hs = append(hs, [2]string{"content-type", p.ctype})
	}
	if len(in.req) > 0 {
		hs = append(hs, [2]string{"content-length", strconv.Itoa(len(in.req))})
	}
	if in.shape&shapeSpoof != 0 {
		hs = append(hs, [2]string{pickapi.HeaderDestinationEndpoint, spoofedEndpoint})
	}
	ex := exchange{reqHeaders: hs}
	if len(in.req) > 0 {
		ex.reqChunks = cuts(in.req, int(in.shape&shapeReqCuts>>13), rng)
	}
	if in.shape&shapeCallFails == 0 {
		status, body := fuzzStatuses[in.shape&shapePickStatus>>8], in.pick
		ex.pick = func(CallRequest) CallResponse {
			return CallResponse{Headers: [][2]string{{":status", strconv.Itoa(status)}}, Body: body}
		}
	}
	if in.shape&shapeNoResponse != 0 {
		return ex
	}
	resp := in.resp
	switch {
	case in.shape&shapeCR != 0:
		resp = bytes.ReplaceAll(resp, []byte("\n"), []byte("\r"))
	case in.shape&shapeCRLF != 0:
		resp = bytes.ReplaceAll(resp, []byte("\n"), []byte("\r\n"))
	}
	ex.respHeaders = [][2]string{{":status", strconv.Itoa(fuzzStatuses[in.shape&shapeStatus>>5])}}
	if in.shape&shapeSSE != 0 {
		ex.respHeaders = append(ex.respHeaders, [2]string{"content-type", "text/event-stream"})
	} else {
		ex.respHeaders = append(ex.respHeaders, [2]string{"content-type", "application/json"})
	}
	if in.shape&shapeGzip != 0 {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, _ = zw.Write(resp)
		_ = zw.Close()
		resp = gz.Bytes()
		ex.respHeaders = append(ex.respHeaders, [2]string{"content-encoding", "gzip"})
	}
	if in.shape&shapeNoRespBody == 0 && len(resp) > 0 {
		ex.respChunks = cuts(resp, int(in.shape&shapeRespCuts>>16), rng)
	}
	return ex
}

// checkInvariants: what must hold for any input, beyond "no trap, no hang".
func checkInvariants(tv *testVM, in fuzzInput, ex exchange, r result) error {
	// 1. The client never chooses the upstream: a destination the picker
	// did not give never goes upstream.
	var dests []string
	for _, kv := range r.upstreamHeaders {
		if kv[0] == pickapi.HeaderDestinationEndpoint {
			dests = append(dests, kv[1])
		}
	}
	switch {
	case len(dests) > 1:
		return fmt.Errorf("%d destination headers upstream: %q", len(dests), dests)
	case len(dests) == 1 && len(r.calls) == 0:
		return fmt.Errorf("destination %q upstream, yet the picker was not asked", dests[0])
	case len(dests) == 1 && pickapi.ValidateEndpoint(dests[0]) != nil:
		return fmt.Errorf("destination %q upstream is not an ip:port", dests[0])
	case len(dests) == 1 && dests[0] == spoofedEndpoint && !tv.wasAnswered(spoofedEndpoint):
		return fmt.Errorf("the client's destination %q went upstream", spoofedEndpoint)
	}
	// 2. The filter never holds a response back.
	for i, a := range r.respActions {
		if a != Continue {
			return fmt.Errorf("response callback %d returned %v", i, a)
		}
	}
	// 3. The client receives the response (the upstream's, or the filter's
	// own local reply) byte for byte, minus at most one usage chunk, and
	// only when the filter asked for usage the client did not.
	if r.reset || (r.local == nil && ex.respHeaders == nil) {
		return nil
	}
	var sent []byte
	if r.local != nil {
		sent = r.local.Body
	} else {
		for _, c := range ex.respChunks {
			sent = append(sent, c...)
		}
	}
	injected := bytes.Count(r.upstreamBody, []byte("include_usage")) > bytes.Count(in.req, []byte("include_usage"))
	if bytes.Equal(sent, r.clientBody) {
		// Nothing removed: right unless the filter asked for usage the
		// client did not ask for, and a plain usage-only chunk came back.
		if r.local == nil && injected && !bytes.Contains(in.req, []byte("include_usage")) &&
			isEventStream(ex.respHeaders) && hasUsageOnlyEvent(sent) {
			return fmt.Errorf("the usage chunk the filter asked for reached the client, who did not ask for it")
		}
		return nil
	}
	if !injected || r.local != nil {
		return fmt.Errorf("the client received %d bytes that differ from the %d sent (no usage was injected)", len(r.clientBody), len(sent))
	}
	if removed, ok := removedSegment(sent, r.clientBody); !ok || !bytes.Contains(removed, []byte("usage")) {
		return fmt.Errorf("the client received %q, not the response %q minus one usage chunk", clip(r.clientBody), clip(sent))
	}
	return nil
}

// removedSegment reports whether got is sent with one contiguous segment
// cut out, and returns a segment that fits (the leftmost).
func removedSegment(sent, got []byte) ([]byte, bool) {
	if len(got) >= len(sent) {
		return nil, false
	}
	pre := 0
	for pre < len(got) && sent[pre] == got[pre] {
		pre++
	}
	suf := 0
	for suf < len(got) && sent[len(sent)-1-suf] == got[len(got)-1-suf] {
		suf++
	}
	if pre+suf < len(got) {
		return nil, false
	}
	start := len(got) - suf
	return sent[start : start+len(sent)-len(got)], true
}

// isEventStream: an unencoded text/event-stream response (the only kind the
// filter can rewrite).
func isEventStream(hs [][2]string) bool {
	sse := false
	for _, kv := range hs {
		switch kv[0] {
		case "content-type":
			sse = strings.HasPrefix(kv[1], "text/event-stream")
		case "content-encoding":
			return false
		}
	}
	return sse
}

// hasUsageOnlyEvent reports whether stream holds a complete, plain
// usage-only chunk, framed as the SSE spec says (lines end in CRLF, LF or
// CR; a blank line ends an event; data lines join with LF).
func hasUsageOnlyEvent(stream []byte) bool {
	var data []byte
	inData := false
	for {
		i := bytes.IndexAny(stream, "\r\n")
		if i < 0 {
			return false // the rest is not a complete line
		}
		line := stream[:i]
		if stream[i] == '\r' && i+1 < len(stream) && stream[i+1] == '\n' {
			i++
		}
		stream = stream[i+1:]
		if len(line) == 0 {
			if inData && usageOnly(data) {
				return true
			}
			data, inData = data[:0], false
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if string(field) == "data" {
			if inData {
				data = append(data, '\n')
			}
			data, inData = append(data, bytes.TrimPrefix(value, []byte(" "))...), true
		}
	}
}

// usageOnly: what vLLM sends for include_usage, and nothing a reader
// could read otherwise: a JSON object of at most 64 KiB, no key twice,
// "choices" [] and "usage" with prompt_tokens and completion_tokens as
// plain non-negative integers.
func usageOnly(data []byte) bool {
	if len(data) > 64<<10 || !json.Valid(data) {
		return false
	}
	top, ok := uniqueObject(data)
	if !ok || !bytes.Equal(bytes.Join(bytes.Fields(top["choices"]), nil), []byte("[]")) {
		return false
	}
	usage, ok := uniqueObject(top["usage"])
	if !ok {
		return false
	}
	for _, k := range []string{"prompt_tokens", "completion_tokens"} {
		if n, err := strconv.ParseUint(string(usage[k]), 10, 53); err != nil || n > 1<<53 {
			return false
		}
	}
	return true
}

// uniqueObject decodes a JSON object whose keys are all distinct.
func uniqueObject(b []byte) (map[string]json.RawMessage, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		k, isKey := t.(string)
		if _, dup := out[k]; err != nil || !isKey || dup {
			return nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		out[k] = v
	}
	return out, true
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// wasAnswered reports whether any pick answer given to the VM named s.
func (tv *testVM) wasAnswered(s string) bool {
	tv.mu.Lock()
	defer tv.mu.Unlock()
	for _, b := range tv.seen {
		if bytes.Contains(b, []byte(strings.Split(s, ":")[0])) {
			return true
		}
	}
	return false
}

// processVM is the VM of a fuzz process.
type processVM struct {
	sync.Mutex
	tv *testVM
}

var fuzzVM processVM

// fuzzCache keeps compiled code on disk while fuzzing: a worker's code is
// instrumented for coverage, which makes wazero's compiler take some 30 s,
// and the coordinator restarts workers. wazero keys the files by module
// and wazero version. Plain go test keeps to memory (detCache).
var fuzzCache = sync.OnceValue(func() wazero.CompilationCache {
	if f := flag.Lookup("test.fuzz"); f == nil || f.Value.String() == "" {
		return detCache
	}
	c, err := wazero.NewCompilationCacheWithDir(filepath.Join(os.TempDir(), "meshllm-wazero-fuzz-cache"))
	if err != nil {
		return detCache
	}
	return c
})

// start instantiates the VM if there is none.
func (v *processVM) start(wasm []byte) error {
	if v.tv != nil {
		return nil
	}
	o := fuzzVMOptions
	o.cache = fuzzCache()
	tv, err := startTestVM(wasm, "", o)
	v.tv = tv
	return err
}

// fuzzOne runs one input on the process's VM.
func fuzzOne(t *testing.T, in fuzzInput) {
	fuzzVM.Lock()
	defer fuzzVM.Unlock()
	if err := fuzzVM.start(filterWasm(t)); err != nil {
		t.Fatal(err)
	}
	tv := fuzzVM.tv
	ex := in.exchange()
	r, err := drive(tv, ex)
	if err == nil {
		err = checkInvariants(tv, in, ex, r)
		if err == nil && r.memBytes > fuzzMaxMemory {
			err = fmt.Errorf("linear memory is %d MiB (bound %d MiB)", r.memBytes>>20, fuzzMaxMemory>>20)
		}
		if err == nil {
			return
		}
	}
	tv.mu.Lock()
	tail := string(tv.stderr.tail)
	tv.mu.Unlock()
	_ = tv.Close()
	fuzzVM.tv = nil // the next input gets a fresh VM
	t.Fatalf("%v\nguest stderr: %.2000s\nresult:\n%.4000s", err, tail, r.render())
}

func FuzzWasmExchange(f *testing.F) {
	// Compile before fuzzing: a fuzz worker gives up on any input that
	// takes over 10 s (internal/fuzz RunFuzzWorker), compiling included.
	fuzzVM.Lock()
	err := fuzzVM.start(filterWasm(f))
	fuzzVM.Unlock()
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range fuzzSeeds(f) {
		f.Add(in.req, in.resp, in.pick, in.shape)
	}
	f.Fuzz(func(t *testing.T, req, resp, pick []byte, shape uint64) {
		fuzzOne(t, fuzzInput{req: req, resp: resp, pick: pick, shape: shape})
	})
}

// fuzzSeeds are the hand-written seeds: the fixtures, and hostile shapes.
func fuzzSeeds(t testing.TB) []fuzzInput {
	chatReq, chatResp := fixture(t, "chat_request.json"), fixture(t, "chat_response.json")
	streamReq, usageReq := fixture(t, "chat_stream_request.json"), fixture(t, "chat_stream_usage_request.json")
	usageStream, completions := fixture(t, "chat_stream_usage.sse"), fixture(t, "completions_stream_usage.sse")
	pick := []byte(`{"endpoint":"10.0.0.1:8000","target_model":"tweet-summary-lora-2","strategy":"DEFAULT","pool":"p","fallbacks":["10.0.0.2:8000"]}`)
	const json, sse, spoof = 0, shapeSSE, shapeSpoof
	cut := func(req, resp int) uint64 { return uint64(req)<<13 | uint64(resp)<<16 | 0x9e3779b9<<shapeSeedShift }
	deep := func(open string, n int) string { return strings.Repeat(open, n) }
	arrays, objects := deep("[", 100_000), deep(`{"a":`, 50_000)
	huge := strings.Repeat("x", 1<<20)
	in := func(name, req, resp, pick string, shape uint64) fuzzInput {
		return fuzzInput{name: name, req: []byte(req), resp: []byte(resp), pick: []byte(pick), shape: shape}
	}
	return []fuzzInput{
		{name: "chat", req: chatReq, resp: chatResp, pick: pick, shape: json | spoof | cut(1, 2)},
		{name: "stream injected", req: streamReq, resp: usageStream, pick: pick, shape: sse | spoof | cut(2, 5)},
		{name: "stream with client usage", req: usageReq, resp: usageStream, pick: pick, shape: sse | cut(0, 9)},
		{name: "completions CRLF", req: fixture(t, "completions_stream_request.json"), resp: completions, pick: pick, shape: 2 | sse | cut(0, 15)},
		{name: "stream CR only", req: streamReq, resp: usageStream, pick: pick, shape: sse | shapeCR | cut(0, 7)},
		{name: "stream gzip", req: streamReq, resp: usageStream, pick: pick, shape: sse | shapeGzip | cut(0, 3)},
		{name: "json gzip", req: chatReq, resp: chatResp, pick: pick, shape: json | shapeGzip | cut(0, 3)},
		{name: "picker refuses", req: chatReq, resp: chatResp, pick: []byte(`{"error":{"message":"no","type":"NotFoundError","code":404}}`), shape: 4<<8 | spoof},
		{name: "picker fails", req: chatReq, resp: chatResp, shape: shapeCallFails | spoof},
		in("pick naming a resolution table", string(chatReq), string(chatResp), `{"endpoint":"10.0.0.1:8000","pool":"p","resolution":"5c0e1b9d7a3f2e41"}`, spoof),
		{name: "picker names the spoofed endpoint", req: chatReq, resp: chatResp, pick: []byte(`{"endpoint":"` + spoofedEndpoint + `"}`), shape: spoof},
		{name: "no response", req: chatReq, pick: pick, shape: shapeNoResponse},
		{name: "not an LLM call", req: chatReq, resp: chatResp, pick: pick, shape: 5 | spoof},
		// Deep nesting: gjson.ValidBytes recurses once per level.
		in("deep arrays in the body", arrays, string(chatResp), string(pick), spoof),
		in("deeper arrays in the body", deep("[", 600_000), string(chatResp), string(pick), 0), // ~520 KB traps wazero's compiler
		in("deep objects in the body", objects, string(chatResp), string(pick), spoof),
		in("deep arrays in messages", `{"model":"m","messages":`+arrays, string(chatResp), string(pick), spoof),
		in("deep objects in messages", `{"model":"m","messages":[{"role":"user","content":`+objects+`}]}`, string(chatResp), string(pick), spoof),
		in("deep arrays in an SSE data line", string(streamReq), "data: "+arrays+"\n\n"+string(usageStream), string(pick), sse|cut(0, 3)),
		in("deep objects in an SSE data line", string(streamReq), "data: {\"usage\":"+objects+"\n\ndata: [DONE]\n\n", string(pick), sse),
		in("deep arrays in a JSON response", string(chatReq), `{"usage":`+arrays, string(pick), json),
		in("deep arrays in a pick answer", string(chatReq), string(chatResp), `{"endpoint":"10.0.0.1:8000","fallbacks":`+arrays, spoof),
		in("deep objects in a refusal", string(chatReq), string(chatResp), `{"error":`+objects, 4<<8),
		// Huge strings, duplicate keys, invalid UTF-8, NaN.
		in("huge model name", `{"model":"`+huge+`","messages":[]}`, string(chatResp), string(pick), 0),
		in("huge target model", string(chatReq), string(chatResp), `{"endpoint":"10.0.0.1:8000","target_model":"`+huge+`"}`, 0),
		in("huge SSE event", string(streamReq), "data: {\"x\":\""+huge+"\"}\n\n"+string(usageStream), string(pick), sse|cut(0, 4)),
		in("duplicate keys", `{"model":"base","model":"chat-model","stream":"true","stream":1,"stream_options":{"include_usage":true},"stream_options":null,"messages":[]}`,
			string(usageStream), string(pick), sse|spoof),
		in("duplicate keys in a pick", string(chatReq), string(chatResp), `{"endpoint":"`+spoofedEndpoint+`","endpoint":"10.0.0.9:1","target_model":"a","target_model":"b"}`, spoof),
		in("invalid UTF-8", "{\"model\":\"\xff\xfe\xc0\x80\",\"messages\":[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]}",
			"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":\"\xff\"}}\n\n", "{\"endpoint\":\"10.0.0.1:8000\",\"target_model\":\"\xff\"}", sse),
		in("NaN and overflow", `{"model":"m","max_tokens":NaN,"temperature":Infinity,"n":1e400,"messages":[]}`,
			`{"usage":{"prompt_tokens":NaN,"completion_tokens":1e400,"total_tokens":-1}}`, `{"endpoint":"10.0.0.1:8000","weight":NaN}`, json),
		in("newline in the model name", `{"model":"a\nb\r\nc","messages":[]}`, string(chatResp), `{"endpoint":"10.0.0.1:8000","target_model":"x\ny"}`, 0),
		in("empty everything", "", "", "", 0),
	}
}

// fuzzCorpus is the seed corpus: fuzzSeeds and the committed files in
// testdata/fuzz/FuzzWasmExchange (inputs go test -fuzz found).
func fuzzCorpus(t testing.TB) []fuzzInput {
	seeds := fuzzSeeds(t)
	files, err := filepath.Glob("testdata/fuzz/FuzzWasmExchange/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		in, err := readCorpusFile(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		seeds = append(seeds, in)
	}
	return seeds
}

// readCorpusFile parses a "go test fuzz v1" file of FuzzWasmExchange's
// arguments ([]byte, []byte, []byte, uint64).
func readCorpusFile(name string) (fuzzInput, error) {
	f, err := os.Open(name)
	if err != nil {
		return fuzzInput{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fuzzInput{}, err
	}
	if len(lines) != 5 || lines[0] != "go test fuzz v1" {
		return fuzzInput{}, fmt.Errorf("not a FuzzWasmExchange corpus file (%d lines)", len(lines))
	}
	in := fuzzInput{name: filepath.Base(name)}
	for i, dst := range []*[]byte{&in.req, &in.resp, &in.pick} {
		lit, ok := strings.CutPrefix(lines[i+1], "[]byte(")
		if !ok || !strings.HasSuffix(lit, ")") {
			return in, fmt.Errorf("line %d: want []byte(...)", i+2)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if err != nil {
			return in, fmt.Errorf("line %d: %v", i+2, err)
		}
		*dst = []byte(s)
	}
	lit, ok := strings.CutPrefix(lines[4], "uint64(")
	if !ok {
		return in, fmt.Errorf("line 5: want uint64(...)")
	}
	in.shape, err = strconv.ParseUint(strings.TrimSuffix(lit, ")"), 10, 64)
	return in, err
}

// The invariants can fail: each case breaks one.
func TestFuzzInvariantsCatchViolations(t *testing.T) {
	stream := fixture(t, "chat_stream_usage.sse")
	short := shortStream(stream)
	usageAt := bytes.Index(short, []byte(`data: {"id":"chatcmpl-77ab","object":"chat.completion.chunk","created":1763700002,"model":"tweet-summary-1","choices":[],`))
	require.Positive(t, usageAt)
	stripped := append(append([]byte(nil), short[:usageAt]...), short[bytes.Index(short, []byte("data: [DONE]")):]...)
	client := []byte(`{"model":"m","stream":true,"messages":[]}`)
	upstream := []byte(`{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}`)
	in := fuzzInput{req: client}
	ex := exchange{respHeaders: sseHeaders(), respChunks: [][]byte{short}}
	dest := func(v string) [][2]string { return [][2]string{{":path", "/"}, {pickapi.HeaderDestinationEndpoint, v}} }
	ok := result{upstream: true, upstreamBody: upstream, clientBody: stripped, respActions: []Action{Continue, Continue}}
	tv := &testVM{}
	require.NoError(t, checkInvariants(tv, in, ex, ok), "the injected usage chunk removed: fine")

	for name, r := range map[string]result{
		"a destination without a pick":       {upstreamHeaders: dest("10.0.0.1:80"), clientBody: short},
		"the client's destination":           {upstreamHeaders: dest(spoofedEndpoint), calls: []CallRequest{{}}, clientBody: short},
		"a destination that is no ip:port":   {upstreamHeaders: dest("evil.example:80"), calls: []CallRequest{{}}, clientBody: short},
		"two destinations":                   {upstreamHeaders: append(dest("10.0.0.1:80"), dest("10.0.0.2:80")...), calls: []CallRequest{{}}, clientBody: short},
		"a response held back":               {respActions: []Action{Continue, Pause}, clientBody: short},
		"bytes changed":                      {upstreamBody: client, clientBody: append([]byte("x"), short...)},
		"a chunk removed, none injected":     {upstreamBody: client, clientBody: stripped},
		"a non-usage chunk removed":          {upstreamBody: upstream, clientBody: short[len(short)/2:]},
		"the usage chunk reached the client": {upstreamBody: upstream, clientBody: short},
	} {
		require.Error(t, checkInvariants(tv, in, ex, r), name)
	}
	require.False(t, hasUsageOnlyEvent([]byte(`data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}`)), "no blank line: not an event yet")
	require.True(t, hasUsageOnlyEvent([]byte("data: {\"choices\":[],\r\ndata: \"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\r")), "two data lines, CRLF and CR")
	require.False(t, hasUsageOnlyEvent([]byte("data: {\"choices\":[],\"choices\":[1],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n")), "a key twice")
}
