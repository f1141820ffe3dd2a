// Command meshllm-compare runs a workload through several routing policies
// side by side, each repetition on a fresh simulated fleet, and writes
// summary.json, report.md and plots (docs/benchmarks/README.md):
//
//	go run ./cmd/meshllm-compare --workload random-c200 --scale 0.1 -- \
//	    --dataset-name random --random-input-len 1550 --random-output-len 1800 \
//	    --random-range-ratio 0.2 --random-prefix-len 10 --num-prompts 3000 \
//	    --max-concurrency 200 --endpoint /v1/completions
//
// `meshllm-compare grid` runs the regime grid (docs/benchmarks/grid/README.md)
// and `meshllm-compare compact FILE...` rewrites older summary.json files
// without their per-request lists.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshllm/meshllm/bench/compare"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := compare.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}
