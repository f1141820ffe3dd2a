package compare

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/meshllm/meshllm/e2e/stack"
)

// Two variants of any workload that break a router's guess of what each
// pod's cache holds, usable with every policy:
//
//   - bypass: a share of the requests goes straight to the pods, round robin
//     over their addresses, as another gateway (or a client that knows the
//     pods) would send it: the pods' caches change without the picker having
//     picked;
//   - pod restart: one pod restarts mid-run (vllmsim's Restart: the requests
//     in flight on it fail, its KV cache comes back empty, AllBlocksCleared
//     is published), while a picker that guesses still believes it holds
//     what it held.

// bypassRoutes is where each request goes: the gateway's URL, or with the
// bypass one pod's. The bypassed requests are spread evenly through the run
// (request i goes around the picker when floor((i+1)*share) > floor(i*share),
// so exactly floor(n*share) of n do) and take the pods in turn. perPod counts
// the bypassed requests by pod.
func bypassRoutes(n int, share float64, gateway string, pods []string) (urls []string, perPod []int) {
	urls = make([]string, n)
	perPod = make([]int, len(pods))
	next := 0
	for i := range urls {
		urls[i] = gateway
		if len(pods) > 0 && math.Floor(float64(i+1)*share) > math.Floor(float64(i)*share) {
			urls[i] = pods[next]
			perPod[next]++
			next = (next + 1) % len(pods)
		}
	}
	return urls, perPod
}

// RestartedPod is the pod the pod-restart variant restarts (the first).
const RestartedPod = 0

// restartAfter is the wall time into a run at which the pod-restart variant
// restarts RestartedPod: when share `at` of n requests sent at rate (a
// simulated second) have been sent by the arrival schedule's mean.
func restartAfter(at float64, n int, rate, speed float64) time.Duration {
	return time.Duration(at * float64(n) / rate / speed * float64(time.Second))
}

// injectPodRestart restarts RestartedPod after `after` (wall) unless ctx
// ends first. The returned wait blocks until it is over and gives when the
// restart happened, in simulated seconds into the run (0: it did not).
func injectPodRestart(ctx context.Context, s *stack.Stack, after time.Duration, speed float64, log io.Writer) (wait func() float64) {
	if after <= 0 {
		return func() float64 { return 0 }
	}
	done := make(chan float64, 1)
	start := time.Now()
	go func() {
		t := time.NewTimer(after)
		defer t.Stop()
		select {
		case <-ctx.Done():
			done <- 0
		case <-t.C:
			s.Fleet.Servers[RestartedPod].Restart()
			at := time.Since(start).Seconds() * speed
			fmt.Fprintf(log, " [pod %d restarted at %.0f simulated s]", RestartedPod, at)
			done <- at
		}
	}()
	return func() float64 { return <-done }
}
