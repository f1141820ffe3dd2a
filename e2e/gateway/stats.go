package gateway

import (
	"github.com/meshllm/meshllm/e2e/envoystats"
)

type envoyTag = envoystats.Tag

func toTags(t []envoystats.Tag) []envoyTag { return t }

func prometheusName(extracted string) string { return envoystats.PrometheusName(extracted) }

// seriesName renders name{tags[,le]} as /stats/prometheus does.
func seriesName(name string, tags []envoyTag, le string) string {
	if le != "" {
		tags = append(append([]envoyTag(nil), tags...), envoyTag{Name: "le", Value: le})
	}
	s := envoystats.Series(name, tags)
	return s
}
