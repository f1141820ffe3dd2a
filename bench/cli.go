package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// BuildDataset makes the requests the options describe (the same for the
// same seed and options).
func BuildDataset(o *Options) ([]SampleRequest, error) {
	rng := newRNG(o.Seed, streamDataset)
	var (
		reqs []SampleRequest
		err  error
	)
	switch o.DatasetName {
	case "random":
		reqs, err = Random(rng, o.NumPrompts, o.Random)
	case "prefix_repetition":
		reqs, err = PrefixRepetition(rng, o.NumPrompts, o.PrefixRepetition)
	case "shared_prefix":
		reqs, err = SharedPrefix(rng, o.NumPrompts, o.SharedPrefix, o.Chat())
	case "multi_turn":
		if !o.Chat() {
			return nil, errors.New("multi_turn needs --endpoint /v1/chat/completions")
		}
		reqs, err = MultiTurn(rng, o.NumPrompts, o.MultiTurn)
	default:
		return nil, fmt.Errorf("--dataset-name %q: want random, prefix_repetition, shared_prefix or multi_turn", o.DatasetName)
	}
	if err != nil {
		return nil, err
	}
	if err := AssignLoRA(newRNG(o.Seed, streamLoRA), reqs, o.LoRAModules, o.LoRARoundRobin); err != nil {
		return nil, err
	}
	return reqs, nil
}

// describeDataset is a line saying what the dataset holds.
func describeDataset(o *Options, reqs []SampleRequest) string {
	inMin, inMax, outMin, outMax := math.MaxInt, 0, math.MaxInt, 0
	for _, r := range reqs {
		inMin, inMax = min(inMin, r.PromptLen), max(inMax, r.PromptLen)
		outMin, outMax = min(outMin, r.OutputLen), max(outMax, r.OutputLen)
	}
	return fmt.Sprintf("Dataset %s: %d requests, prompt %d..%d words (= tokens for vllmsim), output %d..%d tokens",
		o.DatasetName, len(reqs), inMin, inMax, outMin, outMax)
}

// FirstModel asks base's /v1/models for its first model id, as vllm bench
// does when --model is not given.
func FirstModel(ctx context.Context, client *http.Client, base string, header http.Header) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/models", nil)
	if err != nil {
		return "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching models from %s/v1/models: %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s/v1/models: %s", base, resp.Status)
	}
	id := gjson.GetBytes(b, "data.0.id")
	if id.Type != gjson.String || id.Str == "" {
		return "", fmt.Errorf("%s/v1/models lists no model; pass --model", base)
	}
	return id.Str, nil
}

// pyFloat formats f as Python's str(float) does for ordinary values
// ("10.0", "0.5", "inf"), for file names and messages like vllm bench's.
func pyFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "inf"
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}

// Main runs the command: it returns the exit status (0 on a completed run,
// 1 when no request succeeded or the run could not be made, 2 on bad flags).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := ParseOptions(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "meshllm-bench:", err)
		return 2
	}
	if err := run(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "meshllm-bench:", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, o *Options, stdout, stderr io.Writer) error {
	for _, n := range o.Notices {
		fmt.Fprintln(stderr, n)
	}
	if o.DumpDataset != "" {
		reqs, err := BuildDataset(o)
		if err != nil {
			return err
		}
		if err := WriteDataset(o.DumpDataset, reqs); err != nil {
			return err
		}
		fmt.Fprintln(stdout, describeDataset(o, reqs))
		fmt.Fprintf(stdout, "Dataset written to %s\n", o.DumpDataset)
		return nil
	}
	client := NewClient(o.MaxConcurrency)
	if o.Insecure {
		client.HTTP.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	base := o.Base()
	model := o.Model
	if model == "" {
		fmt.Fprintln(stdout, "Model not specified, fetching first model from server...")
		m, err := FirstModel(ctx, client.HTTP, base, o.Header)
		if err != nil {
			return err
		}
		model = m
		fmt.Fprintf(stdout, "First model name: %s\n", model)
	}
	sent := model
	if o.ServedModelName != "" {
		sent = o.ServedModelName
	}
	reqs, err := BuildDataset(o)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, describeDataset(o, reqs))
	fmt.Fprintf(stdout, "ignore_eos: %t (%s)\n", o.IgnoreEOS, o.EOSSemantics)
	rc := RunConfig{
		APIURL: base + o.Endpoint, Chat: o.Chat(), Model: sent, Requests: reqs,
		RequestRate: o.RequestRate, Burstiness: o.Burstiness, MaxConcurrency: o.MaxConcurrency,
		IgnoreEOS: o.IgnoreEOS, ExtraBody: o.ExtraBody, Header: o.Header,
		RequestIDPrefix: o.RequestIDPrefix, Seed: o.Seed, Client: client,
	}
	var warm WarmupTotals
	if err := beforeRun(ctx, o, rc, &warm, stdout); err != nil {
		return err
	}
	if !o.DisableProgress {
		f, isFile := stderr.(*os.File)
		rc.Progress = NewProgress(stderr, isFile && IsTerminal(f))
	}
	fmt.Fprintf(stdout, "Traffic request rate: %s\n", pyFloat(o.RequestRate))
	dist := "Gamma distribution"
	if o.Burstiness == 1 {
		dist = "Poisson process"
	}
	fmt.Fprintf(stdout, "Burstiness factor: %s (%s)\n", pyFloat(o.Burstiness), dist)
	if o.MaxConcurrency > 0 {
		fmt.Fprintf(stdout, "Maximum request concurrency: %d\n", o.MaxConcurrency)
	} else {
		fmt.Fprintln(stdout, "Maximum request concurrency: None")
	}
	res, runErr := Run(ctx, rc)
	if res == nil {
		return runErr
	}
	m := Calculate(res.Outputs, res.Duration, MetricsOptions{
		Percentiles: o.MetricPercentiles, MaxConcurrencySet: o.MaxConcurrency > 0, RateFinite: !math.IsInf(o.RequestRate, 1),
		Goodput: o.Goodput,
	})
	if m.Failed > 0 {
		fmt.Fprintln(stdout, "Failed requests during benchmark run detected (capping to 10):")
		k := 0
		for _, out := range res.Outputs {
			if !out.Success && k < 10 {
				fmt.Fprintf(stdout, "Error %d: %s\n", k, out.Error)
				k++
			}
		}
	}
	WriteTable(stdout, m, TableInfo{
		MaxConcurrency: o.MaxConcurrency, RequestRate: o.RequestRate, Duration: res.Duration, PercentileMetrics: o.PercentileMetrics,
	})
	models := servedModels(res.Outputs)
	WriteExtras(stdout, ExtraInfo{ServedModels: models, ShowModels: len(models) > 1 || len(o.LoRAModules) > 0, Warmups: warm})
	if o.SaveResult || o.AppendResult {
		date := time.Now().Format("20060102-150405")
		saved := SavedResult(ResultInfo{
			Date: date, Backend: o.Backend, Label: o.Label, ModelID: model, NumPrompts: o.NumPrompts,
			Metadata: o.Metadata, RequestRate: o.RequestRate, Burstiness: o.Burstiness,
			MaxConcurrency: o.MaxConcurrency, DatasetName: o.DatasetName, IgnoreEOS: &o.IgnoreEOS, Warmups: &warm,
		}, m, res.Outputs, res.Duration, o.PercentileMetrics, o.SaveDetailed)
		name, err := saveResult(o, model, date, saved)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Result saved to %s\n", name)
	}
	if runErr != nil {
		return runErr
	}
	if m.Completed == 0 {
		return errors.New("all requests failed")
	}
	return nil
}

// beforeRun sends what vllm bench sends before its run: the initial test
// run, retried until the server answers, with --ready-check-timeout-sec,
// and --num-warmups warm-ups; both with the run's first request. It prints
// vllm's lines.
func beforeRun(ctx context.Context, o *Options, rc RunConfig, warm *WarmupTotals, stdout io.Writer) error {
	fmt.Fprintln(stdout, "Starting initial single prompt test run...")
	if o.ReadyCheckTimeout > 0 {
		fmt.Fprintf(stdout, "Waiting for endpoint to become up in %d seconds\n", int(o.ReadyCheckTimeout.Seconds()))
		if err := ReadyCheck(ctx, rc, o.ReadyCheckTimeout, ReadyRetry, warm); err != nil {
			return fmt.Errorf("Initial test run failed - Please make sure benchmark arguments are correctly specified. Error: %w", err)
		}
		fmt.Fprintln(stdout, "Initial test run completed.")
	} else {
		fmt.Fprintln(stdout, "Skipping endpoint ready check.")
	}
	if o.NumWarmups > 0 {
		fmt.Fprintf(stdout, "Warming up with %d requests...\n", o.NumWarmups)
		if err := Warmup(ctx, rc, o.NumWarmups, warm); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "Warmup run completed.")
	}
	fmt.Fprintln(stdout, "Starting main benchmark run...")
	return nil
}

// WriteDataset writes one JSON object a line: prompt or messages (a turn's
// own messages), prompt_len, sim_prompt_len, output_len, model, parent.
func WriteDataset(name string, reqs []SampleRequest) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	enc.SetEscapeHTML(false)
	for _, r := range reqs {
		line := Object{}
		if r.Messages != nil {
			line.Set("messages", r.Messages)
		} else {
			line.Set("prompt", r.Prompt)
		}
		line.Set("prompt_len", r.PromptLen)
		line.Set("sim_prompt_len", r.SimPromptLen)
		line.Set("output_len", r.OutputLen)
		line.Set("model", r.Model)
		line.Set("parent", r.Parent)
		if err := enc.Encode(line); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
