// Package loadgen sends OpenAI-style requests and measures them the way
// `vllm bench serve` does: time to first token (first streamed content),
// end-to-end latency, output tokens from usage, throughput. Used by the e2e
// scenarios, the demo and the routing benchmark; traffic goes to localhost.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// Request is one request to send.
type Request struct {
	Path    string // default /v1/completions
	Body    []byte
	Headers map[string]string
	// Tag groups results in a summary (a model, a workload class).
	Tag string
}

// Result is what happened to one request.
type Result struct {
	Tag          string
	Status       int
	Model        string // the response's model (the adapter that served it)
	TTFT, E2E    time.Duration
	PromptTokens int64
	OutputTokens int64
	HasUsage     bool
	Body         []byte // non-streaming responses and errors
	Err          error
}

// Client sends requests.
type Client struct {
	HTTP *http.Client
}

// NewClient returns a client with enough idle connections for a benchmark.
func NewClient() *Client {
	return &Client{HTTP: &http.Client{Transport: &http.Transport{
		MaxIdleConns: 2048, MaxIdleConnsPerHost: 2048, IdleConnTimeout: 60 * time.Second, DisableCompression: true,
	}}}
}

// Do sends one request to base (http://host:port) and reads the response.
func (c *Client) Do(ctx context.Context, base string, r Request) Result {
	res := Result{Tag: r.Tag}
	path := r.Path
	if path == "" {
		path = "/v1/completions"
	}
	req, err := http.NewRequestWithContext(ctx, "POST", base+path, bytes.NewReader(r.Body))
	if err != nil {
		res.Err = err
		return res
	}
	req.Header.Set("content-type", "application/json")
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := c.HTTP.Do(req)
	if err != nil {
		res.Err = err
		return res
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	if !strings.HasPrefix(resp.Header.Get("content-type"), "text/event-stream") {
		res.Body, res.Err = io.ReadAll(resp.Body)
		res.E2E = time.Since(start)
		res.TTFT = res.E2E
		res.readUsage(gjson.GetBytes(res.Body, "usage"))
		res.Model = gjson.GetBytes(res.Body, "model").Str
		return res
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok || bytes.Equal(data, []byte("[DONE]")) {
			continue
		}
		ev := gjson.ParseBytes(data)
		if res.TTFT == 0 {
			for _, ch := range ev.Get("choices").Array() {
				if ch.Get("text").Str != "" || ch.Get("delta.content").Str != "" {
					res.TTFT = time.Since(start)
					break
				}
			}
		}
		if m := ev.Get("model").Str; m != "" {
			res.Model = m
		}
		if u := ev.Get("usage"); u.IsObject() {
			res.readUsage(u)
		}
		if e := ev.Get("error"); e.Exists() {
			res.Body = append([]byte(nil), data...)
		}
	}
	res.Err = sc.Err()
	res.E2E = time.Since(start)
	return res
}

func (r *Result) readUsage(u gjson.Result) {
	if u.IsObject() {
		r.HasUsage = true
		r.PromptTokens = u.Get("prompt_tokens").Int()
		r.OutputTokens = u.Get("completion_tokens").Int()
	}
}

// OK reports a 200 without transport error.
func (r Result) OK() bool { return r.Err == nil && r.Status == 200 }

// Run sends reqs to base with at most concurrency in flight (a closed loop,
// like --max-concurrency), calling progress after each.
func (c *Client) Run(ctx context.Context, base string, reqs []Request, concurrency int, progress func(done int)) []Result {
	out := make([]Result, len(reqs))
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = c.Do(ctx, base, reqs[i])
				mu.Lock()
				done++
				d := done
				mu.Unlock()
				if progress != nil {
					progress(d)
				}
			}
		}()
	}
	for i := range reqs {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return out
}

// Summary is the benchmark's view of a set of results.
type Summary struct {
	N, OK, Errors           int
	Wall                    time.Duration
	ReqPerSec, OutTokPerSec float64
	TTFT, E2E               Percentiles
	OutputTokens            int64
	PromptTokens            int64
	ByStatus                map[int]int
}

// Percentiles of a duration sample.
type Percentiles struct{ Mean, P50, P90, P99 time.Duration }

// Summarize results measured over wall time.
func Summarize(rs []Result, wall time.Duration) Summary {
	s := Summary{N: len(rs), Wall: wall, ByStatus: map[int]int{}}
	var ttft, e2e []time.Duration
	for _, r := range rs {
		s.ByStatus[r.Status]++
		if !r.OK() {
			s.Errors++
			continue
		}
		s.OK++
		s.OutputTokens += r.OutputTokens
		s.PromptTokens += r.PromptTokens
		ttft = append(ttft, r.TTFT)
		e2e = append(e2e, r.E2E)
	}
	s.TTFT, s.E2E = percentiles(ttft), percentiles(e2e)
	if wall > 0 {
		s.ReqPerSec = float64(s.OK) / wall.Seconds()
		s.OutTokPerSec = float64(s.OutputTokens) / wall.Seconds()
	}
	return s
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(math.Ceil(q*float64(len(d))))-1)] }
	return Percentiles{Mean: sum / time.Duration(len(d)), P50: at(0.5), P90: at(0.9), P99: at(0.99)}
}

// Words makes a deterministic prompt of about n tokens (the simulator counts
// 4 bytes a token).
func Words(rng *rand.Rand, n int) string {
	const words = "time year people way day man thing woman life child world school state family student group country problem hand part place case week company system program question work government number night point home water room mother area money story fact month lot right study book eye job word business issue side kind head house service friend father power hour game line end member law car city community name president team minute idea kid body information back parent face others level office door health person art war history party result change morning reason research girl guy moment air teacher force education"
	ws := strings.Fields(words)
	var b strings.Builder
	for b.Len() < 4*n {
		b.WriteString(ws[rng.Intn(len(ws))])
		b.WriteByte(' ')
	}
	return b.String()[:4*n]
}

// Completion builds a /v1/completions request body; streams ask for usage
// (stream_options.include_usage), as vllm bench does.
func Completion(model, prompt string, maxTokens int, stream bool) []byte {
	if stream {
		return []byte(fmt.Sprintf(`{"model":%q,"prompt":%q,"max_tokens":%d,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`, model, prompt, maxTokens))
	}
	return []byte(fmt.Sprintf(`{"model":%q,"prompt":%q,"max_tokens":%d,"ignore_eos":true}`, model, prompt, maxTokens))
}

// Uniform draws from U[floor(L(1-r)), ceil(L(1+r))] as vllm bench's random
// dataset does.
func Uniform(rng *rand.Rand, l int, r float64) int {
	lo, hi := int(math.Floor(float64(l)*(1-r))), int(math.Ceil(float64(l)*(1+r)))
	if hi <= lo {
		return max(lo, 1)
	}
	return max(lo+rng.Intn(hi-lo+1), 1)
}
