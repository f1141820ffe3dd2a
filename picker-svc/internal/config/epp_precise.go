package config

import (
	"encoding/json"
	"errors"
	"fmt"
)

// llm-d's precise-prefix-cache-scorer parameters (llm-d-inference-scheduler
// pkg/plugins/scorer/precise_prefix_cache.go: indexerConfig,
// kvEventsConfig, and in later versions tokenProcessorConfig,
// speculativeIndexing, speculativeTTL), whose kvEventsConfig is
// llm-d-kv-cache's kvevents.Config (pkg/kvcache/kvevents/pool.go:
// zmqEndpoint, topicFilter, concurrency, engineType, discoverPods,
// podDiscoveryConfig {podLabelSelector, podNamespace, socketPort}). The
// same parameters configure llm-d-router's precise-prefix-cache-producer.
type precisePrefixConfig struct {
	IndexerConfig        json.RawMessage    `json:"indexerConfig"`
	TokenProcessorConfig json.RawMessage    `json:"tokenProcessorConfig"`
	KVEventsConfig       *eppKVEventsConfig `json:"kvEventsConfig"`
	SpeculativeIndexing  *bool              `json:"speculativeIndexing"`
	SpeculativeTTL       string             `json:"speculativeTTL"`
	SessionManager       string             `json:"sessionManager"`
}

type eppKVEventsConfig struct {
	ZMQEndpoint        string  `json:"zmqEndpoint"`
	TopicFilter        *string `json:"topicFilter"`
	Concurrency        *int    `json:"concurrency"`
	EngineType         string  `json:"engineType"`
	DiscoverPods       *bool   `json:"discoverPods"`
	Tracing            *bool   `json:"tracing"`
	PodDiscoveryConfig *struct {
		PodLabelSelector string `json:"podLabelSelector"`
		PodNamespace     string `json:"podNamespace"`
		SocketPort       *int   `json:"socketPort"`
	} `json:"podDiscoveryConfig"`
}

// precisePrefixParams translates the KV-event subscription settings the
// plugin's parameters share with meshllm's kvEvents keys: the engines'
// publisher port (socketPort), the topic prefix (topicFilter), and bind
// mode (zmqEndpoint, for engines that dial in). The indexer's and
// tokenizer's own settings are noted, not applied: meshllm keys blocks by
// its own hash of token ids and asks the engines for token ids.
func precisePrefixParams(p *eppPlugin, raw json.RawMessage, out *EPPConfig) error {
	var c precisePrefixConfig
	if err := decodeStrict(raw, &c); err != nil {
		return err
	}
	note := func(format string, a ...any) {
		out.Notes = append(out.Notes, fmt.Sprintf("plugin %q (%s): ", p.name, p.typ)+fmt.Sprintf(format, a...))
	}
	if c.SessionManager != "" {
		return fmt.Errorf("parameters: sessionManager %q: meshllm has no session-cache lookup", c.SessionManager)
	}
	var got EPPKVEvents
	if k := c.KVEventsConfig; k != nil {
		switch k.EngineType {
		case "", "vllm":
		default:
			return fmt.Errorf("parameters: kvEventsConfig.engineType %q: meshllm reads vLLM's KV events only", k.EngineType)
		}
		dial := k.DiscoverPods != nil && *k.DiscoverPods
		if k.ZMQEndpoint != "" {
			if dial {
				return fmt.Errorf("parameters: kvEventsConfig has zmqEndpoint %q and discoverPods: meshllm either dials every engine's publisher (discoverPods) or binds zmqEndpoint for engines that dial in; remove one", k.ZMQEndpoint)
			}
			got.Listen = k.ZMQEndpoint
		}
		if k.TopicFilter != nil {
			got.Topic = k.TopicFilter
		}
		if d := k.PodDiscoveryConfig; d != nil {
			if v := d.SocketPort; v != nil {
				if *v < 1 || *v > 65535 {
					return fmt.Errorf("parameters: kvEventsConfig.podDiscoveryConfig.socketPort %d: want 1..65535", *v)
				}
				got.Port = v
			}
			if d.PodLabelSelector != "" || d.PodNamespace != "" {
				note("podDiscoveryConfig podLabelSelector/podNamespace ignored: meshllm follows the pool's endpoints from discovery")
			}
		}
		if k.Concurrency != nil {
			note("kvEventsConfig.concurrency ignored: each engine's events are applied by its own subscriber")
		}
		if k.Tracing != nil && *k.Tracing {
			note("kvEventsConfig.tracing ignored: meshllm counts KV events in its metrics")
		}
	}
	if hasParams(c.IndexerConfig) {
		note("indexerConfig ignored: token ids come from the engines' render or /tokenize endpoints; the index's bounds are meshllm's")
	}
	if hasParams(c.TokenProcessorConfig) {
		note("tokenProcessorConfig ignored: the block size comes with each engine's events, and blocks are keyed by meshllm's own hash of their token ids")
	}
	if c.SpeculativeIndexing != nil || c.SpeculativeTTL != "" {
		note("speculativeIndexing/speculativeTTL ignored: a pick's blocks always count as held for 5s until its engine confirms them")
	}
	if prev := out.KVEvents; prev != (EPPKVEvents{}) && !sameKVEvents(prev, got) {
		return errors.New("parameters: kvEventsConfig differs from another precise prefix-cache plugin's: meshllm has one KV-event source")
	}
	out.KVEvents = got
	return nil
}

func sameKVEvents(a, b EPPKVEvents) bool {
	eq := func(x, y *int) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	eqs := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eq(a.Port, b.Port) && eqs(a.Topic, b.Topic) && a.Listen == b.Listen
}
