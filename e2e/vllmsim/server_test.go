package vllmsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run real servers over HTTP on 127.0.0.1 with a high speed
// factor; they assert on content and counters, never on wall-clock time.

func startFleet(t *testing.T, cfgs ...Config) *Fleet {
	t.Helper()
	for i := range cfgs {
		// At high speed factors the loop often trails its clock; that is
		// expected here and its warnings would only be noise.
		cfgs[i].Logger = slog.New(slog.DiscardHandler)
	}
	f, err := StartFleet(context.Background(), cfgs)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	return f
}

func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int     `json:"index"`
		Text  *string `json:"text"`
		Delta *struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

// readSSE parses a whole SSE body into its JSON chunks, checking framing
// and that [DONE] comes last.
func readSSE(t *testing.T, body []byte) []chunk {
	t.Helper()
	require.True(t, bytes.HasSuffix(body, []byte("data: [DONE]\n\n")), "stream ends with [DONE]")
	var out []chunk
	for _, ev := range strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		require.True(t, ok, "event %q", ev)
		if data == "[DONE]" {
			continue
		}
		var c chunk
		require.NoError(t, json.Unmarshal([]byte(data), &c), data)
		out = append(out, c)
	}
	return out
}

func TestStreamingChatWithUsage(t *testing.T) {
	f := startFleet(t, Config{Speed: 1000})
	code, body := post(t, f.URLs()[0]+"/v1/chat/completions",
		`{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"Say hello"}],"max_tokens":12,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`)
	require.Equal(t, 200, code, string(body))
	chunks := readSSE(t, body)
	require.Len(t, chunks, 1+12+1, "role chunk, one chunk per token, usage chunk")
	first := chunks[0].Choices[0]
	assert.Equal(t, "assistant", *first.Delta.Role)
	text := ""
	for i, c := range chunks[1:13] {
		assert.Equal(t, "chat.completion.chunk", c.Object)
		assert.Nil(t, c.Usage)
		text += *c.Choices[0].Delta.Content
		if i < 11 {
			assert.Nil(t, c.Choices[0].FinishReason)
		}
	}
	assert.Equal(t, "length", *chunks[12].Choices[0].FinishReason)
	last := chunks[13]
	assert.Empty(t, last.Choices)
	require.NotNil(t, last.Usage)
	prompt := countTokens(len(renderChat([]chatMessage{{"user", "Say hello"}}, defaultChatTemplate)))
	assert.Equal(t, usage{prompt, 12, prompt + 12}, *last.Usage)
	assert.Equal(t, 12, countTokens(len(text)), "generated text re-tokenizes to completion_tokens")
}

func TestStreamingCompletionWithoutUsage(t *testing.T) {
	f := startFleet(t, Config{Speed: 1000})
	code, body := post(t, f.URLs()[0]+"/v1/completions", `{"prompt":"abc","max_tokens":5,"ignore_eos":true,"stream":true}`)
	require.Equal(t, 200, code)
	chunks := readSSE(t, body)
	require.Len(t, chunks, 5)
	for _, c := range chunks {
		assert.Equal(t, "text_completion", c.Object)
		assert.Nil(t, c.Usage, "no usage in a stream without include_usage")
		assert.NotNil(t, c.Choices[0].Text)
	}
	assert.NotContains(t, string(body), "usage")
}

func TestNonStreamingAndLoRAModelName(t *testing.T) {
	f := startFleet(t, Config{Speed: 1000, LoRAModules: []LoRAModule{{"sql-lora", "/adapters/sql"}, {"tweet-summary", "/adapters/tweet"}}, MaxLoRAs: 1})
	code, body := post(t, f.URLs()[0]+"/v1/completions", `{"model":"tweet-summary","prompt":"Write as if you were a critic","max_tokens":7,"ignore_eos":true}`)
	require.Equal(t, 200, code, string(body))
	var resp struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Text         string `json:"text"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	require.NoError(t, json.Unmarshal(body, &resp))
	assert.Equal(t, "tweet-summary", resp.Model, "the response names the adapter that served it")
	assert.Equal(t, "text_completion", resp.Object)
	assert.Equal(t, usage{8, 7, 15}, resp.Usage) // 29 bytes -> 8 tokens
	assert.Equal(t, 7, countTokens(len(resp.Choices[0].Text)))
	assert.Equal(t, "length", resp.Choices[0].FinishReason)

	code, body = post(t, f.URLs()[0]+"/v1/chat/completions", `{"model":"sql-lora","messages":[{"role":"user","content":"q"}],"max_completion_tokens":3,"max_tokens":100,"ignore_eos":true}`)
	require.Equal(t, 200, code, string(body))
	var chat struct {
		Model   string `json:"model"`
		Object  string `json:"object"`
		Choices []struct {
			Message struct{ Role, Content string } `json:"message"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	require.NoError(t, json.Unmarshal(body, &chat))
	assert.Equal(t, "sql-lora", chat.Model)
	assert.Equal(t, "chat.completion", chat.Object)
	assert.Equal(t, "assistant", chat.Choices[0].Message.Role)
	assert.Equal(t, 3, chat.Usage.CompletionTokens, "max_completion_tokens wins over max_tokens")
}

func TestModelsListsAdaptersWithParent(t *testing.T) {
	f := startFleet(t, Config{Model: "base", LoRAModules: []LoRAModule{{"a1", "/p/a1"}}})
	resp, err := http.Get(f.URLs()[0] + "/v1/models")
	require.NoError(t, err)
	defer resp.Body.Close()
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID     string  `json:"id"`
			Root   string  `json:"root"`
			Parent *string `json:"parent"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	require.Len(t, list.Data, 2)
	assert.Equal(t, "base", list.Data[0].ID)
	assert.Nil(t, list.Data[0].Parent)
	assert.Equal(t, "a1", list.Data[1].ID)
	assert.Equal(t, "/p/a1", list.Data[1].Root)
	assert.Equal(t, "base", *list.Data[1].Parent)

	h, err := http.Get(f.URLs()[0] + "/health")
	require.NoError(t, err)
	h.Body.Close()
	assert.Equal(t, 200, h.StatusCode)
}

func TestErrors(t *testing.T) {
	f := startFleet(t, Config{Speed: 1000, MaxModelLen: 1024, LoRAModules: []LoRAModule{{"a", "/a"}}},
		Config{Speed: 1000, LegacyErrors: true})
	cases := []struct {
		path, body string
		status     int
		contains   string
	}{
		{"/v1/completions", `{"model":"nope","prompt":"x"}`, 404, "The model `nope` does not exist."},
		{"/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404, "does not exist"},
		{"/v1/completions", `{"prompt":`, 400, "invalid request body"},
		{"/v1/completions", `[1,2]`, 400, "invalid request body"},
		{"/v1/completions", `{"prompt":"x","max_tokens":0}`, 400, "max_tokens must be at least 1"},
		{"/v1/completions", `{"prompt":"x","max_tokens":"ten"}`, 400, "invalid request body"},
		{"/v1/completions", `{"max_tokens":3}`, 400, "prompt is required"},
		{"/v1/completions", `{"prompt":{"a":1}}`, 400, "prompt must be"},
		{"/v1/completions", `{"prompt":"x","max_tokens":5000}`, 400, "maximum context length is 1024 tokens"},
		{"/v1/completions", `{"prompt":"x","stream_options":{"include_usage":true}}`, 400, "stream=True"},
		{"/v1/completions", `{"prompt":"x","n":2}`, 400, "n=2"},
		{"/v1/chat/completions", `{"messages":[]}`, 400, "messages cannot be empty"},
		{"/v1/chat/completions", `{"messages":[{"content":"x"}]}`, 400, "role is required"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "only text parts"},
	}
	for _, c := range cases {
		code, body := post(t, f.URLs()[0]+c.path, c.body)
		assert.Equal(t, c.status, code, "%s %s", c.body, body)
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
				Code    int     `json:"code"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(body, &e), string(body))
		assert.Contains(t, e.Error.Message, c.contains)
		assert.Equal(t, c.status, e.Error.Code)
		assert.Equal(t, map[int]string{400: "BadRequestError", 404: "NotFoundError"}[c.status], e.Error.Type)
	}
	// The old flat shape behind a flag.
	code, body := post(t, f.URLs()[1]+"/v1/completions", `{"model":"nope","prompt":"x"}`)
	assert.Equal(t, 404, code)
	var flat map[string]any
	require.NoError(t, json.Unmarshal(body, &flat))
	assert.Equal(t, "error", flat["object"])
	assert.Equal(t, "NotFoundError", flat["type"])
	assert.EqualValues(t, 404, flat["code"])
	assert.Contains(t, flat["message"], "does not exist")
}

// TestUsageEqualsCounters sends a concurrent mix of request kinds and checks
// that the usage the responses report sums exactly to the servers' own
// prompt and generation counters, as read from /metrics.
func TestUsageEqualsCounters(t *testing.T) {
	f := startFleet(t, Config{Speed: 500}, Config{Speed: 500, LoRAModules: []LoRAModule{{"ad", "/ad"}}})
	bodies := []string{
		`{"prompt":"PROMPT","max_tokens":20}`,
		`{"prompt":"PROMPT","max_tokens":30,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":["PROMPT","PROMPT and more"],"max_tokens":9,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"prompt":[1,2,3,4,5,6,7],"max_tokens":11,"ignore_eos":true}`,
		`{"prompt":[[1,2],[3,4,5]],"max_tokens":4}`,
	}
	chats := []string{
		`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"PROMPT"}],"max_tokens":25}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"PROMPT"}]}],"max_completion_tokens":17,"stream":true,"stream_options":{"include_usage":true}}`,
	}
	type job struct{ url, body string }
	var jobs []job
	for i := 0; i < 8; i++ {
		for si, base := range f.URLs() {
			model := ""
			if si == 1 && i%2 == 0 {
				model = `"model":"ad",`
			}
			for _, b := range bodies {
				jobs = append(jobs, job{base + "/v1/completions", "{" + model + strings.ReplaceAll(b, "PROMPT", fmt.Sprint("prompt number ", i))[1:]})
			}
			for _, b := range chats {
				jobs = append(jobs, job{base + "/v1/chat/completions", "{" + model + strings.ReplaceAll(b, "PROMPT", fmt.Sprint("question ", i))[1:]})
			}
		}
	}
	want := make([]usage, len(f.Servers))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := post(t, j.url, j.body)
			if !assert.Equal(t, 200, code, string(body)) {
				return
			}
			var u usage
			if bytes.HasPrefix(body, []byte("data: ")) {
				chunks := readSSE(t, body)
				u = *chunks[len(chunks)-1].Usage
			} else {
				var r struct{ Usage usage }
				assert.NoError(t, json.Unmarshal(body, &r))
				u = r.Usage
			}
			assert.Equal(t, u.PromptTokens+u.CompletionTokens, u.TotalTokens)
			mu.Lock()
			defer mu.Unlock()
			i := slices.IndexFunc(f.URLs(), func(s string) bool { return strings.HasPrefix(j.url, s) })
			want[i].PromptTokens += u.PromptTokens
			want[i].CompletionTokens += u.CompletionTokens
		}()
	}
	wg.Wait()
	for i, url := range f.URLs() {
		fams := scrape(t, url)
		assert.Equal(t, float64(want[i].PromptTokens), value(t, fams, "vllm:prompt_tokens_total"), "server %d", i)
		assert.Equal(t, float64(want[i].CompletionTokens), value(t, fams, "vllm:generation_tokens_total"), "server %d", i)
		st := f.Servers[i].Stats()
		assert.Equal(t, uint64(want[i].CompletionTokens), st.GenerationTokens)
		assert.Zero(t, st.Running+st.Waiting)
	}
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/plain; version=0.0.4; charset=utf-8", resp.Header.Get("Content-Type"))
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f, ok := fams[name]
	require.True(t, ok, name)
	m := f.GetMetric()[0]
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s: not a counter or gauge", name)
	return 0
}

// The metric families a vLLM v1 server (0.11 era) exposes with LoRA on, and
// a v0-engine server. Names as they appear in the exposition.
var (
	wantV1 = map[string]dto.MetricType{
		"vllm:num_requests_running":                  dto.MetricType_GAUGE,
		"vllm:num_requests_waiting":                  dto.MetricType_GAUGE,
		"vllm:kv_cache_usage_perc":                   dto.MetricType_GAUGE,
		"vllm:prefix_cache_queries_total":            dto.MetricType_COUNTER,
		"vllm:prefix_cache_hits_total":               dto.MetricType_COUNTER,
		"vllm:num_preemptions_total":                 dto.MetricType_COUNTER,
		"vllm:prompt_tokens_total":                   dto.MetricType_COUNTER,
		"vllm:generation_tokens_total":               dto.MetricType_COUNTER,
		"vllm:request_success_total":                 dto.MetricType_COUNTER,
		"vllm:request_prompt_tokens":                 dto.MetricType_HISTOGRAM,
		"vllm:request_generation_tokens":             dto.MetricType_HISTOGRAM,
		"vllm:iteration_tokens_total":                dto.MetricType_HISTOGRAM,
		"vllm:request_max_num_generation_tokens":     dto.MetricType_HISTOGRAM,
		"vllm:request_params_n":                      dto.MetricType_HISTOGRAM,
		"vllm:request_params_max_tokens":             dto.MetricType_HISTOGRAM,
		"vllm:time_to_first_token_seconds":           dto.MetricType_HISTOGRAM,
		"vllm:inter_token_latency_seconds":           dto.MetricType_HISTOGRAM,
		"vllm:request_time_per_output_token_seconds": dto.MetricType_HISTOGRAM,
		"vllm:e2e_request_latency_seconds":           dto.MetricType_HISTOGRAM,
		"vllm:request_queue_time_seconds":            dto.MetricType_HISTOGRAM,
		"vllm:request_inference_time_seconds":        dto.MetricType_HISTOGRAM,
		"vllm:request_prefill_time_seconds":          dto.MetricType_HISTOGRAM,
		"vllm:request_decode_time_seconds":           dto.MetricType_HISTOGRAM,
		"vllm:lora_requests_info":                    dto.MetricType_GAUGE,
		"vllm:cache_config_info":                     dto.MetricType_GAUGE,
	}
	wantV0 = map[string]dto.MetricType{
		"vllm:num_requests_running":              dto.MetricType_GAUGE,
		"vllm:num_requests_waiting":              dto.MetricType_GAUGE,
		"vllm:num_requests_swapped":              dto.MetricType_GAUGE,
		"vllm:gpu_cache_usage_perc":              dto.MetricType_GAUGE,
		"vllm:cpu_cache_usage_perc":              dto.MetricType_GAUGE,
		"vllm:gpu_prefix_cache_hit_rate":         dto.MetricType_GAUGE,
		"vllm:cpu_prefix_cache_hit_rate":         dto.MetricType_GAUGE,
		"vllm:num_preemptions_total":             dto.MetricType_COUNTER,
		"vllm:prompt_tokens_total":               dto.MetricType_COUNTER,
		"vllm:generation_tokens_total":           dto.MetricType_COUNTER,
		"vllm:tokens_total":                      dto.MetricType_COUNTER,
		"vllm:request_success_total":             dto.MetricType_COUNTER,
		"vllm:request_prompt_tokens":             dto.MetricType_HISTOGRAM,
		"vllm:request_generation_tokens":         dto.MetricType_HISTOGRAM,
		"vllm:iteration_tokens_total":            dto.MetricType_HISTOGRAM,
		"vllm:request_max_num_generation_tokens": dto.MetricType_HISTOGRAM,
		"vllm:request_params_n":                  dto.MetricType_HISTOGRAM,
		"vllm:request_params_max_tokens":         dto.MetricType_HISTOGRAM,
		"vllm:time_to_first_token_seconds":       dto.MetricType_HISTOGRAM,
		"vllm:time_per_output_token_seconds":     dto.MetricType_HISTOGRAM,
		"vllm:e2e_request_latency_seconds":       dto.MetricType_HISTOGRAM,
		"vllm:request_queue_time_seconds":        dto.MetricType_HISTOGRAM,
		"vllm:request_inference_time_seconds":    dto.MetricType_HISTOGRAM,
		"vllm:request_prefill_time_seconds":      dto.MetricType_HISTOGRAM,
		"vllm:request_decode_time_seconds":       dto.MetricType_HISTOGRAM,
		"vllm:cache_config_info":                 dto.MetricType_GAUGE,
	}
)

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestMetricsExpositionV1(t *testing.T) {
	f := startFleet(t, Config{Speed: 1000, Model: "m", NumGPUBlocks: 1000, LoRAModules: []LoRAModule{{"x", "/x"}, {"y", "/y"}}, MaxLoRAs: 2})
	code, _ := post(t, f.URLs()[0]+"/v1/completions", `{"model":"x","prompt":"hello","max_tokens":3,"ignore_eos":true}`)
	require.Equal(t, 200, code)
	fams := scrape(t, f.URLs()[0])

	got := map[string]dto.MetricType{}
	for name, fam := range fams {
		got[name] = fam.GetType()
	}
	assert.Equal(t, wantV1, got, "exactly vLLM v1's families")

	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			l := labels(m)
			switch name {
			case "vllm:lora_requests_info":
				assert.Equal(t, []string{"max_lora", "running_lora_adapters", "waiting_lora_adapters"}, slices.Sorted(mapsKeys(l)))
				assert.Equal(t, "2", l["max_lora"])
				assert.Greater(t, m.GetGauge().GetValue(), 1.7e9, "a Unix timestamp")
			case "vllm:cache_config_info":
				assert.Equal(t, "16", l["block_size"])
				assert.Equal(t, "1000", l["num_gpu_blocks"])
				assert.Equal(t, "0", l["engine"])
				assert.Equal(t, 1.0, m.GetGauge().GetValue())
			default:
				assert.Equal(t, "m", l["model_name"], name)
				assert.Equal(t, "0", l["engine"], name)
			}
		}
	}
	// One series ran adapter x.
	var running []string
	for _, m := range fams["vllm:lora_requests_info"].GetMetric() {
		running = append(running, labels(m)["running_lora_adapters"])
	}
	assert.Contains(t, running, "x")

	reasons := map[string]float64{}
	for _, m := range fams["vllm:request_success_total"].GetMetric() {
		reasons[labels(m)["finished_reason"]] = m.GetCounter().GetValue()
	}
	assert.Equal(t, map[string]float64{"stop": 0, "length": 1, "abort": 0}, reasons)

	ttft := fams["vllm:time_to_first_token_seconds"].GetMetric()[0].GetHistogram()
	var bounds []float64
	for _, b := range ttft.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	assert.Equal(t, append(slices.Clone(bucketsTTFT), math.Inf(1)), bounds)
	assert.Equal(t, uint64(1), ttft.GetSampleCount())
	assert.Greater(t, ttft.GetSampleSum(), 0.0)
	gen := fams["vllm:request_generation_tokens"].GetMetric()[0].GetHistogram()
	assert.Equal(t, 5000.0, gen.GetBucket()[len(gen.GetBucket())-2].GetUpperBound(), "1-2-5 buckets up to max_model_len")
	assert.Equal(t, 3.0, gen.GetSampleSum())
}

func TestMetricsExpositionV0(t *testing.T) {
	f := startFleet(t, Config{Speed: 1000, Model: "m", MetricsV0: true})
	code, _ := post(t, f.URLs()[0]+"/v1/completions", `{"prompt":"hello","max_tokens":2,"ignore_eos":true}`)
	require.Equal(t, 200, code)
	fams := scrape(t, f.URLs()[0])
	got := map[string]dto.MetricType{}
	for name, fam := range fams {
		got[name] = fam.GetType()
	}
	assert.Equal(t, wantV0, got, "exactly vLLM v0's families (no LoRA configured)")
	for name, fam := range fams {
		if name == "vllm:cache_config_info" {
			continue
		}
		for _, m := range fam.GetMetric() {
			l := labels(m)
			assert.Equal(t, "m", l["model_name"])
			_, hasEngine := l["engine"]
			assert.False(t, hasEngine, "v0 has no engine label")
		}
	}
	assert.Equal(t, 2.0, value(t, fams, "vllm:generation_tokens_total"))
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestFormatFloatLikePrometheusClient(t *testing.T) {
	for v, want := range map[float64]string{
		8: "8.0", 0: "0.0", 0.25: "0.25", 1795293028: "1.795293028e+09", 1795293028.5: "1.7952930285e+09",
		123456: "123456.0", 1234567: "1.234567e+06", 0.001: "0.001", 0.00001: "1e-05", 1e17: "1e+17",
	} {
		assert.Equal(t, want, formatFloat(v), "%v", v)
	}
}

// TestCloseEndsInflightStreams checks shutdown: Close returns while a long
// stream is in flight, and the client sees that stream end.
func TestCloseEndsInflightStreams(t *testing.T) {
	f, err := StartFleet(context.Background(), []Config{{Speed: 1}})
	require.NoError(t, err)
	resp, err := http.Post(f.URLs()[0]+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":"x","max_tokens":5000,"ignore_eos":true,"stream":true}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n') // the first token: the request is running
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "data: {"))
	require.NoError(t, f.Close())
	_, err = io.ReadAll(r)
	_ = err // either a clean end or a reset; what matters is that it ends
	st := f.Servers[0].Stats()
	assert.Equal(t, uint64(1), st.Finished[FinishAbort])
	assert.Zero(t, st.Running)
}

func TestClientDisconnectAborts(t *testing.T) {
	f := startFleet(t, Config{Speed: 1})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "POST", f.URLs()[0]+"/v1/completions",
		strings.NewReader(`{"prompt":"x","max_tokens":5000,"ignore_eos":true,"stream":true}`))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	r := bufio.NewReader(resp.Body)
	_, err = r.ReadString('\n')
	require.NoError(t, err)
	cancel()
	resp.Body.Close()
	f.Servers[0].Engine().WaitIdle()
	assert.Equal(t, uint64(1), f.Servers[0].Stats().Finished[FinishAbort])
}

func TestMetricsExpositionSGLang(t *testing.T) {
	f := startFleet(t, Config{Speed: 1000, Model: "m", Engine: EngineSGLang})
	code, _ := post(t, f.URLs()[0]+"/v1/completions", `{"prompt":"hello","max_tokens":2,"ignore_eos":true}`)
	require.Equal(t, 200, code)
	fams := scrape(t, f.URLs()[0])
	got := map[string]dto.MetricType{}
	for name, fam := range fams {
		got[name] = fam.GetType()
	}
	assert.Equal(t, map[string]dto.MetricType{
		"sglang:num_running_reqs":            dto.MetricType_GAUGE,
		"sglang:num_used_tokens":             dto.MetricType_GAUGE,
		"sglang:token_usage":                 dto.MetricType_GAUGE,
		"sglang:num_queue_reqs":              dto.MetricType_GAUGE,
		"sglang:max_total_num_tokens":        dto.MetricType_GAUGE,
		"sglang:prompt_tokens_total":         dto.MetricType_COUNTER,
		"sglang:generation_tokens_total":     dto.MetricType_COUNTER,
		"sglang:num_requests_total":          dto.MetricType_COUNTER,
		"sglang:time_to_first_token_seconds": dto.MetricType_HISTOGRAM,
		"sglang:e2e_request_latency_seconds": dto.MetricType_HISTOGRAM,
	}, got, "SGLang's names only (no cached tokens yet: SGLang adds them only when > 0), no vllm: series")
	sched := labels(fams["sglang:num_queue_reqs"].GetMetric()[0])
	assert.Equal(t, map[string]string{"model_name": "m", "engine_type": "unified", "tp_rank": "0", "pp_rank": "0"}, sched)
	assert.Equal(t, map[string]string{"model_name": "m"}, labels(fams["sglang:prompt_tokens_total"].GetMetric()[0]))
	assert.Equal(t, float64(6144*16), value(t, fams, "sglang:max_total_num_tokens"))
	assert.Equal(t, 2.0, value(t, fams, "sglang:generation_tokens_total"))
	ttft := fams["sglang:time_to_first_token_seconds"].GetMetric()[0].GetHistogram()
	assert.Equal(t, uint64(1), ttft.GetSampleCount())
	assert.Equal(t, 0.1, ttft.GetBucket()[0].GetUpperBound(), "SGLang's TTFT buckets")
}

func TestConfigEngine(t *testing.T) {
	c, err := Config{}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, EngineVLLM, c.Engine, "vLLM by default")
	_, err = Config{Engine: "tgi"}.withDefaults()
	require.ErrorContains(t, err, `engine "tgi": want vllm or sglang`)
	_, err = Config{Engine: EngineSGLang, MetricsV0: true}.withDefaults()
	require.ErrorContains(t, err, "metrics v0 is a vLLM dialect")
}
