// Package envoystats reproduces what Envoy does with the flat stat names a
// Wasm filter defines: tag extraction by stats_config.stats_tags (envoy
// source/common/stats/tag_extractor_impl.cc and tag_producer_impl.cc) and the
// Prometheus naming of /stats/prometheus (source/server/admin/prometheus_stats.cc).
// Tests use it to prove which Prometheus series the filter's stats become; the
// e2e gateway host uses it to serve /stats/prometheus. It is test support
// (see package testsupport): product code must not import it.
package envoystats

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// TagSpecifier is one entry of stats_config.stats_tags.
type TagSpecifier struct {
	TagName string `json:"tag_name"`
	Regex   string `json:"regex"`
}

// Tag is an extracted tag.
type Tag struct{ Name, Value string }

// Extractor applies a list of tag specifiers, as Envoy's TagProducer does.
type Extractor struct {
	specs []compiled
}

type compiled struct {
	name string
	re   *regexp.Regexp
}

// NewExtractor compiles specs. Envoy's regexes are RE2 (or ECMAScript
// std::regex, which agrees with RE2 on the patterns used here).
func NewExtractor(specs []TagSpecifier) (*Extractor, error) {
	e := &Extractor{}
	for _, s := range specs {
		re, err := regexp.Compile(s.Regex)
		if err != nil {
			return nil, fmt.Errorf("stats_tags %q: %w", s.TagName, err)
		}
		if re.NumSubexp() < 1 {
			return nil, fmt.Errorf("stats_tags %q: regex %q has no capture group", s.TagName, s.Regex)
		}
		e.specs = append(e.specs, compiled{s.TagName, re})
	}
	return e, nil
}

// Extract returns the tag-extracted name and the tags of statName. Every
// extractor searches the original name; for a match, capture group 1 is
// removed from the name and group 2 (or 1 if there is no group 2) is the
// value. Removals are applied together at the end (TagProducerImpl).
func (e *Extractor) Extract(statName string) (string, []Tag) {
	var tags []Tag
	type span struct{ from, to int }
	var remove []span
	for _, s := range e.specs {
		m := s.re.FindStringSubmatchIndex(statName)
		if m == nil || len(m) < 4 || m[2] < 0 {
			continue
		}
		val := statName[m[2]:m[3]]
		if len(m) >= 6 && m[4] >= 0 {
			val = statName[m[4]:m[5]]
		}
		tags = append(tags, Tag{s.name, val})
		remove = append(remove, span{m[2], m[3]})
	}
	if len(remove) == 0 {
		return statName, tags
	}
	drop := make([]bool, len(statName))
	for _, r := range remove {
		for i := r.from; i < r.to; i++ {
			drop[i] = true
		}
	}
	var b strings.Builder
	for i := 0; i < len(statName); i++ {
		if !drop[i] {
			b.WriteByte(statName[i])
		}
	}
	return b.String(), tags
}

// WasmNamespace is the custom stat namespace Envoy gives Wasm metrics; it is
// stripped from Prometheus names (Envoy PR #17357).
const WasmNamespace = "wasmcustom"

// PrometheusName is the metric name /stats/prometheus prints for a
// tag-extracted name: a registered custom namespace is stripped (no "envoy_"
// prefix), other names get "envoy_"; characters outside [a-zA-Z0-9_] become
// '_'.
func PrometheusName(extracted string) string {
	if rest, ok := strings.CutPrefix(extracted, WasmNamespace+"."); ok {
		return sanitize(rest)
	}
	return "envoy_" + sanitize(extracted)
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		return "_" + string(b)
	}
	return string(b)
}

// Series renders one series the way /stats/prometheus does:
// name{tag="value",...} with tags sorted by name and values escaped.
func Series(name string, tags []Tag) string {
	if len(tags) == 0 {
		return name
	}
	sorted := append([]Tag(nil), tags...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, t := range sorted {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(sanitize(t.Name))
		b.WriteString(`="`)
		b.WriteString(strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(t.Value))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// Of is the Prometheus series a Wasm metric named statName becomes.
func (e *Extractor) Of(statName string) string {
	name, tags := e.Extract(WasmNamespace + "." + statName)
	return Series(PrometheusName(name), tags)
}

// LoadStatsTags reads stats_config.stats_tags from an Envoy bootstrap YAML.
func LoadStatsTags(path string) ([]TagSpecifier, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var boot struct {
		StatsConfig struct {
			StatsTags []TagSpecifier `json:"stats_tags"`
		} `json:"stats_config"`
	}
	if err := yaml.Unmarshal(raw, &boot); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return boot.StatsConfig.StatsTags, nil
}
