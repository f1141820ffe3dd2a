package compare

import (
	"bufio"
	"context"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PodSample is one scrape of one pod's /metrics (vLLM v1 names, summed over
// the pod's series).
type PodSample struct {
	KVCacheUsage     float64 `json:"kv_cache_usage_perc"`
	Waiting          float64 `json:"num_requests_waiting"`
	Running          float64 `json:"num_requests_running"`
	Preemptions      float64 `json:"num_preemptions_total"`
	PrefixHits       float64 `json:"prefix_cache_hits_total"`
	PrefixQueries    float64 `json:"prefix_cache_queries_total"`
	GenerationTokens float64 `json:"generation_tokens_total"`
	PromptTokens     float64 `json:"prompt_tokens_total"`
	ScrapeFailed     bool    `json:"scrape_failed,omitempty"`
}

// Sample is one tick: simulated seconds since the run started, every pod's
// metrics (fleet order) and the gateway's pick counters.
type Sample struct {
	T       float64            `json:"t"`
	Pods    []PodSample        `json:"pods"`
	Gateway map[string]float64 `json:"gateway,omitempty"`
}

// vllmNames maps the /metrics names to the fields they fill.
var vllmNames = map[string]func(*PodSample, float64){
	"vllm:kv_cache_usage_perc":        func(p *PodSample, v float64) { p.KVCacheUsage += v },
	"vllm:num_requests_waiting":       func(p *PodSample, v float64) { p.Waiting += v },
	"vllm:num_requests_running":       func(p *PodSample, v float64) { p.Running += v },
	"vllm:num_preemptions_total":      func(p *PodSample, v float64) { p.Preemptions += v },
	"vllm:prefix_cache_hits_total":    func(p *PodSample, v float64) { p.PrefixHits += v },
	"vllm:prefix_cache_queries_total": func(p *PodSample, v float64) { p.PrefixQueries += v },
	"vllm:generation_tokens_total":    func(p *PodSample, v float64) { p.GenerationTokens += v },
	"vllm:prompt_tokens_total":        func(p *PodSample, v float64) { p.PromptTokens += v },
}

// parseVLLM reads the series it knows from Prometheus text; a pod serves one
// model, so summing a name's series gives the pod's value.
func parseVLLM(r io.Reader) PodSample {
	var p PodSample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, v, ok := seriesValue(line)
		if !ok {
			continue
		}
		if f := vllmNames[name]; f != nil {
			f(&p, v)
		}
	}
	return p
}

// seriesValue splits `name{labels} value` (or `name value`).
func seriesValue(line string) (string, float64, bool) {
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return "", 0, false
	}
	sp := strings.LastIndexByte(line, ' ')
	if sp < end {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(line[sp+1:], 64)
	if err != nil {
		return "", 0, false
	}
	return line[:end], v, true
}

// gatewayPicks keeps the filter's pick counters (one entry per labelled
// series) and its pick latency's sum and count from the gateway's
// /stats/prometheus text.
func gatewayPicks(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "asm_llm_proxy_picks_total") && !strings.HasPrefix(line, pickLatencySum) &&
			!strings.HasPrefix(line, pickLatencyCount) {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[sp+1:], 64); err == nil {
			out[line[:sp]] = v
		}
	}
	return out
}

// The filter's pick latency histogram (milliseconds of wall time).
const (
	pickLatencySum   = "asm_llm_proxy_pick_latency_ms_sum"
	pickLatencyCount = "asm_llm_proxy_pick_latency_ms_count"
)

// meanPickMillis is the mean pick latency the gateway measured (wall ms),
// NaN without picks.
func meanPickMillis(g map[string]float64) float64 {
	var sum, n float64
	for k, v := range g {
		switch {
		case strings.HasPrefix(k, pickLatencySum):
			sum += v
		case strings.HasPrefix(k, pickLatencyCount):
			n += v
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / n
}

// sampler scrapes every pod's /metrics and the gateway's stats each
// interval until stopped.
type sampler struct {
	urls     []string
	gateway  func() string
	speed    float64
	interval time.Duration
	client   *http.Client

	samples []Sample
	stop    chan struct{}
	done    chan struct{}
}

func startSampler(urls []string, gateway func() string, speed float64, interval time.Duration) *sampler {
	s := &sampler{urls: urls, gateway: gateway, speed: speed, interval: interval,
		client: &http.Client{Timeout: 5 * time.Second}, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *sampler) loop() {
	defer close(s.done)
	start := time.Now()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	s.tick(start)
	for {
		select {
		case <-s.stop:
			s.tick(start) // the final state, after the last request
			return
		case <-t.C:
			s.tick(start)
		}
	}
}

func (s *sampler) tick(start time.Time) {
	smp := Sample{T: time.Since(start).Seconds() * s.speed, Pods: make([]PodSample, len(s.urls))}
	var wg sync.WaitGroup
	for i, u := range s.urls {
		wg.Add(1)
		go func(i int, u string) {
			defer wg.Done()
			smp.Pods[i] = s.scrape(u)
		}(i, u)
	}
	wg.Wait()
	if s.gateway != nil {
		smp.Gateway = gatewayPicks(s.gateway())
	}
	s.samples = append(s.samples, smp)
}

func (s *sampler) scrape(base string) PodSample {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return PodSample{ScrapeFailed: true}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return PodSample{ScrapeFailed: true}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return PodSample{ScrapeFailed: true}
	}
	return parseVLLM(io.LimitReader(resp.Body, 8<<20))
}

// Stop ends sampling and returns the samples (the last one taken after
// Stop was called).
func (s *sampler) Stop() []Sample {
	close(s.stop)
	<-s.done
	return s.samples
}
