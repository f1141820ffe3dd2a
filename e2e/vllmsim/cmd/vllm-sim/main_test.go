package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestExpandMultiValue(t *testing.T) {
	in := []string{"--port", "8000", "--lora-modules", "a=/x", "b=/y", "--speed", "10", "-lora-modules", "c=/z"}
	want := []string{"--port", "8000", "--lora-modules=a=/x", "--lora-modules=b=/y", "--speed", "10", "--lora-modules=c=/z"}
	assert.Equal(t, want, expandMultiValue(in, "lora-modules"))
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--lora-modules", "noequals"},
		{"--output-len", "gauss:3"},
		{"--speed", "-1", "--port", "0"},
		{"--block-size", "6", "--port", "0"},
		{"stray"},
		{"--kv-events-config", "{bad", "--port", "0"},
		{"--kv-events-config", `{"enable_kv_cache_events":true,"nope":1}`, "--port", "0"},
		{"--kv-events-encoding", "xml", "--port", "0"},
	} {
		assert.Error(t, run(args), "%v", args)
	}
}
