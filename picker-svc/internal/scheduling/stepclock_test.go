package scheduling

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// Pods whose steps take 40 ms, plus 200 us per prefill token, with
// prompts counted when each completes (often in a later window than its
// chunks), scraped every 50 ms: the fit finds both, the shared prefill
// cost and each pod's step.
func TestStepClockFits(t *testing.T) {
	const step, perToken = 0.040, 200e-6
	r := rand.New(rand.NewPCG(1, 2))
	var cost prefillCost
	clocks := make([]stepClock, 3)
	for i := range clocks {
		var steps, prompt, pending float64
		clock := 0.0 // the pod's time, in seconds
		for at := 0.05; at < 60; at += 0.05 {
			for {
				chunk := 0.0
				if r.IntN(4) == 0 {
					chunk = float64(500 + r.IntN(1500))
				}
				d := step + perToken*chunk
				if clock+d > at {
					break
				}
				clock += d
				steps++
				pending += chunk
				if r.IntN(3) == 0 { // a prompt completes: what was prefilled so far counts
					prompt += pending
					pending = 0
				}
			}
			clocks[i].observe(&scrape.Snapshot{Running: 8, Steps: steps, HasSteps: true, PromptTokens: prompt,
				RequestedAt: t0.Add(time.Duration(at * float64(time.Second)))}, &cost)
		}
	}
	require.InEpsilon(t, perToken, cost.perToken(), 0.1)
	for i := range clocks {
		require.InEpsilon(t, step, clocks[i].decode, 0.1, "pod %d", i)
	}
	require.InEpsilon(t, step, cost.stepTime(), 0.1, "the pool's step, for pods not measured yet")
}

func TestStepClockLearnsNothingFromIdleOrResets(t *testing.T) {
	var cost prefillCost
	var c stepClock
	snap := func(steps, prompt float64, at time.Duration) *scrape.Snapshot {
		return &scrape.Snapshot{Running: 1, Steps: steps, HasSteps: true, PromptTokens: prompt, RequestedAt: t0.Add(at)}
	}
	require.True(t, c.observe(snap(100, 0, 0), &cost))
	require.False(t, c.observe(c.last, &cost), "the same snapshot again")
	c.observe(snap(5, 0, time.Second), &cost)    // restarted: the counters went back
	c.observe(snap(10, 0, 2*time.Second), &cost) // 5 steps
	idle := snap(10, 0, 3*time.Second)
	idle.Running = 0
	c.observe(idle, &cost) // idle: the window starts again
	require.Zero(t, c.decode, "no window of stepWindow steps yet")
	c.observe(snap(10+stepWindow, 0, 3*time.Second+160*time.Millisecond), &cost)
	require.InDelta(t, 0.010, c.decode, 1e-9, "16 steps in 160 ms, no prefill")
	require.Zero(t, cost.perToken(), "no prefill seen")

	// An engine without step counts: a clock of decode steps.
	var none stepClock
	none.observe(&scrape.Snapshot{RequestedAt: t0}, &cost)
	require.InDelta(t, none.steps(t0.Add(time.Second), 0.05)-none.steps(t0, 0.05), 20, 1e-6)
}
