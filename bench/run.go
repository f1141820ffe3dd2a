package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RunConfig is one benchmark run against one API URL.
type RunConfig struct {
	// APIURL is the base URL plus the endpoint, e.g.
	// http://127.0.0.1:8080/v1/completions.
	APIURL string
	// URLFor, if set, gives request i's URL in place of APIURL (a share of
	// the load sent elsewhere, as other clients of the same servers do).
	URLFor func(i int) string
	// Chat sends messages (/v1/chat/completions) instead of a prompt.
	Chat bool
	// Model is sent as "model" unless a request names its own (LoRA mix).
	Model    string
	Requests []SampleRequest
	// RequestRate is requests per second (+Inf: all at once); Burstiness
	// shapes the gaps (1: Poisson). See ArrivalOffsets.
	RequestRate, Burstiness float64
	// MaxConcurrency caps requests in flight (0: no cap).
	MaxConcurrency int
	// IgnoreEOS sends "ignore_eos": true, so every request generates its
	// OutputLen tokens.
	IgnoreEOS bool
	// ExtraBody fields are added to every request body (and win).
	ExtraBody map[string]any
	Header    http.Header
	// RequestIDPrefix + the request's index is sent as x-request-id.
	RequestIDPrefix string
	// Seed drives the arrival process.
	Seed     uint64
	Client   *Client
	Progress Progress
}

// RunResult is what a run measured: one Output per request, in dataset
// order, and the benchmark's duration in seconds.
type RunResult struct {
	Outputs  []Output
	Duration float64
	// Sent holds the messages each chat request sent (multi-turn history
	// included); nil for completions.
	Sent [][]Message
}

// Streams for the seed, so that the dataset, the LoRA mix and the arrivals
// do not shift each other when one of them changes.
const (
	streamDataset  = 1
	streamLoRA     = 2
	streamArrivals = 3
)

func newRNG(seed, stream uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, stream)) }

// Run sends every request as vllm bench's benchmark() does: each at its
// arrival offset, waiting for a --max-concurrency slot, streaming with
// include_usage. A turn of a conversation waits for its previous turn
// (whose answer it sends). If ctx ends, requests not yet sent are marked
// failed and ctx's error is returned with what was measured.
func Run(ctx context.Context, c RunConfig) (*RunResult, error) {
	n := len(c.Requests)
	if n == 0 {
		return nil, errors.New("no requests")
	}
	offsets, err := ArrivalOffsets(newRNG(c.Seed, streamArrivals), n, c.RequestRate, c.Burstiness)
	if err != nil {
		return nil, err
	}
	client := c.Client
	if client == nil {
		client = NewClient(c.MaxConcurrency)
	}
	res := &RunResult{Outputs: make([]Output, n)}
	if c.Chat {
		res.Sent = make([][]Message, n)
	}
	var sem chan struct{}
	if c.MaxConcurrency > 0 {
		sem = make(chan struct{}, c.MaxConcurrency)
	}
	done := make([]chan struct{}, n)
	for i := range done {
		done[i] = make(chan struct{})
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		finished int
		failed   int
	)
	report := func(ok bool) {
		mu.Lock()
		finished++
		if !ok {
			failed++
		}
		f, e := finished, failed
		mu.Unlock()
		if c.Progress != nil {
			c.Progress.Update(f, e, n)
		}
	}
	if c.Progress != nil {
		c.Progress.Update(0, 0, n)
	}
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	timer.Stop() // since Go 1.23 a stopped timer delivers no stale tick after Reset
	sendErr := error(nil)
	i := 0
	for ; i < n; i++ {
		r := c.Requests[i]
		if d := time.Until(start.Add(time.Duration(offsets[i] * float64(time.Second)))); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				sendErr = ctx.Err()
			}
		}
		if sendErr == nil && r.Parent >= 0 {
			select {
			case <-done[r.Parent]:
			case <-ctx.Done():
				sendErr = ctx.Err()
			}
		}
		arrival := time.Now()
		if sendErr == nil && sem != nil {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				sendErr = ctx.Err()
			}
		}
		if sendErr != nil {
			break
		}
		body, msgs, err := c.body(r, res)
		if err != nil {
			if sem != nil {
				<-sem
			}
			sendErr = err
			break
		}
		if res.Sent != nil {
			res.Sent[i] = msgs
		}
		h := c.Header.Clone()
		if h == nil {
			h = http.Header{}
		}
		h.Set("x-request-id", c.RequestIDPrefix+strconv.Itoa(i))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			url := c.APIURL
			if c.URLFor != nil {
				url = c.URLFor(i)
			}
			out := client.Do(ctx, url, body, h, c.Requests[i].PromptLen, start)
			out.ClientQueueTime = max(0, out.StartTime-arrival.Sub(start).Seconds())
			if sem != nil {
				<-sem
			}
			res.Outputs[i] = out
			close(done[i])
			report(out.Success)
		}(i)
	}
	for ; i < n; i++ {
		res.Outputs[i] = Output{PromptLen: c.Requests[i].PromptLen, Error: fmt.Sprintf("not sent: %v", sendErr)}
		close(done[i])
	}
	wg.Wait()
	res.Duration = time.Since(start).Seconds()
	if c.Progress != nil {
		c.Progress.Close()
	}
	return res, sendErr
}

// body is the JSON request vllm bench's openai and openai-chat backends send
// (async_request_openai_completions / _chat_completions): stream with
// include_usage, max_tokens (chat: max_completion_tokens) = output length,
// ignore_eos when asked. The parent's Outputs and Sent are complete when a
// conversation's next turn is built.
func (c *RunConfig) body(r SampleRequest, res *RunResult) ([]byte, []Message, error) {
	model := c.Model
	if r.Model != "" {
		model = r.Model
	}
	p := map[string]any{
		"model":          model,
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
	}
	var msgs []Message
	if c.Chat {
		if r.Parent >= 0 {
			prev := res.Sent[r.Parent]
			msgs = make([]Message, 0, len(prev)+1+len(r.Messages))
			msgs = append(msgs, prev...)
			msgs = append(msgs, Message{Role: "assistant", Content: res.Outputs[r.Parent].GeneratedText})
		}
		if r.Messages != nil {
			msgs = append(msgs, r.Messages...)
		} else {
			msgs = append(msgs, Message{Role: "user", Content: r.Prompt})
		}
		p["messages"] = msgs
		p["max_completion_tokens"] = r.OutputLen
	} else {
		if r.Messages != nil || r.Parent >= 0 {
			return nil, nil, errors.New("this dataset needs a chat endpoint (--endpoint /v1/chat/completions)")
		}
		p["prompt"] = r.Prompt
		p["max_tokens"] = r.OutputLen
	}
	if c.IgnoreEOS {
		p["ignore_eos"] = true
	}
	for k, v := range c.ExtraBody {
		p[k] = v
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, nil, err
	}
	return b.Bytes(), msgs, nil
}
