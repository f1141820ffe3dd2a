package config

// Acceptance of the upstream endpoint picker's EndpointPickerConfig, so that
// a platform team running the Gateway API Inference Extension / llm-d
// endpoint picker can bring its config file (--epp-config).
//
// The shape is apix/config/v1alpha1 EndpointPickerConfig in
// kubernetes-sigs/gateway-api-inference-extension and in llm-d/llm-d-router
// (apix/config/v1alpha1/endpointpickerconfig_types.go in both):
// plugins[]{name, type, parameters}, schedulingProfiles[]{name,
// plugins[]{pluginRef, weight}}, featureGates, saturationDetector (GIE:
// {queueDepthThreshold, kvCacheUtilThreshold, metricsStalenessThreshold};
// llm-d-router: {pluginRef}), data (GIE) / dataLayer (llm-d-router),
// flowControl, parser, requestHandler. The defaults the upstream loader
// applies are kept (llm-d/llm-d-router pkg/epp/config/loader/defaults.go): a
// plugin's name is its type when omitted, a scorer without a weight weighs
// 1, a profile without a picker gets max-score-picker, one profile without
// a handler gets single-profile-handler, no profiles at all means one
// profile "default" holding every filter, scorer and picker.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"sigs.k8s.io/yaml"
)

// EPPConfig is what an EndpointPickerConfig sets in the scheduler's
// configuration: an overlay on scheduling.DefaultConfig that the picker's
// own scheduling keys then refine.
type EPPConfig struct {
	// Profiles for the strategies the file's profiles map to; a strategy
	// none maps to keeps meshllm's default profile.
	Profiles map[pickapi.Strategy]scheduling.ProfileSpec
	// Plugins holds meshllm plugin parameters translated from upstream ones.
	Plugins map[string]json.RawMessage
	// ShedSheddable from the utilization detector's thresholds (nil: unset).
	ShedSheddable *scheduling.Saturation
	// Fallbacks from max-score-picker's maxNumOfEndpoints - 1 (nil: unset).
	Fallbacks *int
	// KVEvents: the precise prefix-cache plugin's KV-event settings.
	KVEvents EPPKVEvents
	// Notes name what the file says that meshllm accepts but does not
	// apply, and why; the picker logs each at start.
	Notes []string

	// The utilization detector's thresholds: ideal (shedding) and with
	// headroom (its filter role); nil without one.
	detectorShed, detectorFilter *scheduling.Saturation
}

// The apiVersions EndpointPickerConfig has been published under: the GIE
// repo's group (its config/charts/inferencepool/templates/epp-config.yaml),
// and llm-d-router's (deploy/config/sim-epp-config.yaml: llm-d.ai/v1alpha1;
// deploy/config/epp-config.yaml: llm-d.ai/v1).
var eppAPIVersions = []string{"inference.networking.x-k8s.io/v1alpha1", "llm-d.ai/v1alpha1", "llm-d.ai/v1"}

type eppFile struct {
	APIVersion         string            `json:"apiVersion"`
	Kind               string            `json:"kind"`
	FeatureGates       []string          `json:"featureGates"`
	Plugins            []eppPluginSpec   `json:"plugins"`
	SchedulingProfiles []eppProfile      `json:"schedulingProfiles"`
	SaturationDetector *eppSaturation    `json:"saturationDetector"`
	Data               json.RawMessage   `json:"data"`
	DataLayer          json.RawMessage   `json:"dataLayer"`
	FlowControl        map[string]any    `json:"flowControl"`
	Parser             *eppRef           `json:"parser"`
	RequestHandler     *eppRequestHandle `json:"requestHandler"`
}

type eppPluginSpec struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Parameters json.RawMessage `json:"parameters"`
}

type eppProfile struct {
	Name    string `json:"name"`
	Plugins []struct {
		PluginRef string   `json:"pluginRef"`
		Weight    *float64 `json:"weight"`
	} `json:"plugins"`
}

// eppSaturation is both shapes: GIE's thresholds and llm-d-router's
// reference to a detector plugin.
type eppSaturation struct {
	PluginRef                 string   `json:"pluginRef"`
	QueueDepthThreshold       *float64 `json:"queueDepthThreshold"`
	KVCacheUtilThreshold      *float64 `json:"kvCacheUtilThreshold"`
	MetricsStalenessThreshold string   `json:"metricsStalenessThreshold"`
}

type eppRef struct {
	PluginRef string `json:"pluginRef"`
}

type eppRequestHandle struct {
	Parsers []eppRef `json:"parsers"`
}

// What an upstream plugin type is to meshllm.
type eppKind int

const (
	eppScorer eppKind = iota
	eppFilter
	eppPicker
	eppProfileHandler
	eppPrefixProducer  // approx-prefix-cache-producer: our prefix plugin's index
	eppPreciseProducer // precise-prefix-cache-producer: the KV-event index precise_prefix reads
	eppDetector        // utilization-detector: shedding, and a filter in a profile
	eppParser          // openai-parser: the filter parses OpenAI bodies itself
	eppDataLayer       // metrics source / extractor: meshllm scrapes itself
)

type eppMapping struct {
	kind eppKind
	ours string // the meshllm plugin it becomes ("" for none)
	// params translates the upstream parameters (nil: none allowed).
	params func(p *eppPlugin, raw json.RawMessage, out *EPPConfig) error
}

// eppSupported lists the upstream plugin types meshllm maps, each checked
// at its source (repo + path in the README table).
var eppSupported = map[string]eppMapping{
	"queue-scorer":                 {kind: eppScorer, ours: "queue"},
	"kv-cache-utilization-scorer":  {kind: eppScorer, ours: "kv_cache"},
	"lora-affinity-scorer":         {kind: eppScorer, ours: "lora"},
	"running-requests-size-scorer": {kind: eppScorer, ours: "running"},
	"prefix-cache-scorer":          {kind: eppScorer, ours: "prefix", params: prefixParams},
	// llm-d's precise-prefix-cache-scorer scores the blocks each pod's
	// engine reports holding (llm-d-kv-cache); its KV-event parameters
	// become meshllm's kvEvents settings (precisePrefixParams).
	"precise-prefix-cache-scorer": {kind: eppScorer, ours: scheduling.PrecisePrefixName, params: precisePrefixParams},
	// meshllm's own: the LATENCY strategy's scorer (predicted time to
	// first token), with its parameters as meshllm's predicted_ttft.
	"predicted-ttft-scorer":        {kind: eppScorer, ours: "predicted_ttft", params: ownParams("predicted_ttft")},
	"approx-prefix-cache-producer": {kind: eppPrefixProducer, ours: "prefix", params: prefixParams},
	// llm-d-router's split of the precise scorer: the producer holds the
	// KV-event index (same parameters), and a prefix-cache-scorer naming
	// it in prefixMatchInfoProducerName scores from it
	// (pkg/epp/framework/plugins/requestcontrol/dataproducer/preciseprefixcache/README.md):
	// together, meshllm's precise_prefix.
	"precise-prefix-cache-producer": {kind: eppPreciseProducer, ours: scheduling.PrecisePrefixName, params: precisePrefixParams},
	"max-score-picker":              {kind: eppPicker, ours: "max_score", params: maxScoreParams},
	"single-profile-handler":        {kind: eppProfileHandler},
	"utilization-detector":          {kind: eppDetector, ours: "capacity", params: utilizationParams},
	// decode-filter keeps pods whose llm-d.ai/role label is decode-capable,
	// or that have no role label (llm-d-router
	// pkg/epp/framework/plugins/scheduling/filter/bylabel/roles.go). meshllm
	// has no prefill/decode split, so every pod is a decode pod: accepted as
	// a no-op, with a note, because every llm-d sample config lists it.
	"decode-filter":          {kind: eppFilter},
	"openai-parser":          {kind: eppParser},
	"metrics-data-source":    {kind: eppDataLayer, params: anyParams},
	"core-metrics-extractor": {kind: eppDataLayer, params: anyParams},
}

// eppUnimplemented lists upstream plugin types meshllm knows but does not
// implement: a file naming one is refused (routing would differ from what
// the file asks, and silently).
var eppUnimplemented = map[string]string{
	"random-picker":                 "picker",
	"weighted-random-picker":        "picker",
	"low-queue-filter":              "filter",
	"least-queue-filter":            "filter",
	"least-kv-cache-filter":         "filter",
	"lora-affinity-filter":          "filter",
	"decision-tree-filter":          "filter",
	"prefill-filter":                "prefill/decode filter",
	"encode-filter":                 "encode filter",
	"pd-profile-handler":            "prefill/decode profile handler",
	"prefill-header-handler":        "prefill/decode header handler",
	"slo-aware-routing":             "latency-predictor scorer",
	"slo-aware-profile-handler":     "latency-predictor profile handler",
	"load-aware-scorer":             "scorer",
	"session-control-scorer":        "scorer",
	"models-responder":              "/v1/models responder",
	"token-producer":                "tokenizer data producer",
	"model-server-protocol-metrics": "metrics extractor",
}

type eppPlugin struct {
	name, typ string
	mapping   eppMapping
	// producer: a prefix-cache-scorer's prefixMatchInfoProducerName.
	producer string
}

// ParseEndpointPickerConfig reads an upstream EndpointPickerConfig (YAML or
// JSON) into what it sets in meshllm's scheduler. Unknown fields, unknown
// plugin types and known types meshllm does not implement are errors that
// quote the value; what meshllm accepts but ignores is listed in Notes.
//
// Profiles map to strategies by name: a profile named DEFAULT or
// PREFIX_CACHE (as in the routing-strategy annotation) sets that strategy's
// profile; a single profile with any other name (upstream's is "default")
// sets both, since upstream runs it for every request; with several
// profiles each must be named after a strategy.
func ParseEndpointPickerConfig(b []byte) (EPPConfig, error) {
	out := EPPConfig{Profiles: map[pickapi.Strategy]scheduling.ProfileSpec{}, Plugins: map[string]json.RawMessage{}}
	var f eppFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return out, fmt.Errorf("EndpointPickerConfig: %w", err)
	}
	if f.Kind != "EndpointPickerConfig" {
		return out, fmt.Errorf("kind %q: want EndpointPickerConfig", f.Kind)
	}
	if !slices.Contains(eppAPIVersions, f.APIVersion) {
		return out, fmt.Errorf("apiVersion %q: want one of %q", f.APIVersion, eppAPIVersions)
	}

	plugins := map[string]*eppPlugin{}
	var order []string
	for i, ps := range f.Plugins {
		name := ps.Name
		if name == "" {
			name = ps.Type
		}
		where := fmt.Sprintf("plugins[%d] (%q)", i, name)
		if ps.Type == "" {
			return out, fmt.Errorf("%s: type is required", where)
		}
		m, ok := eppSupported[ps.Type]
		if !ok {
			if what, known := eppUnimplemented[ps.Type]; known {
				return out, fmt.Errorf("%s: type %q is an upstream %s that meshllm does not implement", where, ps.Type, what)
			}
			return out, fmt.Errorf("%s: unknown plugin type %q (supported: %q)", where, ps.Type, slices.Sorted(maps.Keys(eppSupported)))
		}
		if plugins[name] != nil {
			return out, fmt.Errorf("%s: name %q is used twice", where, name)
		}
		p := &eppPlugin{name: name, typ: ps.Type, mapping: m}
		plugins[name] = p
		order = append(order, name)
		if m.params != nil {
			if err := m.params(p, ps.Parameters, &out); err != nil {
				return out, fmt.Errorf("%s: %w", where, err)
			}
		} else if hasParams(ps.Parameters) {
			return out, fmt.Errorf("%s: type %q takes no parameters, got %s", where, ps.Type, compact(ps.Parameters))
		}
		switch m.kind {
		case eppFilter:
			out.Notes = append(out.Notes, fmt.Sprintf("plugin %q (%s): no-op: meshllm has no prefill/decode split, every pod serves decode", name, ps.Type))
		case eppDataLayer:
			out.Notes = append(out.Notes, fmt.Sprintf("plugin %q (%s): ignored: meshllm scrapes each endpoint's /metrics itself (scrape.*)", name, ps.Type))
		}
	}

	profiles := f.SchedulingProfiles
	if len(profiles) == 0 {
		// The upstream loader's default: one profile with every filter,
		// scorer and picker, in the order they are listed.
		def := eppProfile{Name: "default"}
		for _, n := range order {
			switch plugins[n].mapping.kind {
			case eppScorer, eppFilter, eppPicker:
				def.Plugins = append(def.Plugins, struct {
					PluginRef string   `json:"pluginRef"`
					Weight    *float64 `json:"weight"`
				}{PluginRef: n})
			}
		}
		profiles = []eppProfile{def}
	}
	for i, prof := range profiles {
		where := fmt.Sprintf("schedulingProfiles[%d] (%q)", i, prof.Name)
		spec, err := eppProfileSpec(prof, plugins)
		if err != nil {
			return out, fmt.Errorf("%s: %w", where, err)
		}
		switch st, err := pickapi.ParseStrategy(prof.Name); {
		case err == nil:
			if _, dup := out.Profiles[st]; dup {
				return out, fmt.Errorf("%s: strategy %s has two profiles", where, st)
			}
			out.Profiles[st] = spec
		case len(profiles) == 1:
			for _, st := range pickapi.Strategies {
				out.Profiles[st] = spec
			}
		default:
			return out, fmt.Errorf("%s: with several profiles each must be named %s (meshllm runs one profile per request, chosen by the pool's routing-strategy annotation)",
				where, pickapi.StrategyList())
		}
	}

	if uses := func() bool {
		for _, spec := range out.Profiles {
			if slices.Contains(spec.Filters, "capacity") {
				return true
			}
		}
		return false
	}(); uses {
		b, _ := json.Marshal(out.detectorFilter)
		out.Plugins["capacity"] = b
	}
	if err := eppShedding(&f, plugins, &out); err != nil {
		return out, err
	}
	if err := eppRequestParsing(&f, plugins); err != nil {
		return out, err
	}
	for _, g := range f.FeatureGates {
		out.Notes = append(out.Notes, fmt.Sprintf("featureGates %q: ignored: meshllm has no upstream feature gates", g))
	}
	for name, raw := range map[string]json.RawMessage{"data": f.Data, "dataLayer": f.DataLayer} {
		if hasParams(raw) {
			out.Notes = append(out.Notes, fmt.Sprintf("%s: ignored: meshllm scrapes each endpoint's /metrics itself (scrape.*) and finds endpoints with discovery.*", name))
		}
	}
	sort.Strings(out.Notes)
	return out, nil
}

// eppProfileSpec translates one upstream profile into a meshllm profile.
func eppProfileSpec(prof eppProfile, plugins map[string]*eppPlugin) (scheduling.ProfileSpec, error) {
	spec := scheduling.ProfileSpec{Prepare: []string{"in_flight"}, Scorers: []scheduling.WeightedScorer{}, Picker: scheduling.MaxScorePicker{}.Name()}
	predicts := false
	for j, ref := range prof.Plugins {
		p := plugins[ref.PluginRef]
		where := fmt.Sprintf("plugins[%d]", j)
		if p == nil {
			return spec, fmt.Errorf("%s: pluginRef %q names no entry of plugins", where, ref.PluginRef)
		}
		if ref.Weight != nil && p.mapping.kind != eppScorer {
			return spec, fmt.Errorf("%s: %q (%s) is not a scorer: weight %v means nothing", where, ref.PluginRef, p.typ, *ref.Weight)
		}
		ours, err := scorerOf(p, plugins)
		if err != nil {
			return spec, fmt.Errorf("%s: %w", where, err)
		}
		switch p.mapping.kind {
		case eppScorer:
			w := 1.0 // the upstream loader's DefaultScorerWeight
			if ref.Weight != nil {
				w = *ref.Weight
			}
			if !(w >= 0) || math.IsInf(w, 0) {
				return spec, fmt.Errorf("%s: weight of %q is %v, want >= 0", where, ref.PluginRef, w)
			}
			if slices.ContainsFunc(spec.Scorers, func(s scheduling.WeightedScorer) bool { return s.Name == ours }) {
				return spec, fmt.Errorf("%s: %q is a second %s in the profile (meshllm has one %q scorer)", where, ref.PluginRef, p.typ, ours)
			}
			spec.Scorers = append(spec.Scorers, scheduling.WeightedScorer{Name: ours, Weight: w})
			if ours == "prefix" && !slices.Contains(spec.Prepare, "prefix") {
				spec.Prepare = append(spec.Prepare, "prefix") // the index the scorer reads
			}
			if ours == scheduling.PrecisePrefixName {
				spec.Prepare = append(spec.Prepare, ours)
			}
			if ours == "predicted_ttft" {
				predicts = true
			}
		case eppFilter: // decode-filter: a no-op (see eppSupported)
		case eppDetector:
			if !slices.Contains(spec.Filters, p.mapping.ours) {
				spec.Filters = append(spec.Filters, p.mapping.ours)
			}
		case eppPicker: // max_score, set above
		default:
			return spec, fmt.Errorf("%s: %q (%s) cannot be in a profile", where, ref.PluginRef, p.typ)
		}
	}
	if slices.Contains(spec.Prepare, scheduling.PrecisePrefixName) {
		spec.Prepare = scheduling.PrecisePrefixPrepare(spec.Prepare) // the guess it falls back to runs first
	}
	if predicts { // last: it reads what in_flight and prefix write
		spec.Prepare = append(spec.Prepare, "predicted_ttft")
	}
	return spec, nil
}

// scorerOf is the meshllm scorer an upstream one becomes: a
// prefix-cache-scorer reading a precise-prefix-cache-producer is
// precise_prefix.
func scorerOf(p *eppPlugin, plugins map[string]*eppPlugin) (string, error) {
	if p.producer == "" {
		return p.mapping.ours, nil
	}
	prod := plugins[p.producer]
	switch {
	case prod == nil:
		return "", fmt.Errorf("%q: prefixMatchInfoProducerName %q names no entry of plugins", p.name, p.producer)
	case prod.mapping.kind == eppPrefixProducer:
		return p.mapping.ours, nil
	case prod.mapping.kind == eppPreciseProducer:
		return scheduling.PrecisePrefixName, nil
	}
	return "", fmt.Errorf("%q: prefixMatchInfoProducerName %q is a %s, not a prefix-cache producer", p.name, p.producer, prod.typ)
}

// eppShedding maps the saturation detector onto shedSheddable: upstream
// treats a pool as saturated from the per-pod queue and KV thresholds and
// then holds back or refuses the lowest-priority traffic; meshllm refuses
// Sheddable requests when every pod is past the same thresholds.
func eppShedding(f *eppFile, plugins map[string]*eppPlugin, out *EPPConfig) error {
	ref := ""
	if sd := f.SaturationDetector; sd != nil {
		if sd.QueueDepthThreshold != nil || sd.KVCacheUtilThreshold != nil { // GIE's shape
			if sd.PluginRef != "" {
				return fmt.Errorf("saturationDetector: pluginRef %q and thresholds are two shapes; give one", sd.PluginRef)
			}
			t := scheduling.Saturation{Queue: 5, KV: 0.8} // upstream's defaults (utilization/config.go)
			if v := sd.QueueDepthThreshold; v != nil {
				t.Queue = *v
			}
			if v := sd.KVCacheUtilThreshold; v != nil {
				t.KV = *v
			}
			if err := checkThresholds("saturationDetector", t); err != nil {
				return err
			}
			out.ShedSheddable = &t
		}
		if sd.MetricsStalenessThreshold != "" {
			out.Notes = append(out.Notes, fmt.Sprintf("saturationDetector.metricsStalenessThreshold %q: ignored: scrape.staleAfter decides when an endpoint's metrics are too old", sd.MetricsStalenessThreshold))
		}
		ref = sd.PluginRef
	}
	if fc := f.FlowControl; fc != nil {
		for k, v := range fc {
			if k != "saturationDetector" {
				return fmt.Errorf("flowControl.%s: meshllm has no flow-control queue (it refuses Sheddable requests at saturation: shedSheddable); remove flowControl.%s", k, k)
			}
			m, ok := v.(map[string]any)
			r, _ := m["pluginRef"].(string)
			if !ok || len(m) > 1 || (len(m) == 1 && r == "") {
				return fmt.Errorf("flowControl.saturationDetector: want {pluginRef: NAME}, got %v", v)
			}
			ref = r // the newer field wins, as upstream
		}
	}
	if out.ShedSheddable != nil {
		return nil
	}
	if ref == "" {
		ref = "utilization-detector" // upstream's default detector
		if plugins[ref] == nil {
			return nil
		}
	}
	p := plugins[ref]
	if p == nil {
		return fmt.Errorf("saturationDetector: pluginRef %q names no entry of plugins", ref)
	}
	if p.mapping.kind != eppDetector {
		return fmt.Errorf("saturationDetector: pluginRef %q is a %s, not a saturation detector", ref, p.typ)
	}
	out.ShedSheddable = out.detectorShed
	return nil
}

// eppRequestParsing accepts the OpenAI parser only: the filter reads
// OpenAI-style bodies, and nothing else reaches the picker.
func eppRequestParsing(f *eppFile, plugins map[string]*eppPlugin) error {
	var refs []string
	if f.Parser != nil {
		refs = append(refs, f.Parser.PluginRef)
	}
	if f.RequestHandler != nil {
		for _, p := range f.RequestHandler.Parsers {
			refs = append(refs, p.PluginRef)
		}
	}
	for _, r := range refs {
		if r == "openai-parser" && plugins[r] == nil {
			continue // upstream's default, instantiated by its loader
		}
		p := plugins[r]
		if p == nil {
			return fmt.Errorf("parser: pluginRef %q names no entry of plugins", r)
		}
		if p.mapping.kind != eppParser {
			return fmt.Errorf("parser: pluginRef %q is a %s, not a parser", r, p.typ)
		}
	}
	return nil
}

// utilization-detector parameters (llm-d-router
// pkg/epp/framework/plugins/flowcontrol/saturationdetector/utilization/config.go).
type utilizationConfig struct {
	QueueDepthThreshold       *float64 `json:"queueDepthThreshold"`
	KVCacheUtilThreshold      *float64 `json:"kvCacheUtilThreshold"`
	MetricsStalenessThreshold string   `json:"metricsStalenessThreshold"`
	Headroom                  *float64 `json:"headroom"`
	InFlightLoadProducerName  string   `json:"inFlightLoadProducerName"`
}

// utilizationParams translates the detector's thresholds: as a detector
// they are shedSheddable; as a filter in a profile it drops pods past
// threshold x (1 + headroom) (KV capped at 1), which is our capacity
// filter's parameters.
func utilizationParams(p *eppPlugin, raw json.RawMessage, out *EPPConfig) error {
	if out.detectorShed != nil {
		return fmt.Errorf("a second %s: meshllm has one capacity filter", p.typ)
	}
	var c utilizationConfig
	if err := decodeStrict(raw, &c); err != nil {
		return err
	}
	t := scheduling.Saturation{Queue: 5, KV: 0.8}
	if c.QueueDepthThreshold != nil {
		t.Queue = *c.QueueDepthThreshold
	}
	if c.KVCacheUtilThreshold != nil {
		t.KV = *c.KVCacheUtilThreshold
	}
	h := 0.0
	if c.Headroom != nil {
		h = *c.Headroom
	}
	if err := checkThresholds("parameters", t); err != nil {
		return err
	}
	if !(h >= 0) || math.IsInf(h, 0) {
		return fmt.Errorf("parameters: headroom %v, want >= 0", h)
	}
	filter := scheduling.Saturation{Queue: t.Queue * (1 + h), KV: min(1, t.KV*(1+h))}
	out.detectorShed, out.detectorFilter = &t, &filter
	if c.MetricsStalenessThreshold != "" {
		out.Notes = append(out.Notes, fmt.Sprintf("plugin %q: metricsStalenessThreshold %q ignored: scrape.staleAfter decides when an endpoint's metrics are too old", p.name, c.MetricsStalenessThreshold))
	}
	if c.InFlightLoadProducerName != "" {
		out.Notes = append(out.Notes, fmt.Sprintf("plugin %q: inFlightLoadProducerName %q ignored: meshllm's in_flight plugin always counts its own picks", p.name, c.InFlightLoadProducerName))
	}
	return nil
}

// prefix-cache-scorer parameters across upstream versions (GIE
// pkg/epp/scheduling/framework/plugins/prefixcachescorer/plugin.go: autoTune,
// blockSize, maxPrefixBlocksToMatch, lruCapacityPerServer; its older
// multi/prefix/plugin.go: hashBlockSize; llm-d-router
// scorer/prefix/README.md: prefixLengthWeight, maxModelLen,
// prefixMatchInfoProducerName) and approx-prefix-cache-producer's
// (llm-d-router requestcontrol/dataproducer/approximateprefix/README.md:
// blockSizeTokens, maxPrefixTokensToMatch).
type prefixConfig struct {
	AutoTune                    *bool    `json:"autoTune"`
	BlockSize                   *int     `json:"blockSize"`
	HashBlockSize               *int     `json:"hashBlockSize"`
	BlockSizeTokens             *int     `json:"blockSizeTokens"`
	MaxPrefixBlocksToMatch      *int     `json:"maxPrefixBlocksToMatch"`
	MaxPrefixTokensToMatch      *int     `json:"maxPrefixTokensToMatch"`
	LRUCapacityPerServer        *int     `json:"lruCapacityPerServer"`
	PrefixLengthWeight          *float64 `json:"prefixLengthWeight"`
	MaxModelLen                 *int     `json:"maxModelLen"`
	PrefixMatchInfoProducerName string   `json:"prefixMatchInfoProducerName"`
}

// The filter hashes prompts in 64-byte blocks (about 16 tokens at 4 bytes a
// token), up to 1,024 blocks (pickapi.PrefixHashes); the picker only sees
// the hashes, so block size and match length are not the picker's to set.
const (
	ourBlockBytes  = pickapi.BlockSize
	ourBlockTokens = pickapi.BlockSize / pickapi.BytesPerToken
)

// prefixParams translates the prefix index's parameters: lruCapacityPerServer
// is our prefix plugin's capacity (blocks remembered per endpoint, the same
// unit at 64-byte blocks). The rest are noted or refused.
func prefixParams(p *eppPlugin, raw json.RawMessage, out *EPPConfig) error {
	var c prefixConfig
	if err := decodeStrict(raw, &c); err != nil {
		return err
	}
	note := func(format string, a ...any) {
		out.Notes = append(out.Notes, fmt.Sprintf("plugin %q: ", p.name)+fmt.Sprintf(format, a...))
	}
	if c.PrefixLengthWeight != nil && *c.PrefixLengthWeight != 0 {
		return fmt.Errorf("parameters: prefixLengthWeight %v: meshllm's prefix score is the matched fraction only (prefixLengthWeight 0)", *c.PrefixLengthWeight)
	}
	p.producer = c.PrefixMatchInfoProducerName // resolved in the profile, once every plugin is known
	if c.LRUCapacityPerServer != nil && *c.LRUCapacityPerServer > 0 {
		if *c.LRUCapacityPerServer > 1<<22 {
			return fmt.Errorf("parameters: lruCapacityPerServer %d outside 1..%d", *c.LRUCapacityPerServer, 1<<22)
		}
		b, _ := json.Marshal(map[string]int{"capacity": *c.LRUCapacityPerServer})
		if prev, ok := out.Plugins["prefix"]; ok && !bytes.Equal(prev, b) {
			return fmt.Errorf("parameters: lruCapacityPerServer %d differs from another prefix plugin's %s: meshllm has one prefix index", *c.LRUCapacityPerServer, prev)
		}
		out.Plugins["prefix"] = b
	}
	for name, v := range map[string]*int{"blockSize": c.BlockSize, "hashBlockSize": c.HashBlockSize} {
		if v != nil && *v != ourBlockBytes {
			note("%s %d ignored: the filter hashes %d-byte blocks", name, *v, ourBlockBytes)
		}
	}
	if v := c.BlockSizeTokens; v != nil && *v != ourBlockTokens {
		note("blockSizeTokens %d ignored: the filter hashes %d-byte blocks (about %d tokens)", *v, ourBlockBytes, ourBlockTokens)
	}
	if v := c.MaxPrefixBlocksToMatch; v != nil {
		note("maxPrefixBlocksToMatch %d ignored: the filter hashes up to %d blocks (64 KiB)", *v, pickapi.MaxBlocks)
	}
	if v := c.MaxPrefixTokensToMatch; v != nil {
		note("maxPrefixTokensToMatch %d ignored: the filter hashes up to %d blocks (64 KiB)", *v, pickapi.MaxBlocks)
	}
	if c.AutoTune != nil && *c.AutoTune {
		note("autoTune ignored: the index holds lruCapacityPerServer (else %d) blocks, not the pod's num_gpu_blocks", scheduling.DefaultPrefixCapacity)
	}
	if c.MaxModelLen != nil {
		note("maxModelLen %d ignored: used only with prefixLengthWeight", *c.MaxModelLen)
	}
	return nil
}

// maxScoreParams: maxNumOfEndpoints is how many endpoints the picker answers
// (upstream: the chosen one and fallbacks, pickershared.Parameters), so
// meshllm's fallbacks are one fewer.
func maxScoreParams(p *eppPlugin, raw json.RawMessage, out *EPPConfig) error {
	var c struct {
		MaxNumOfEndpoints *int `json:"maxNumOfEndpoints"`
	}
	if err := decodeStrict(raw, &c); err != nil {
		return err
	}
	if c.MaxNumOfEndpoints == nil {
		return nil
	}
	n := *c.MaxNumOfEndpoints
	if n < 1 || n > 1+pickapi.MaxFallbacks {
		return fmt.Errorf("parameters: maxNumOfEndpoints %d outside 1..%d", n, 1+pickapi.MaxFallbacks)
	}
	if out.Fallbacks != nil && *out.Fallbacks != n-1 {
		return fmt.Errorf("parameters: maxNumOfEndpoints %d differs from another max-score-picker's %d: meshllm has one fallbacks setting", n, *out.Fallbacks+1)
	}
	fb := n - 1
	out.Fallbacks = &fb
	return nil
}

// anyParams accepts any parameters (the plugin is ignored as a whole).
func anyParams(*eppPlugin, json.RawMessage, *EPPConfig) error { return nil }

// ownParams passes a meshllm plugin's parameters on as they are (the
// scheduler checks them strictly).
func ownParams(name string) func(*eppPlugin, json.RawMessage, *EPPConfig) error {
	return func(_ *eppPlugin, raw json.RawMessage, out *EPPConfig) error {
		if hasParams(raw) {
			out.Plugins[name] = raw
		}
		return nil
	}
}

func checkThresholds(where string, t scheduling.Saturation) error {
	if !(t.Queue > 0) || math.IsInf(t.Queue, 0) {
		return fmt.Errorf("%s: queueDepthThreshold %v, want > 0", where, t.Queue)
	}
	if !(t.KV > 0 && t.KV <= 1) {
		return fmt.Errorf("%s: kvCacheUtilThreshold %v, want in (0, 1]", where, t.KV)
	}
	return nil
}

func hasParams(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && string(t) != "null"
}

// decodeStrict reads raw into dst, refusing unknown fields (nil: nothing).
func decodeStrict(raw json.RawMessage, dst any) error {
	if !hasParams(raw) {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(dst); err != nil {
		return fmt.Errorf("parameters %s: %w", compact(raw), err)
	}
	return nil
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}
