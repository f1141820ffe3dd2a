package app

import (
	"context"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/config"
	"github.com/meshllm/meshllm/picker-svc/internal/kvevents"
	"github.com/meshllm/meshllm/picker-svc/internal/precise"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
)

// precisePrefix is precise prefix-cache routing's running parts: the index
// of what each engine holds and what keeps it current.
type precisePrefix struct {
	index    *kvevents.Index
	metrics  *kvevents.Metrics
	follower *precise.Follower
}

// buildPrecise gives the scheduler's precise_prefix (when a profile uses
// it) the engines' account, and registers its metrics.
func (p *picker) buildPrecise(sched *scheduling.Scheduler, cfg scheduling.Config) {
	scorer, ok := sched.Plugin(scheduling.PrecisePrefixName).(*scheduling.PrecisePrefixScorer)
	if !ok {
		return
	}
	k := &p.cfg.KVEvents
	m := kvevents.NewMetrics()
	ix := kvevents.New(kvevents.Config{Metrics: m})
	tok := precise.NewTokenizer(precise.TokenizerConfig{Timeout: k.TokenizerTimeout.Duration, CacheEntries: k.TokenizerCache})
	scorer.SetSource(&precise.Source{Index: ix, Tokenizer: tok})
	def, pools := k.Publishers()
	publisher := func(c config.KVPublisher) precise.Publisher {
		return precise.Publisher{Port: c.Port, ReplayPort: c.ReplayPort, Topic: c.Topic}
	}
	f := &precise.Follower{View: p.store.View, Index: ix, Default: publisher(def), Pools: map[string]precise.Publisher{},
		Sub: kvevents.SubscriberConfig{Metrics: m, Logger: p.log}}
	for name, c := range pools {
		f.Pools[name] = publisher(c)
	}
	// Follow the pools whose profile reads the engines' events (an
	// EndpointPickerConfig may put precise_prefix in DEFAULT's).
	f.Strategies = map[pickapi.Strategy]bool{}
	for st, prof := range cfg.Profiles {
		if prof.Weight(scheduling.PrecisePrefixName) > 0 || slices.Contains(prof.Prepare, scheduling.PrecisePrefixName) {
			f.Strategies[st] = true
		}
	}
	p.precise = &precisePrefix{index: ix, metrics: m, follower: f}
	reg := p.metrics.Registry
	reg.MustRegister(m.Collectors()...)
	reg.MustRegister(ix.Collector())
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	reg.MustRegister(
		counter("meshllm_picker_precise_prefix_pods_scored_total", "Candidate pods scored from their engines' KV-cache events.",
			func() uint64 { return scorer.Counts().Precise }),
		counter("meshllm_picker_precise_prefix_pods_not_ready_total", "Candidate pods scored by the approximate prefix guess because their KV events were incomplete.",
			func() uint64 { return scorer.Counts().NotReady }),
		counter("meshllm_picker_precise_prefix_held_nowhere_total", "Picks scored by the approximate prefix guess because no engine held any of the prompt (it remembers where the prompt went last).",
			func() uint64 { return scorer.Counts().NoneHeld }),
		counter("meshllm_picker_precise_prefix_no_tokens_total", "Picks scored by the approximate prefix guess for want of the prompt's token ids (no body on this path, or the tokenizer failed).",
			func() uint64 { return scorer.Counts().NoTokens }),
		counter("meshllm_picker_tokenizer_cache_hits_total", "Prompts whose token ids came from the tokenizer cache.",
			func() uint64 { return tok.Counts().Hits }),
		counter("meshllm_picker_tokenizer_calls_total", "Calls to an engine's render or /tokenize endpoint for a prompt's token ids.",
			func() uint64 { return tok.Counts().Calls }),
		counter("meshllm_picker_tokenizer_fallback_calls_total", "Calls to an engine's /tokenize because it serves no render endpoint (older vLLM).",
			func() uint64 { return tok.Counts().Fallbacks }),
		counter("meshllm_picker_tokenizer_failures_total", "Prompts left without token ids: the engine's answer failed, did not read, or came too late (the pick fell back to the approximate guess).",
			func() uint64 { return tok.Counts().Failures }),
	)
}

// runPrecise follows discovery's endpoints until ctx ends: subscribing to
// each engine's publisher, or in bind mode listening for them. A bind
// address that cannot be bound is an error.
func (p *picker) runPrecise(ctx context.Context) error {
	if p.precise == nil {
		return nil
	}
	f := p.precise.follower
	listen := p.cfg.KVEvents.Listen
	if listen == "" {
		go f.Run(ctx, true)
		return nil
	}
	l, err := kvevents.Listen(ctx, listen, kvevents.ListenerConfig{Topic: p.cfg.KVEvents.Topic, PodOf: f.PodOf, ReplayOf: f.ReplayOf},
		kvevents.SubscriberConfig{Index: p.precise.index, Metrics: p.precise.metrics, Logger: p.log})
	if err != nil {
		return err
	}
	p.log.Info("listening for KV events", "endpoint", l.Endpoint())
	go l.Run(ctx)
	go f.Run(ctx, false)
	return nil
}
