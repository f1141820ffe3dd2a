package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/stretchr/testify/require"
)

const eppHead = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"

func ws(pairs ...any) []scheduling.WeightedScorer {
	out := []scheduling.WeightedScorer{}
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, scheduling.WeightedScorer{Name: pairs[i].(string), Weight: float64(pairs[i+1].(int))})
	}
	return out
}

// everyStrategy: upstream runs its one profile for every request.
func everyStrategy(p scheduling.ProfileSpec) map[pickapi.Strategy]scheduling.ProfileSpec {
	out := map[pickapi.Strategy]scheduling.ProfileSpec{}
	for _, st := range pickapi.Strategies {
		out[st] = p
	}
	return out
}

var inFlightOnly = []string{"in_flight"}

// mustSchedule checks the overlay is a valid scheduler configuration.
func mustSchedule(t *testing.T, e EPPConfig) scheduling.Config {
	t.Helper()
	c := Defaults()
	c.EPP = &e
	sc, err := c.SchedulingConfig()
	require.NoError(t, err)
	_, err = scheduling.New(sc)
	require.NoError(t, err)
	return sc
}

func TestEPPMappings(t *testing.T) {
	for _, tc := range []struct {
		name      string
		yaml      string
		profiles  map[pickapi.Strategy]scheduling.ProfileSpec
		plugins   map[string]string
		shed      *scheduling.Saturation
		fallbacks *int
		notes     []string // substrings, one note each, in order
	}{{
		name: "each scorer maps onto ours, default weight 1, picker and in_flight added",
		yaml: `plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: lora-affinity-scorer
- type: running-requests-size-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
  - pluginRef: lora-affinity-scorer
    weight: 4
  - pluginRef: running-requests-size-scorer
    weight: 0
`,
		profiles: everyStrategy(scheduling.ProfileSpec{Prepare: inFlightOnly, Scorers: ws("queue", 2, "kv_cache", 1, "lora", 4, "running", 0), Picker: "max_score"}),
	}, {
		name: "prefix-cache-scorer adds the prefix prepare plugin; lruCapacityPerServer is its capacity",
		yaml: `plugins:
- type: prefix-cache-scorer
  parameters: {lruCapacityPerServer: 31250, blockSize: 64, autoTune: false}
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-scorer
    weight: 3
`,
		profiles: everyStrategy(scheduling.ProfileSpec{Prepare: []string{"in_flight", "prefix"}, Scorers: ws("prefix", 3), Picker: "max_score"}),
		plugins:  map[string]string{"prefix": `{"capacity":31250}`},
	}, {
		name: "prefix parameters meshllm cannot apply are noted",
		yaml: `plugins:
- type: prefix-cache-scorer
  parameters: {hashBlockSize: 5, maxPrefixBlocksToMatch: 256, autoTune: true, blockSizeTokens: 8, maxModelLen: 8192, prefixLengthWeight: 0}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: prefix-cache-scorer}]
`,
		profiles: everyStrategy(scheduling.ProfileSpec{Prepare: []string{"in_flight", "prefix"}, Scorers: ws("prefix", 1), Picker: "max_score"}),
		notes:    []string{"autoTune ignored", "blockSizeTokens 8 ignored", "hashBlockSize 5 ignored", "maxModelLen 8192 ignored", "maxPrefixBlocksToMatch 256 ignored"},
	}, {
		name: "approx-prefix-cache-producer's parameters set the index; named profiles map to their strategy only",
		yaml: `plugins:
- type: approx-prefix-cache-producer
  parameters: {lruCapacityPerServer: 1000, maxPrefixTokensToMatch: 4096}
- name: pfx
  type: prefix-cache-scorer
- type: queue-scorer
schedulingProfiles:
- name: PREFIX_CACHE
  plugins: [{pluginRef: pfx, weight: 5}, {pluginRef: queue-scorer}]
- name: DEFAULT
  plugins: [{pluginRef: queue-scorer, weight: 2}]
`,
		profiles: map[pickapi.Strategy]scheduling.ProfileSpec{
			pickapi.StrategyPrefixCache: {Prepare: []string{"in_flight", "prefix"}, Scorers: ws("prefix", 5, "queue", 1), Picker: "max_score"},
			pickapi.StrategyDefault:     {Prepare: inFlightOnly, Scorers: ws("queue", 2), Picker: "max_score"},
		},
		plugins: map[string]string{"prefix": `{"capacity":1000}`},
		notes:   []string{"maxPrefixTokensToMatch 4096 ignored"},
	}, {
		name: "predicted-ttft-scorer is LATENCY's scorer: its Prepare runs last, its parameters pass on",
		yaml: `plugins:
- type: prefix-cache-scorer
- type: predicted-ttft-scorer
  parameters: {maxBatchedTokens: 8192}
schedulingProfiles:
- name: LATENCY
  plugins: [{pluginRef: predicted-ttft-scorer, weight: 10}, {pluginRef: prefix-cache-scorer, weight: 1}]
`,
		profiles: map[pickapi.Strategy]scheduling.ProfileSpec{
			pickapi.StrategyLatency: {Prepare: []string{"in_flight", "prefix", "predicted_ttft"}, Scorers: ws("predicted_ttft", 10, "prefix", 1), Picker: "max_score"},
		},
		plugins: map[string]string{"predicted_ttft": `{"maxBatchedTokens":8192}`},
	}, {
		name: "one named profile leaves the other strategy to meshllm's default",
		yaml: `plugins: [{type: queue-scorer}]
schedulingProfiles: [{name: DEFAULT, plugins: [{pluginRef: queue-scorer}]}]
`,
		profiles: map[pickapi.Strategy]scheduling.ProfileSpec{pickapi.StrategyDefault: {Prepare: inFlightOnly, Scorers: ws("queue", 1), Picker: "max_score"}},
	}, {
		name: "no profiles: one default profile with every scorer, as upstream's loader",
		yaml: `plugins: [{type: queue-scorer}, {type: single-profile-handler}, {type: kv-cache-utilization-scorer}]
`,
		profiles: everyStrategy(scheduling.ProfileSpec{Prepare: inFlightOnly, Scorers: ws("queue", 1, "kv_cache", 1), Picker: "max_score"}),
	}, {
		name: "max-score-picker's maxNumOfEndpoints is fallbacks + 1",
		yaml: `plugins: [{type: queue-scorer}, {type: max-score-picker, parameters: {maxNumOfEndpoints: 3}}]
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]}]
`,
		profiles:  everyStrategy(scheduling.ProfileSpec{Prepare: inFlightOnly, Scorers: ws("queue", 1), Picker: "max_score"}),
		fallbacks: intp(2),
	}, {
		name: "utilization-detector in a profile is the capacity filter (with headroom) and, as the default detector, shedding",
		yaml: `plugins:
- type: queue-scorer
- type: utilization-detector
  parameters: {queueDepthThreshold: 10, kvCacheUtilThreshold: 0.9, headroom: 0.5, metricsStalenessThreshold: 200ms}
schedulingProfiles: [{name: default, plugins: [{pluginRef: utilization-detector}, {pluginRef: queue-scorer}]}]
`,
		profiles: everyStrategy(scheduling.ProfileSpec{Prepare: inFlightOnly, Filters: []string{"capacity"}, Scorers: ws("queue", 1), Picker: "max_score"}),
		plugins:  map[string]string{"capacity": `{"queue":15,"kv":1}`},
		shed:     &scheduling.Saturation{Queue: 10, KV: 0.9},
		notes:    []string{`metricsStalenessThreshold "200ms" ignored`},
	}, {
		name: "llm-d-router's flowControl.saturationDetector names the detector",
		yaml: `plugins:
- type: queue-scorer
- {name: sat, type: utilization-detector, parameters: {queueDepthThreshold: 7}}
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}]}]
flowControl: {saturationDetector: {pluginRef: sat}}
`,
		profiles: everyStrategy(scheduling.ProfileSpec{Prepare: inFlightOnly, Scorers: ws("queue", 1), Picker: "max_score"}),
		shed:     &scheduling.Saturation{Queue: 7, KV: 0.8},
	}, {
		name: "GIE's saturationDetector thresholds are shedSheddable",
		yaml: `plugins: [{type: queue-scorer}]
schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}]}]
saturationDetector: {queueDepthThreshold: 8, kvCacheUtilThreshold: 0.85, metricsStalenessThreshold: 1s}
`,
		profiles: everyStrategy(scheduling.ProfileSpec{Prepare: inFlightOnly, Scorers: ws("queue", 1), Picker: "max_score"}),
		shed:     &scheduling.Saturation{Queue: 8, KV: 0.85},
		notes:    []string{`metricsStalenessThreshold "1s": ignored`},
	}, {
		name: "decode-filter, data layer, parser and feature gates are accepted and noted",
		yaml: `featureGates: [dataLayer]
plugins:
- type: decode-filter
- type: queue-scorer
- type: metrics-data-source
  parameters: {scheme: http, path: /metrics}
- type: core-metrics-extractor
- type: openai-parser
schedulingProfiles: [{name: default, plugins: [{pluginRef: decode-filter}, {pluginRef: queue-scorer}]}]
dataLayer: {sources: [{pluginRef: metrics-data-source, extractors: [{pluginRef: core-metrics-extractor}]}]}
requestHandler: {parsers: [{pluginRef: openai-parser}]}
`,
		profiles: everyStrategy(scheduling.ProfileSpec{Prepare: inFlightOnly, Scorers: ws("queue", 1), Picker: "max_score"}),
		notes:    []string{"dataLayer: ignored", `featureGates "dataLayer": ignored`, `"core-metrics-extractor" (core-metrics-extractor): ignored`, `"decode-filter" (decode-filter): no-op`, `"metrics-data-source" (metrics-data-source): ignored`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseEndpointPickerConfig([]byte(eppHead + tc.yaml))
			require.NoError(t, err)
			require.Equal(t, tc.profiles, e.Profiles)
			got := map[string]string{}
			for n, raw := range e.Plugins {
				got[n] = string(raw)
			}
			if tc.plugins == nil {
				tc.plugins = map[string]string{}
			}
			require.Equal(t, tc.plugins, got)
			require.Equal(t, tc.shed, e.ShedSheddable)
			require.Equal(t, tc.fallbacks, e.Fallbacks)
			require.Len(t, e.Notes, len(tc.notes), "notes: %q", e.Notes)
			for i, want := range tc.notes {
				require.Contains(t, e.Notes[i], want)
			}
			mustSchedule(t, e)
		})
	}
}

func TestEPPJSON(t *testing.T) {
	e, err := ParseEndpointPickerConfig([]byte(`{"apiVersion":"llm-d.ai/v1","kind":"EndpointPickerConfig",
		"plugins":[{"type":"queue-scorer"}],"schedulingProfiles":[{"name":"x","plugins":[{"pluginRef":"queue-scorer","weight":2.5}]}]}`))
	require.NoError(t, err)
	require.Equal(t, 2.5, e.Profiles[pickapi.StrategyDefault].Weight("queue"))
	require.Equal(t, 2.5, e.Profiles[pickapi.StrategyPrefixCache].Weight("queue"))
}

func TestEPPErrors(t *testing.T) {
	profile := "schedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}]}]\n"
	for _, tc := range []struct {
		yaml string // after eppHead unless it starts with "apiVersion"
		want string
	}{
		{"apiVersion: v1\nkind: EndpointPickerConfig\n", `apiVersion "v1"`},
		{"apiVersion: llm-d.ai/v1\nkind: Config\n", `kind "Config"`},
		{"plugin: []\n", `unknown field "plugin"`},
		{"plugins: [{type: magic-scorer}]\n", `unknown plugin type "magic-scorer"`},
		{"plugins: [{type: random-picker}]\n", `type "random-picker" is an upstream picker that meshllm does not implement`},
		{"plugins: [{type: pd-profile-handler}]\n", `"pd-profile-handler" is an upstream prefill/decode profile handler that meshllm does not implement`},
		{"plugins: [{type: low-queue-filter, parameters: {threshold: 128}}]\n", `"low-queue-filter" is an upstream filter that meshllm does not implement`},
		{"plugins: [{name: x}]\n", `plugins[0] ("x"): type is required`},
		{"plugins: [{type: queue-scorer}, {type: queue-scorer}]\n", `name "queue-scorer" is used twice`},
		{"plugins: [{type: queue-scorer, parameters: {depth: 3}}]\n", `type "queue-scorer" takes no parameters, got {"depth":3}`},
		{"plugins: [{type: prefix-cache-scorer, parameters: {blokSize: 3}}]\n", `unknown field "blokSize"`},
		{"plugins: [{type: prefix-cache-scorer, parameters: {prefixLengthWeight: 0.5}}]\n", `prefixLengthWeight 0.5`},
		{"plugins: [{type: prefix-cache-scorer, parameters: {prefixMatchInfoProducerName: gpu}}]\n", `prefixMatchInfoProducerName "gpu"`},
		{"plugins: [{type: prefix-cache-scorer, parameters: {lruCapacityPerServer: 99999999}}]\n", `lruCapacityPerServer 99999999 outside`},
		{"plugins: [{type: approx-prefix-cache-producer, parameters: {lruCapacityPerServer: 10}}, {type: prefix-cache-scorer, parameters: {lruCapacityPerServer: 20}}]\n", `lruCapacityPerServer 20 differs`},
		{"plugins: [{type: max-score-picker, parameters: {maxNumOfEndpoints: 40}}]\n", `maxNumOfEndpoints 40 outside 1..9`},
		{"plugins: [{type: utilization-detector, parameters: {kvCacheUtilThreshold: 1.5}}]\n", `kvCacheUtilThreshold 1.5`},
		{"plugins: [{type: utilization-detector, parameters: {headroom: -1}}]\n", `headroom -1`},
		{"plugins: [{type: utilization-detector}, {name: u2, type: utilization-detector}]\n", `a second utilization-detector`},
		{"plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: default, plugins: [{pluginRef: queue}]}]\n", `pluginRef "queue" names no entry`},
		{"plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer, weight: -1}]}]\n", `weight of "queue-scorer" is -1`},
		{"plugins: [{type: max-score-picker}]\nschedulingProfiles: [{name: default, plugins: [{pluginRef: max-score-picker, weight: 2}]}]\n", `"max-score-picker" (max-score-picker) is not a scorer: weight 2`},
		{"plugins: [{type: single-profile-handler}]\nschedulingProfiles: [{name: default, plugins: [{pluginRef: single-profile-handler}]}]\n", `"single-profile-handler" (single-profile-handler) cannot be in a profile`},
		{"plugins: [{type: queue-scorer}, {name: q2, type: queue-scorer}]\nschedulingProfiles: [{name: default, plugins: [{pluginRef: queue-scorer}, {pluginRef: q2}]}]\n", `"q2" is a second queue-scorer`},
		{"plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: prefill, plugins: [{pluginRef: queue-scorer}]}, {name: decode, plugins: [{pluginRef: queue-scorer}]}]\n", `schedulingProfiles[0] ("prefill"): with several profiles each must be named DEFAULT, PREFIX_CACHE, PRECISE_PREFIX_CACHE or LATENCY`},
		{"plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: DEFAULT, plugins: [{pluginRef: queue-scorer}]}, {name: DEFAULT, plugins: [{pluginRef: queue-scorer}]}]\n", `strategy DEFAULT has two profiles`},
		{"plugins: [{type: queue-scorer}]\n" + profile + "saturationDetector: {pluginRef: nope}\n", `saturationDetector: pluginRef "nope" names no entry`},
		{"plugins: [{type: queue-scorer}]\n" + profile + "saturationDetector: {pluginRef: queue-scorer}\n", `pluginRef "queue-scorer" is a queue-scorer, not a saturation detector`},
		{"plugins: [{type: queue-scorer}]\n" + profile + "saturationDetector: {queueDepthThreshold: 0}\n", `queueDepthThreshold 0, want > 0`},
		{"plugins: [{type: queue-scorer}]\n" + profile + "saturationDetector: {queueDepthThreshold: 3, pluginRef: x}\n", `pluginRef "x" and thresholds are two shapes`},
		{"plugins: [{type: queue-scorer}]\n" + profile + "flowControl: {maxBytes: 1Gi}\n", `flowControl.maxBytes: meshllm has no flow-control queue`},
		{"plugins: [{type: queue-scorer}]\n" + profile + "flowControl: {saturationDetector: {pluginRef: ''}}\n", `flowControl.saturationDetector: want {pluginRef: NAME}`},
		{"plugins: [{type: queue-scorer}]\n" + profile + "parser: {pluginRef: vllmgrpc-parser}\n", `parser: pluginRef "vllmgrpc-parser" names no entry`},
		{"plugins: [{type: queue-scorer}]\n" + profile + "requestHandler: {parsers: [{pluginRef: queue-scorer}]}\n", `pluginRef "queue-scorer" is a queue-scorer, not a parser`},
	} {
		in := tc.yaml
		if !strings.HasPrefix(in, "apiVersion") {
			in = eppHead + in
		}
		_, err := ParseEndpointPickerConfig([]byte(in))
		require.ErrorContains(t, err, tc.want, in)
	}
}

// The upstream's own sample configs, copied into testdata with their source
// in each file's header.
func TestEPPUpstreamSamples(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(t, err)
		return b
	}

	// GIE's chart default: queue 2, KV 2, prefix 3 for every request.
	e, err := ParseEndpointPickerConfig(read("gie-chart-default-plugins.yaml"))
	require.NoError(t, err)
	require.Equal(t, everyStrategy(scheduling.ProfileSpec{Prepare: []string{"in_flight", "prefix"}, Scorers: ws("queue", 2, "kv_cache", 2, "prefix", 3), Picker: "max_score"}), e.Profiles)
	require.Empty(t, e.Notes)
	require.Nil(t, e.ShedSheddable)
	sc := mustSchedule(t, e)
	require.Empty(t, sc.Profiles[pickapi.StrategyDefault].Filters, "upstream's profile has no filter, so neither has ours")

	// llm-d's simulator sample: prefix 2 behind decode-filter, the index
	// sized by the producer's lruCapacityPerServer.
	e, err = ParseEndpointPickerConfig(read("llm-d-sim-epp-config.yaml"))
	require.NoError(t, err)
	require.Equal(t, everyStrategy(scheduling.ProfileSpec{Prepare: []string{"in_flight", "prefix"}, Scorers: ws("prefix", 2), Picker: "max_score"}), e.Profiles)
	require.JSONEq(t, `{"capacity":31250}`, string(e.Plugins["prefix"]))
	require.Len(t, e.Notes, 2, "%q", e.Notes)
	require.Contains(t, e.Notes[0], "maxPrefixTokensToMatch 4096 ignored")
	require.Contains(t, e.Notes[1], "decode-filter")
	mustSchedule(t, e)

	// llm-d's main sample adds models-responder, which meshllm does not have.
	_, err = ParseEndpointPickerConfig(read("llm-d-epp-config.yaml"))
	require.ErrorContains(t, err, `plugins[4] ("models-responder"): type "models-responder" is an upstream /v1/models responder that meshllm does not implement`)
}

func TestEPPFlagAndPrecedence(t *testing.T) {
	dir := t.TempDir()
	epp := filepath.Join(dir, "epp.yaml")
	require.NoError(t, os.WriteFile(epp, []byte(eppHead+`plugins:
- type: queue-scorer
- type: prefix-cache-scorer
  parameters: {lruCapacityPerServer: 1000}
- type: max-score-picker
  parameters: {maxNumOfEndpoints: 2}
- type: utilization-detector
  parameters: {queueDepthThreshold: 9}
schedulingProfiles:
- name: default
  plugins: [{pluginRef: queue-scorer, weight: 2}, {pluginRef: prefix-cache-scorer, weight: 3}]
`), 0o600))
	cfg := filepath.Join(dir, "picker.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`
discovery: {endpoints: ["10.0.0.1:8000"]}
scheduling:
  weights: {PREFIX_CACHE: {prefix: 7}}
  fallbacks: 4
`), 0o600))

	for _, args := range [][]string{{"--epp-config", epp}, nil} {
		c, err := Load(append(args, "--config", cfg), env(map[string]string{"PICKER_EPP_CONFIG": epp}))
		require.NoError(t, err)
		sc, err := c.SchedulingConfig()
		require.NoError(t, err)
		def, pc := sc.Profiles[pickapi.StrategyDefault], sc.Profiles[pickapi.StrategyPrefixCache]
		require.Equal(t, ws("queue", 2, "prefix", 3), def.Scorers, "the EPP profile replaces meshllm's default")
		require.Equal(t, 7.0, pc.Weight("prefix"), "the config file's weights refine the EPP profile")
		require.Equal(t, 4, sc.Fallbacks, "the config file's fallbacks beat maxNumOfEndpoints")
		require.Equal(t, scheduling.Saturation{Queue: 9, KV: 0.8}, sc.ShedSheddable)
		require.JSONEq(t, `{"capacity":1000}`, string(sc.Plugins["prefix"]))
		_, err = scheduling.New(sc)
		require.NoError(t, err)
	}

	require.NoError(t, os.WriteFile(epp, []byte(eppHead+"plugins: [{type: random-picker}]\n"), 0o600))
	_, err := Load([]string{"--endpoints", "10.0.0.1:1", "--epp-config", epp}, env(nil))
	require.ErrorContains(t, err, "epp config "+epp+`: plugins[0] ("random-picker")`)
	_, err = Load([]string{"--endpoints", "10.0.0.1:1", "--epp-config", filepath.Join(dir, "missing.yaml")}, env(nil))
	require.ErrorContains(t, err, "missing.yaml")
}

// Without --epp-config nothing changes: the scheduler gets meshllm's
// defaults exactly.
func TestEPPAbsentKeepsDefaults(t *testing.T) {
	c, err := Load([]string{"--endpoints", "10.0.0.1:1"}, env(nil))
	require.NoError(t, err)
	require.Nil(t, c.EPP)
	sc, err := c.SchedulingConfig()
	require.NoError(t, err)
	want := scheduling.DefaultConfig()
	want.Plugins = map[string]json.RawMessage{}
	require.Equal(t, want, sc)
}

func intp(v int) *int { return &v }

func TestEPPPrecisePrefixScorer(t *testing.T) {
	e, err := ParseEndpointPickerConfig([]byte(`apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: precise-prefix-cache-scorer
  parameters: {kvEventsConfig: {zmqEndpoint: "tcp://*:5557"}}
- type: queue-scorer
schedulingProfiles:
- name: PRECISE_PREFIX_CACHE
  plugins: [{pluginRef: precise-prefix-cache-scorer, weight: 3}, {pluginRef: queue-scorer}]
`))
	if err != nil {
		t.Fatal(err)
	}
	spec := e.Profiles[pickapi.StrategyPrecisePrefixCache]
	if want := []string{"in_flight", "prefix", scheduling.PrecisePrefixName}; !slices.Equal(spec.Prepare, want) {
		t.Errorf("prepare %v, want %v (the guess it falls back to first)", spec.Prepare, want)
	}
	if w := spec.Weight(scheduling.PrecisePrefixName); w != 3 {
		t.Errorf("precise_prefix weight %v, want 3", w)
	}
	if e.KVEvents.Listen != "tcp://*:5557" || len(e.Notes) != 0 {
		t.Errorf("kvEvents %+v, notes %q: want bind mode on tcp://*:5557 and no notes", e.KVEvents, e.Notes)
	}
}
