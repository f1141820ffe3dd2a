// Command meshllm-bench benchmarks an OpenAI-compatible server (vLLM, a
// gateway in front of it, or vllmsim) the way `vllm bench serve` does: the
// same datasets, arrival process, metrics, result table and saved-result
// JSON keys. See docs/bench.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshllm/meshllm/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
