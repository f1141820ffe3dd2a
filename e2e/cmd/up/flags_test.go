package main

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/e2e/fleet"
)

func TestFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, options{preset: "demo", strategy: "PREFIX_CACHE", speed: 1, pickerTimeoutMS: 50,
		plainAddr: "127.0.0.1:8080", llmAddr: "127.0.0.1:8081", extProcAddr: "127.0.0.1:8082", adminAddr: "127.0.0.1:9901",
		pickerAddr: "127.0.0.1:9002", accessLog: true}, o, "envoy.yaml's ports, the demo's fleet and strategy")
	require.Len(t, describeFleet(o, nil).sims, fleet.DemoPods)

	o, err = parseFlags(strings.Fields("--strategy default --preset qwen2.5-7b-a10 --pods 7 --ext-proc"), io.Discard)
	require.NoError(t, err)
	require.Equal(t, "DEFAULT", o.strategy)
	require.True(t, o.extProc)
	f := describeFleet(o, nil)
	require.Len(t, f.sims, 7)
	require.Equal(t, fleet.Presets["qwen2.5-7b-a10"].Model, f.sims[0].Model)
	require.Equal(t, fleet.Presets["qwen2.5-7b-a10"].NumGPUBlocks(), f.sims[0].NumGPUBlocks)
	require.Contains(t, f.objects, "routing-strategy: DEFAULT")

	for args, want := range map[string]string{
		"--strategy ROUND_ROBIN":    "LATENCY, DEFAULT or PREFIX_CACHE",
		"--preset h100":             "demo, llama-2-7b-a10, qwen2.5-7b-a10",
		"--pods 65":                 "want 1 to 64",
		"--pods -1":                 "want 1 to 64",
		"--speed 0":                 "--speed",
		"--speed NaN":               "--speed",
		"--picker-timeout-ms 0":     "1 to 60000",
		"--picker-timeout-ms 60001": "1 to 60000",
		"extra":                     "unexpected arguments",
		"--no-such-flag":            "not defined",
	} {
		_, err := parseFlags(strings.Fields(args), io.Discard)
		require.ErrorContains(t, err, want, args)
	}
}
