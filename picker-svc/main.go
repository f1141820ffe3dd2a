// Command picker-svc is meshllm's endpoint picker: it scrapes every vLLM pod
// of an InferencePool and answers which pod should serve each request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshllm/meshllm/picker-svc/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := app.Run(ctx, app.Options{Args: os.Args[1:], Getenv: os.Getenv})
	if errors.Is(err, flag.ErrHelp) {
		return // --help printed the usage: a successful answer
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "picker-svc:", err)
		os.Exit(1)
	}
}
