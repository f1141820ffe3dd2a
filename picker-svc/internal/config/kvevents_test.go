package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func eppWithPrecise(params string) []byte {
	return []byte(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: precise-prefix-cache-scorer
  parameters: ` + params + `
schedulingProfiles:
- name: PRECISE_PREFIX_CACHE
  plugins: [{pluginRef: precise-prefix-cache-scorer}]
`)
}

func strp(s string) *string { return &s }

// llm-d's precise-prefix-cache-scorer parameters, as its guides write them:
// the subscription settings become meshllm's, the rest is noted.
func TestEPPPreciseKVEventsParameters(t *testing.T) {
	e, err := ParseEndpointPickerConfig(eppWithPrecise(`
    tokenProcessorConfig: {blockSize: 64, hashSeed: "12345"}
    indexerConfig: {tokenizersPoolConfig: {modelName: Qwen/Qwen3-32B}}
    kvEventsConfig:
      topicFilter: "kv@"
      concurrency: 4
      discoverPods: true
      podDiscoveryConfig: {socketPort: 5600, podLabelSelector: "llm-d.ai/inference-serving=true"}
    speculativeIndexing: true`))
	require.NoError(t, err)
	assert.Equal(t, EPPKVEvents{Port: intp(5600), Topic: strp("kv@")}, e.KVEvents)
	notes := strings.Join(e.Notes, "\n")
	for _, want := range []string{"tokenProcessorConfig ignored", "indexerConfig ignored", "concurrency ignored", "podLabelSelector", "speculativeIndexing"} {
		assert.Contains(t, notes, want)
	}

	for params, wantErr := range map[string]string{
		`{kvEventsConfig: {zmqEndpoint: "tcp://*:5557", discoverPods: true}}`: "remove one",
		`{kvEventsConfig: {engineType: sglang}}`:                              `engineType "sglang"`,
		`{kvEventsConfig: {podDiscoveryConfig: {socketPort: 0}}}`:             "socketPort 0",
		`{kvEventsConfig: {topicFilters: "kv@"}}`:                             "topicFilters",
		`{tokenizer: {}}`: "tokenizer",
	} {
		_, err := ParseEndpointPickerConfig(eppWithPrecise(params))
		if assert.Error(t, err, params) {
			assert.Contains(t, err.Error(), wantErr, params)
		}
	}

	// Two precise plugins must agree: there is one KV-event source.
	_, err = ParseEndpointPickerConfig([]byte(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- {name: a, type: precise-prefix-cache-scorer, parameters: {kvEventsConfig: {podDiscoveryConfig: {socketPort: 5557}}}}
- {name: b, type: precise-prefix-cache-scorer, parameters: {kvEventsConfig: {podDiscoveryConfig: {socketPort: 5558}}}}
schedulingProfiles:
- {name: PRECISE_PREFIX_CACHE, plugins: [{pluginRef: a}]}
`))
	assert.ErrorContains(t, err, "differs from another")
}

// Per-pool publisher settings over the picker-wide ones, which come from
// the config file, else the EndpointPickerConfig, else the defaults; flags
// beat them all.
func TestKVEventsPerPool(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "picker.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
discovery: {mode: static, endpoints: ["10.0.0.1:8000"]}
kvEvents:
  topic: "kv@"
  replayPort: 5558
  pools:
    chat: {port: 6000, topic: "", replayPort: 0}
    code: {topic: "kv@code"}
`), 0o600))
	epp := filepath.Join(dir, "epp.yaml")
	require.NoError(t, os.WriteFile(epp, eppWithPrecise(`{kvEventsConfig: {topicFilter: "ignored@", podDiscoveryConfig: {socketPort: 5600}}}`), 0o600))

	c, err := Load([]string{"--config", cfg, "--epp-config", epp}, env(nil))
	require.NoError(t, err)
	def, pools := c.KVEvents.Publishers()
	assert.Equal(t, KVPublisher{Port: 5600, ReplayPort: 5558, Topic: "kv@"}, def, "port from the EndpointPickerConfig; the file's topic wins over it")
	assert.Equal(t, map[string]KVPublisher{
		"chat": {Port: 6000, ReplayPort: 0, Topic: ""},
		"code": {Port: 5600, ReplayPort: 5558, Topic: "kv@code"},
	}, pools)

	c, err = Load([]string{"--config", cfg, "--epp-config", epp, "--kv-events-port", "7000"}, env(nil))
	require.NoError(t, err)
	def, pools = c.KVEvents.Publishers()
	assert.Equal(t, 7000, def.Port, "the flag beats the EndpointPickerConfig")
	assert.Equal(t, 6000, pools["chat"].Port, "a pool's own port beats the picker-wide one")
	assert.Equal(t, 7000, pools["code"].Port)

	// Without a config file the EndpointPickerConfig's topic applies.
	c, err = Load([]string{"--endpoints", "10.0.0.1:8000", "--epp-config", epp}, env(nil))
	require.NoError(t, err)
	assert.Equal(t, "ignored@", c.KVEvents.Topic)

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(`
discovery: {mode: static, endpoints: ["10.0.0.1:8000"]}
kvEvents: {pools: {chat: {port: 70000, replayPort: -1}}}
`), 0o600))
	_, err = Load([]string{"--config", bad}, env(nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "kvEvents.pools.chat.port 70000")
	assert.Contains(t, err.Error(), "kvEvents.pools.chat.replayPort -1")
}

// llm-d-router's form: a precise-prefix-cache-producer holding the index
// and a prefix-cache-scorer naming it, as its precise routing guide
// writes them, is meshllm's precise_prefix.
func TestEPPPrecisePrefixProducer(t *testing.T) {
	e, err := ParseEndpointPickerConfig([]byte(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: decode-filter
- type: precise-prefix-cache-producer
  parameters:
    tokenProcessorConfig: {blockSize: 64}
    kvEventsConfig: {topicFilter: "kv@", discoverPods: true, podDiscoveryConfig: {socketPort: 5557}}
- type: prefix-cache-scorer
  parameters: {prefixMatchInfoProducerName: precise-prefix-cache-producer}
- type: kv-cache-utilization-scorer
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: decode-filter
  - {pluginRef: prefix-cache-scorer, weight: 2}
  - {pluginRef: kv-cache-utilization-scorer, weight: 1}
  - {pluginRef: queue-scorer, weight: 1}
  - pluginRef: max-score-picker
`))
	require.NoError(t, err)
	for _, st := range []string{"DEFAULT", "PREFIX_CACHE"} {
		spec := e.Profiles[pickapi.Strategy(st)]
		assert.Equal(t, 2.0, spec.Weight("precise_prefix"), st)
		assert.Zero(t, spec.Weight("prefix"), st)
		assert.Equal(t, []string{"in_flight", "prefix", "precise_prefix"}, spec.Prepare, st)
	}
	assert.Equal(t, EPPKVEvents{Port: intp(5557), Topic: strp("kv@")}, e.KVEvents)

	for yaml, wantErr := range map[string]string{
		"plugins: [{type: queue-scorer}, {type: prefix-cache-scorer, parameters: {prefixMatchInfoProducerName: queue-scorer}}]\n": `"queue-scorer" is a queue-scorer, not a prefix-cache producer`,
		"plugins: [{type: precise-prefix-cache-producer, parameters: {sessionManager: sessions}}]\n":                              "sessionManager",
	} {
		_, err := ParseEndpointPickerConfig([]byte("apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n" + yaml))
		if assert.Error(t, err, yaml) {
			assert.Contains(t, err.Error(), wantErr)
		}
	}
}
