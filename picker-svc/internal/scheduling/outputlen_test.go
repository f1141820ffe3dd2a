package scheduling

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOutputLengths(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ends      [][2]int // generated, max_tokens (0: none)
		maxTokens int
		want      int
	}{
		{name: "no history, a limit: run to it", maxTokens: 1800, want: 1800},
		{name: "no history, no limit: the default", want: 256},
		{name: "every request ran to its limit (ignore_eos): this one will too", ends: [][2]int{{1440, 1440}, {2160, 2160}}, maxTokens: 1800, want: 1800},
		{name: "requests stop early: their mean, capped at the limit", ends: [][2]int{{100, 1800}, {500, 1800}, {5000, 0}}, maxTokens: 1200,
			want: (100 + 500 + 1200) / 3},
		{name: "half ran to their limit: half of this one's, half the stops", ends: [][2]int{{100, 1800}, {300, 1800}, {50, 50}, {64, 64}}, maxTokens: 1000,
			want: (100 + 300 + 1000 + 1000) / 4},
		{name: "no limit: what requests generated", ends: [][2]int{{100, 1800}, {50, 50}}, want: 75},
		{name: "unknown completion tokens teach nothing", ends: [][2]int{{-1, 1800}}, maxTokens: 700, want: 700},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOutputLengths(256)
			m := o.model("m")
			for _, e := range tc.ends {
				m.observe(e[0], e[1])
			}
			require.Equal(t, tc.want, o.expect(m, tc.maxTokens))
		})
	}
}

// The history is a ring of the last outputSamples ends, and the model
// table is bounded: past maxModels, new names share the defaults.
func TestOutputLengthsBounded(t *testing.T) {
	o := newOutputLengths(256)
	m := o.model("m")
	for i := 0; i < outputSamples; i++ {
		m.observe(10, 1000)
	}
	for i := 0; i < outputSamples; i++ {
		m.observe(30, 1000)
	}
	require.Equal(t, 30, o.expect(m, 1000), "the older ends are gone")
	for i := 0; len(o.models) < maxModels; i++ {
		o.model(fmt.Sprint("model-", i))
	}
	require.Nil(t, o.model("one too many"))
	require.Equal(t, 700, o.expect(nil, 700))
	require.Equal(t, 256, o.expect(nil, 0))
}
