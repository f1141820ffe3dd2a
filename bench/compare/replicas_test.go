package compare

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy("prefix_cache")
	require.NoError(t, err)
	require.Equal(t, Policies["prefix_cache"], p)
	p, err = ParsePolicy(" prefix_cache@3 ")
	require.NoError(t, err)
	require.Equal(t, Policy{Name: "prefix_cache@3", Listener: Policies["prefix_cache"].Listener, Strategy: "PREFIX_CACHE", Pickers: 3}, p)
	p, err = ParsePolicy("default@3/alone")
	require.NoError(t, err)
	require.True(t, p.Unshared)
	require.Equal(t, 3, p.Pickers)
	p, err = ParsePolicy("prefix_cache@3+rolling")
	require.NoError(t, err)
	require.Equal(t, FaultRolling, p.Fault)
	p, err = ParsePolicy("prefix_cache@2/alone+kill")
	require.NoError(t, err)
	require.Equal(t, FaultKill, p.Fault)
	require.True(t, p.Unshared)
	for bad, want := range map[string]string{
		"fastest":              "unknown policy",
		"round_robin@3":        "never asks the picker",
		"prefix_cache@0":       "N in 1..9",
		"prefix_cache@x":       "N in 1..9",
		"prefix_cache@3/solo":  "not alone",
		"prefix_cache@3+crash": "not kill or rolling",
		"prefix_cache@1+kill":  "at least 2 replicas",
	} {
		_, err := ParsePolicy(bad)
		require.ErrorContains(t, err, want, bad)
	}
}
