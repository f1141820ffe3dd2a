// Command up is `make up`: the same local stack as `make demo` (simulated
// vLLM pods, picker-svc, and the gateway host running wasm/meshllm.wasm:
// round robin on :8080, LLM-aware on :8081, Envoy's admin /stats/prometheus
// on :9901, the picker's /metrics on :9002), kept running until Ctrl-C so
// that curl, vLLM's benchmark, Prometheus or Grafana can be pointed at it.
// With --ext-proc it also starts the gateway path (a gateway that asks the
// picker over ext_proc). Every address is on the loopback interface.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshllm up:", err)
		os.Exit(1)
	}
}
