package scheduling

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The model by hand: a pod of 10,000 KV tokens, steps of 50 ms, prefill
// tokens at 100 us, 1,000-token chunks.
func TestPodForecast(t *testing.T) {
	base := func() podForecast {
		return podForecast{capacity: 10_000, decodeStep: 0.05, prefillToken: 1e-4, chunk: 1000, own: 500, ownOutput: 100, strangerOutput: 200}
	}
	for _, tc := range []struct {
		name            string
		change          func(*podForecast)
		steps, short    float64
		ttft, recompute float64
	}{
		{name: "empty pod: its own prefill, one chunk", change: func(*podForecast) {},
			ttft: 500*1e-4 + 0.05},
		{name: "a queue ahead: its prefill first, in chunks", change: func(f *podForecast) { f.ahead, f.queued, f.queuedRequests = 2000, 2000, 2 },
			ttft: 2500*1e-4 + 3*0.05},
		{name: "no room: waits for the first finish that makes room", change: func(f *podForecast) {
			f.used = 9800 // 200 free, 500 needed
			// Each finish frees what it holds; the other grows a token a step meanwhile.
			f.running = []trajectory{{left: 10, held: 100}, {left: 40, held: 9000}}
		}, steps: 40, short: 0, ttft: 40*0.05 + 500*1e-4 + 0.05},
		{name: "room now, but the pod runs short before the request ends: the recompute it risks", change: func(f *podForecast) {
			// 500 spare once admitted; the 3 running and this one grow 4 a
			// step: 300 short just before the first finishes, at step 200.
			f.used, f.ownOutput = 9000, 200
			f.running = []trajectory{{left: 200, held: 3000}, {left: 300, held: 3000}, {left: 400, held: 3000}}
		}, steps: 0, short: 300, ttft: 500*1e-4 + 0.05, recompute: 300 * 1e-4},
		{name: "the risk is at most the request's own prompt and output", change: func(f *podForecast) {
			f.used = 9500
			f.unknown = 100 // growing for ever
		}, steps: 0, short: 100*100 + 100, ttft: 500*1e-4 + 0.05, recompute: 600 * 1e-4},
		{name: "nothing foreseen ends and it does not fit: a long wait", change: func(f *podForecast) {
			f.used, f.unknown = 9900, 3
		}, steps: noRoomSteps, ttft: noRoomSteps*0.05 + 500*1e-4 + 0.05},
		{name: "someone else's requests wait though the cache has room: for batch slots, as requests end", change: func(f *podForecast) {
			f.strangers, f.unknown = 8, 2 // 2 slots, taken by requests the picker cannot follow: halfway through 200 tokens
		}, steps: 0, ttft: (100+3*200)*0.05 + 500*1e-4 + 0.05},
		{name: "one waits for a slot: the first foreseen end", change: func(f *podForecast) {
			f.strangers = 1
			f.running = []trajectory{{left: 10, held: 100}, {left: 40, held: 100}}
		}, steps: 0, ttft: 10*0.05 + 500*1e-4 + 0.05},
		{name: "cache size not known: queues only", change: func(f *podForecast) { f.capacity, f.used = 0, 1e9 },
			ttft: 500*1e-4 + 0.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base()
			tc.change(&f)
			steps, short := f.admit()
			require.InDelta(t, tc.steps, steps, 1e-9)
			require.InDelta(t, tc.short, short, 1e-9)
			ttft, recompute := f.predict()
			require.InDelta(t, tc.ttft, ttft, 1e-9)
			require.InDelta(t, tc.recompute, recompute, 1e-9)
		})
	}
}
