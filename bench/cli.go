package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// Options are the command's flags, named as vllm bench serve's
// (vllm/benchmarks/serve.py add_cli_args, vllm/benchmarks/datasets
// add_dataset_parser) where it has them.
type Options struct {
	BaseURL, Host, Endpoint, Backend string
	Port                             int
	Model, ServedModelName, Label    string
	DatasetName                      string
	NumPrompts                       int
	Seed                             uint64
	Random                           RandomConfig
	PrefixRepetition                 PrefixRepetitionConfig
	SharedPrefix                     SharedPrefixConfig
	MultiTurn                        MultiTurnConfig
	RequestRate, Burstiness          float64
	MaxConcurrency                   int
	IgnoreEOS                        bool
	PercentileMetrics                []string
	MetricPercentiles                []float64
	SaveResult, SaveDetailed         bool
	ResultDir, ResultFilename        string
	Metadata                         [][2]string
	Header                           http.Header
	LoRAModules                      []LoRAModule
	LoRARoundRobin                   bool
	ExtraBody                        map[string]any
	DisableProgress                  bool
	RequestIDPrefix                  string
	// DumpDataset writes the dataset as JSON lines and sends nothing.
	DumpDataset string
}

// multiFlags take several values after one flag, as argparse's nargs="+"
// does (--lora-modules a b c); they are rewritten to repeated flags.
var multiFlags = map[string]bool{"lora-modules": true, "metadata": true, "header": true}

// normalizeArgs accepts vllm's spellings: "--a_b" for "--a-b" (vllm's
// FlexibleArgumentParser) and several values after a multi-value flag.
func normalizeArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") {
			out = append(out, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		name = strings.ReplaceAll(name, "_", "-")
		if hasVal {
			out = append(out, "--"+name+"="+val)
			continue
		}
		if !multiFlags[name] {
			out = append(out, "--"+name)
			continue
		}
		n := 0
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			n++
			out = append(out, "--"+name+"="+args[i])
		}
		if n == 0 {
			out = append(out, "--"+name) // flag reports the missing value
		}
	}
	return out
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// ParseOptions parses the command line.
func ParseOptions(args []string, stderr io.Writer) (*Options, error) {
	o := &Options{}
	fs := flag.NewFlagSet("meshllm-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.BaseURL, "base-url", "", "server or API base URL, e.g. http://gateway:8080 (default http://HOST:PORT)")
	fs.StringVar(&o.Host, "host", "127.0.0.1", "server host (without --base-url)")
	fs.IntVar(&o.Port, "port", 8000, "server port (without --base-url)")
	fs.StringVar(&o.Endpoint, "endpoint", "/v1/completions", "API endpoint: /v1/completions or /v1/chat/completions")
	fs.StringVar(&o.Backend, "backend", "", "openai (completions) or openai-chat (default: from --endpoint)")
	fs.StringVar(&o.Model, "model", "", "model name sent in requests (default: the first of the server's /v1/models)")
	fs.StringVar(&o.ServedModelName, "served-model-name", "", "model name used in the API if it differs from --model")
	fs.StringVar(&o.Label, "label", "", "label of the result (file name prefix; default the backend)")
	fs.StringVar(&o.DatasetName, "dataset-name", "random", "random, prefix_repetition, shared_prefix or multi_turn")
	fs.IntVar(&o.NumPrompts, "num-prompts", 1000, "number of requests")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the dataset, the LoRA mix and the arrivals")
	inputLen := fs.Int("input-len", 0, "general input length: sets --random-input-len")
	outputLen := fs.Int("output-len", 0, "general output length: sets every dataset's output length")
	fs.IntVar(&o.Random.InputLen, "random-input-len", 1024, "random: input tokens (before the prefix)")
	fs.IntVar(&o.Random.OutputLen, "random-output-len", 128, "random: output tokens")
	fs.Float64Var(&o.Random.RangeRatio, "random-range-ratio", 0, "random: lengths ~ U[floor(L(1-r)), ceil(L(1+r))], r in [0, 1)")
	fs.IntVar(&o.Random.PrefixLen, "random-prefix-len", 0, "random: tokens of one random prefix put before every prompt")
	fs.IntVar(&o.PrefixRepetition.PrefixLen, "prefix-repetition-prefix-len", 256, "prefix_repetition: prefix tokens")
	fs.IntVar(&o.PrefixRepetition.SuffixLen, "prefix-repetition-suffix-len", 256, "prefix_repetition: suffix tokens")
	fs.IntVar(&o.PrefixRepetition.NumPrefixes, "prefix-repetition-num-prefixes", 10, "prefix_repetition: distinct prefixes")
	fs.IntVar(&o.PrefixRepetition.OutputLen, "prefix-repetition-output-len", 128, "prefix_repetition: output tokens")
	fs.IntVar(&o.SharedPrefix.NumGroups, "shared-prefix-num-groups", 10, "shared_prefix: groups (system prompts)")
	fs.IntVar(&o.SharedPrefix.PromptsPerGroup, "shared-prefix-prompts-per-group", 10, "shared_prefix: questions per group")
	fs.IntVar(&o.SharedPrefix.SystemPromptLen, "shared-prefix-system-prompt-len", 2000, "shared_prefix: system prompt tokens")
	fs.IntVar(&o.SharedPrefix.QuestionLen, "shared-prefix-question-len", 100, "shared_prefix: question tokens")
	fs.IntVar(&o.SharedPrefix.OutputLen, "shared-prefix-output-len", 128, "shared_prefix: output tokens")
	fs.IntVar(&o.MultiTurn.Turns, "multi-turn-num-turns", 5, "multi_turn: turns per conversation")
	fs.IntVar(&o.MultiTurn.SystemPromptLen, "multi-turn-system-prompt-len", 0, "multi_turn: system prompt tokens of each conversation")
	fs.IntVar(&o.MultiTurn.UserLen, "multi-turn-user-len", 128, "multi_turn: tokens of each user message")
	fs.IntVar(&o.MultiTurn.OutputLen, "multi-turn-output-len", 128, "multi_turn: output tokens of each answer")
	fs.Float64Var(&o.MultiTurn.RangeRatio, "multi-turn-range-ratio", 0, "multi_turn: range ratio of user and answer lengths (and of shared documents)")
	fs.IntVar(&o.MultiTurn.Documents, "multi-turn-num-documents", 0, "multi_turn: conversations open with one of this many shared documents of about system-prompt-len tokens (0: each its own system prompt)")
	fs.Float64Var(&o.RequestRate, "request-rate", math.Inf(1), "requests per second (inf: all at time 0)")
	fs.Float64Var(&o.Burstiness, "burstiness", 1, "gamma shape of the arrival gaps: 1 Poisson, <1 burstier, >1 more regular")
	fs.IntVar(&o.MaxConcurrency, "max-concurrency", 0, "requests in flight at most (0: no cap)")
	fs.BoolVar(&o.IgnoreEOS, "ignore-eos", true, "send ignore_eos: true, so each request generates its output length")
	pm := fs.String("percentile-metrics", "ttft,tpot,itl,e2el", "metrics to report: ttft,tpot,itl,e2el,client_queue_time,e2el_including_client_queue")
	mp := fs.String("metric-percentiles", "99", "percentiles to report, e.g. 50,90,99")
	fs.BoolVar(&o.SaveResult, "save-result", false, "save the result as JSON")
	fs.BoolVar(&o.SaveDetailed, "save-detailed", false, "also save per-request lists (ttfts, itls, input_lens, output_lens, errors, ...)")
	fs.StringVar(&o.ResultDir, "result-dir", "", "directory of the result file")
	fs.StringVar(&o.ResultFilename, "result-filename", "", "result file name (default {label}-{rate}qps[-concurrency{N}]-{model}-{date}.json)")
	var metadata, headers, loras listFlag
	fs.Var(&metadata, "metadata", "KEY=VALUE saved in the result (several after one flag)")
	fs.Var(&headers, "header", "KEY=VALUE request header (several after one flag)")
	fs.Var(&loras, "lora-modules", "adapter names, each optionally NAME:WEIGHT, spread over the requests (several after one flag)")
	lora := fs.String("lora-assignment", "random", "random or round-robin")
	extra := fs.String("extra-body", "", "JSON object of fields added to every request")
	fs.BoolVar(&o.DisableProgress, "disable-tqdm", false, "no progress output")
	fs.StringVar(&o.RequestIDPrefix, "request-id-prefix", "", "x-request-id prefix (default bench-<random>-)")
	fs.StringVar(&o.DumpDataset, "dump-dataset", "", "write the dataset to this file as JSON lines and exit without sending (needs --model)")
	if err := fs.Parse(normalizeArgs(args)); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["input-len"] {
		o.Random.InputLen = *inputLen
	}
	if set["output-len"] {
		o.Random.OutputLen = *outputLen
		o.PrefixRepetition.OutputLen = *outputLen
		o.SharedPrefix.OutputLen = *outputLen
		o.MultiTurn.OutputLen = *outputLen
	}
	o.DatasetName = strings.ReplaceAll(o.DatasetName, "-", "_")
	for _, s := range strings.Split(*pm, ",") {
		s = strings.TrimSpace(s)
		if !ValidMetric(s) {
			return nil, fmt.Errorf("--percentile-metrics: unknown metric %q", s)
		}
		o.PercentileMetrics = append(o.PercentileMetrics, s)
	}
	for _, s := range strings.Split(*mp, ",") {
		p, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || !(p >= 0 && p <= 100) {
			return nil, fmt.Errorf("--metric-percentiles: %q is not a percentile in 0..100", s)
		}
		o.MetricPercentiles = append(o.MetricPercentiles, p)
	}
	for _, kv := range metadata {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--metadata %q: want KEY=VALUE", kv)
		}
		o.Metadata = append(o.Metadata, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	o.Header = http.Header{}
	if key := os.Getenv("OPENAI_API_KEY"); key != "" {
		o.Header.Set("Authorization", "Bearer "+key) // as vllm bench does
	}
	for _, kv := range headers {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--header %q: want KEY=VALUE", kv)
		}
		o.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	var err error
	if o.LoRAModules, err = ParseLoRAModules(loras); err != nil {
		return nil, err
	}
	switch *lora {
	case "random":
	case "round-robin":
		o.LoRARoundRobin = true
	default:
		return nil, fmt.Errorf("--lora-assignment: %q is not random or round-robin", *lora)
	}
	if *extra != "" {
		if err := json.Unmarshal([]byte(*extra), &o.ExtraBody); err != nil {
			return nil, fmt.Errorf("--extra-body: %w", err)
		}
	}
	if o.NumPrompts < 1 {
		return nil, errors.New("--num-prompts must be at least 1")
	}
	if o.MaxConcurrency < 0 {
		return nil, errors.New("--max-concurrency must not be negative")
	}
	switch o.Backend {
	case "":
		o.Backend = "openai"
		if strings.HasSuffix(o.Endpoint, "chat/completions") {
			o.Backend = "openai-chat"
		}
	case "openai", "vllm", "openai-chat":
	default:
		return nil, fmt.Errorf("--backend %q: want openai, vllm or openai-chat", o.Backend)
	}
	if o.Backend == "openai-chat" && !strings.HasSuffix(o.Endpoint, "chat/completions") {
		return nil, fmt.Errorf("--backend openai-chat needs an endpoint ending in chat/completions, not %q", o.Endpoint)
	}
	if o.Backend != "openai-chat" && (!strings.HasSuffix(o.Endpoint, "completions") || strings.HasSuffix(o.Endpoint, "chat/completions")) {
		return nil, fmt.Errorf("--backend %s needs an endpoint ending in completions (not chat/completions), not %q", o.Backend, o.Endpoint)
	}
	if o.RequestIDPrefix == "" {
		o.RequestIDPrefix = fmt.Sprintf("bench-%08x-", rand.Uint32())
	}
	return o, nil
}

// Chat reports whether requests go to a chat endpoint.
func (o *Options) Chat() bool { return o.Backend == "openai-chat" }

// Base is the server's base URL.
func (o *Options) Base() string {
	if o.BaseURL != "" {
		return strings.TrimSuffix(o.BaseURL, "/")
	}
	return "http://" + netJoin(o.Host, o.Port)
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

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

// ResultFilename is vllm bench's compute_result_filename.
func (o *Options) resultFilename(modelID, date string) string {
	name := o.ResultFilename
	if name == "" {
		label := o.Label
		if label == "" {
			label = o.Backend
		}
		conc := ""
		if o.MaxConcurrency > 0 {
			conc = fmt.Sprintf("-concurrency%d", o.MaxConcurrency)
		}
		base := modelID[strings.LastIndexByte(modelID, '/')+1:]
		name = fmt.Sprintf("%s-%sqps%s-%s-%s.json", label, pyFloat(o.RequestRate), conc, base, date)
	}
	if o.ResultDir != "" {
		name = filepath.Join(o.ResultDir, name)
	}
	return name
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
	fmt.Fprintln(stdout, "Starting main benchmark run...")
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
	var prog Progress
	if !o.DisableProgress {
		f, isFile := stderr.(*os.File)
		prog = NewProgress(stderr, isFile && IsTerminal(f))
	}
	res, runErr := Run(ctx, RunConfig{
		APIURL: base + o.Endpoint, Chat: o.Chat(), Model: sent, Requests: reqs,
		RequestRate: o.RequestRate, Burstiness: o.Burstiness, MaxConcurrency: o.MaxConcurrency,
		IgnoreEOS: o.IgnoreEOS, ExtraBody: o.ExtraBody, Header: o.Header,
		RequestIDPrefix: o.RequestIDPrefix, Seed: o.Seed, Client: client, Progress: prog,
	})
	if res == nil {
		return runErr
	}
	m := Calculate(res.Outputs, res.Duration, MetricsOptions{
		Percentiles: o.MetricPercentiles, MaxConcurrencySet: o.MaxConcurrency > 0, RateFinite: !math.IsInf(o.RequestRate, 1),
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
	if models := servedModels(res.Outputs); len(models) > 1 || len(o.LoRAModules) > 0 {
		var parts []string
		for _, f := range models {
			parts = append(parts, fmt.Sprintf("%s=%d", f.Key, f.Value))
		}
		fmt.Fprintf(stdout, "Served models (response \"model\"): %s\n", strings.Join(parts, " "))
	}
	if o.SaveResult {
		date := time.Now().Format("20060102-150405")
		saved := SavedResult(ResultInfo{
			Date: date, Backend: o.Backend, Label: o.Label, ModelID: model, NumPrompts: o.NumPrompts,
			Metadata: o.Metadata, RequestRate: o.RequestRate, Burstiness: o.Burstiness,
			MaxConcurrency: o.MaxConcurrency, DatasetName: o.DatasetName,
		}, m, res.Outputs, res.Duration, o.PercentileMetrics, o.SaveDetailed)
		b, err := json.Marshal(saved)
		if err != nil {
			return err
		}
		name := o.resultFilename(model, date)
		if o.ResultDir != "" {
			if err := os.MkdirAll(o.ResultDir, 0o755); err != nil {
				return err
			}
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
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
