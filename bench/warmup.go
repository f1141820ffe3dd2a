package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// WarmupTotals counts the requests sent before the benchmark: vllm bench's
// initial test run (--ready-check-timeout-sec) and its warm-ups
// (--num-warmups). The server and a gateway in front of it count their
// tokens; vllm's totals, and so this tool's, leave them out.
type WarmupTotals struct {
	Sent, Failed              int
	InputTokens, OutputTokens int
}

func (w *WarmupTotals) add(out Output) {
	w.Sent++
	if !out.Success {
		w.Failed++
		return
	}
	w.InputTokens += out.PromptLen
	w.OutputTokens += out.OutputTokens
}

// ReadyRetry is how long ReadyCheck waits between attempts (vllm's
// wait_for_endpoint retry_interval).
const ReadyRetry = 5 * time.Second

// ReadyCheck is vllm bench's initial test run with --ready-check-timeout-sec
// (vllm/benchmarks/lib/ready_checker.py wait_for_endpoint): it sends the
// run's first request, as the run will send it, until one succeeds or
// timeout passes, waiting retry between attempts. It returns the last
// failure when none succeeded. Every attempt is counted in w.
func ReadyCheck(ctx context.Context, c RunConfig, timeout, retry time.Duration, w *WarmupTotals) error {
	deadline := time.Now().Add(timeout)
	var last error
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithDeadline(ctx, deadline)
		out, err := c.sendFirst(actx, "ready-"+strconv.Itoa(attempt))
		cutOff := actx.Err() != nil
		cancel()
		if err != nil {
			return err
		}
		w.add(out)
		if out.Success {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cutOff {
			break // the deadline cut this attempt: report the one before, as vllm
		}
		last = errors.New(out.Error)
		wait := min(retry, time.Until(deadline))
		if wait <= 0 {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if last == nil || last.Error() == "" {
		last = fmt.Errorf("endpoint readiness timed out after %s", timeout)
	}
	return last
}

// Warmup is vllm bench's --num-warmups: the run's first request sent n
// times at once, at most c.MaxConcurrency in flight. Outcomes are counted
// in w; failures do not stop the benchmark (vllm ignores them too).
func Warmup(ctx context.Context, c RunConfig, n int, w *WarmupTotals) error {
	var sem chan struct{}
	if c.MaxConcurrency > 0 {
		sem = make(chan struct{}, c.MaxConcurrency)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sem != nil {
				sem <- struct{}{}
				defer func() { <-sem }()
			}
			out, err := c.sendFirst(ctx, "warmup-"+strconv.Itoa(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			w.add(out)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sendFirst sends the run's first request once; id follows the run's
// x-request-id prefix, so a server's log tells it from the run's own.
func (c *RunConfig) sendFirst(ctx context.Context, id string) (Output, error) {
	if len(c.Requests) == 0 {
		return Output{}, errors.New("no requests")
	}
	r := c.Requests[0]
	if r.Parent >= 0 {
		return Output{}, errors.New("the first request continues a conversation")
	}
	body, _, err := c.body(r, nil)
	if err != nil {
		return Output{}, err
	}
	client := c.Client
	if client == nil {
		client = NewClient(c.MaxConcurrency)
	}
	h := c.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("x-request-id", c.RequestIDPrefix+id)
	return client.Do(ctx, c.APIURL, body, h, r.PromptLen, time.Now()), nil
}
