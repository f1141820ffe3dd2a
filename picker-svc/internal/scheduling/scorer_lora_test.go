package scheduling

import (
	"testing"

	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/stretchr/testify/require"
)

func TestLoRAScorer(t *testing.T) {
	running := scrape.Snapshot{BaseModel: "base", MaxLoRA: 2, RunningAdapters: []string{"a", "b"}}
	waiting := scrape.Snapshot{BaseModel: "base", MaxLoRA: 2, RunningAdapters: []string{"b"}, WaitingAdapters: []string{"a"}}
	free := scrape.Snapshot{BaseModel: "base", MaxLoRA: 2, RunningAdapters: []string{"b"}}
	full := scrape.Snapshot{BaseModel: "base", MaxLoRA: 2, RunningAdapters: []string{"b", "c"}}
	fullWaiting := scrape.Snapshot{BaseModel: "base", MaxLoRA: 2, RunningAdapters: []string{"b"}, WaitingAdapters: []string{"c"}}
	noLoRA := scrape.Snapshot{BaseModel: "base"}
	for _, tc := range []struct {
		name   string
		target string
		snaps  []scrape.Snapshot
		want   []float64
	}{
		{"adapter running > waiting > free slot > evict", "a", []scrape.Snapshot{running, waiting, free, full, fullWaiting},
			[]float64{LoRARunning, LoRAWaiting, LoRAFreeSlot, LoRAEvict, LoRAEvict}},
		{"base model: affinity is moot", "base", []scrape.Snapshot{running, full}, []float64{1, 1}},
		{"pod without LoRA", "a", []scrape.Snapshot{noLoRA}, []float64{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, score(LoRAScorer{}, &Request{TargetModel: tc.target}, cands(tc.snaps...)))
		})
	}
}
