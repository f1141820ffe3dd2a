package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// Bad arguments get a clear answer before anything is built or sent.
func TestRunRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "want a subcommand"},
		{[]string{"publish"}, `unknown subcommand "publish"`},
		{[]string{"build"}, "--version is required"},
		{[]string{"build", "--version", "1", "--created", "yesterday"}, "Unix seconds"},
		{[]string{"build", "--version", "1", "--wasm-variant", "docker"}, `want "oci" or "compat"`},
		{[]string{"build", "--version", "1", "--platforms", "linux/amd64/v1/x"}, "--platforms"},
		{[]string{"build", "--version", "1", "extra"}, "unexpected arguments"},
		{[]string{"push"}, "no registry"},
		{[]string{"push", "--registry", "127.0.0.1:1/meshllm", "--out", t.TempDir()}, "run make images first"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errb)
		require.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"--help"}, &out, &out))
	require.Contains(t, out.String(), "meshllm-images build")
}
