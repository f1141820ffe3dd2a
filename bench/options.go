package bench

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Options are the command's flags, named as vllm bench serve's
// (vllm/benchmarks/serve.py add_cli_args, vllm/benchmarks/datasets
// add_dataset_parser) where it has them. Every flag of vllm's benchmark is
// taken: the ones that mean nothing here print a notice (vllmflags.go).
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
	// IgnoreEOS is whether requests carry "ignore_eos": true, decided as
	// vllm bench serve decides it (eos.go); EOSSemantics says why, for
	// the header.
	IgnoreEOS                 bool
	EOSSemantics              string
	PercentileMetrics         []string
	MetricPercentiles         []float64
	Goodput                   map[string]float64
	SaveResult, SaveDetailed  bool
	AppendResult              bool
	ResultDir, ResultFilename string
	Metadata                  [][2]string
	Header                    http.Header
	LoRAModules               []LoRAModule
	LoRARoundRobin            bool
	// ExtraBody is added to every request: --extra-body over the sampling
	// flags (--temperature, --top-p, ...) and --logprobs, as vllm merges
	// them.
	ExtraBody       map[string]any
	DisableProgress bool
	RequestIDPrefix string
	// ReadyCheckTimeout > 0 sends the first request until it succeeds
	// before the run; NumWarmups sends it that many times more (warmup.go).
	ReadyCheckTimeout time.Duration
	NumWarmups        int
	// Insecure skips TLS certificate verification.
	Insecure bool
	// DumpDataset writes the dataset as JSON lines and sends nothing.
	DumpDataset string
	// Notices are one line for each vllm flag given that has no effect
	// here.
	Notices []string
}

// samplingFlags are vllm bench's "sampling parameters" group: each, when
// given, is sent in every request body under its name.
var samplingFlags = []struct{ flag, key string }{
	{"top-p", "top_p"}, {"top-k", "top_k"}, {"min-p", "min_p"}, {"temperature", "temperature"},
	{"frequency-penalty", "frequency_penalty"}, {"presence-penalty", "presence_penalty"},
	{"repetition-penalty", "repetition_penalty"},
}

// ParseOptions parses the command line. It only reads args and the
// OPENAI_API_KEY variable (as vllm bench does); flag errors and -h go to
// stderr.
func ParseOptions(args []string, stderr io.Writer) (*Options, error) {
	o := &Options{}
	fs := flag.NewFlagSet("meshllm-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.BaseURL, "base-url", "", "server or API base URL, e.g. http://gateway:8080 (default http://HOST:PORT)")
	fs.StringVar(&o.Host, "host", "127.0.0.1", "server host (without --base-url)")
	fs.IntVar(&o.Port, "port", 8000, "server port (without --base-url)")
	fs.StringVar(&o.Endpoint, "endpoint", "/v1/completions", "API endpoint: /v1/completions or /v1/chat/completions")
	fs.StringVar(&o.Backend, "backend", "", "openai or vllm (completions) or openai-chat (default: from --endpoint)")
	endpointType := fs.String("endpoint-type", "", "older vllm bench serve's name of --backend")
	fs.StringVar(&o.Model, "model", "", "model name sent in requests (default: the first of the server's /v1/models)")
	fs.StringVar(&o.ServedModelName, "served-model-name", "", "model name used in the API if it differs from --model")
	fs.StringVar(&o.Label, "label", "", "label of the result (file name prefix; default the backend)")
	fs.StringVar(&o.DatasetName, "dataset-name", "random", "random, prefix_repetition, shared_prefix or multi_turn")
	fs.IntVar(&o.NumPrompts, "num-prompts", 1000, "number of requests")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the dataset, the LoRA mix and the arrivals")
	disableShuffle := fs.Bool("disable-shuffle", false, "keep prefix_repetition and shared_prefix prompts in the order they were made")
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
	ignoreEOS := fs.Bool("ignore-eos", false, "send ignore_eos: true with every dataset (vllm sends it for random without this flag)")
	noIgnoreEOS := fs.Bool("no-ignore-eos", false, "never send ignore_eos, random included, as benchmark_serving.py did (not a vllm flag)")
	pm := fs.String("percentile-metrics", "ttft,tpot,itl,e2el", "metrics to report: ttft,tpot,itl,e2el,client_queue_time,e2el_including_client_queue")
	mp := fs.String("metric-percentiles", "99", "percentiles to report, e.g. 50,90,99")
	var goodput listFlag
	fs.Var(&goodput, "goodput", "KEY:VALUE bounds in ms (ttft, tpot, e2el) a request must meet to count in the goodput (several after one flag)")
	fs.BoolVar(&o.SaveResult, "save-result", false, "save the result as JSON")
	fs.BoolVar(&o.SaveDetailed, "save-detailed", false, "also save per-request lists (ttfts, itls, input_lens, output_lens, errors, ...)")
	fs.BoolVar(&o.AppendResult, "append-result", false, "append the result to the file, one JSON object a line")
	fs.StringVar(&o.ResultDir, "result-dir", "", "directory of the result file")
	fs.StringVar(&o.ResultFilename, "result-filename", "", "result file name (default {label}-{rate}qps[-concurrency{N}]-{model}-{date}.json)")
	var metadata, headers, loras listFlag
	fs.Var(&metadata, "metadata", "KEY=VALUE saved in the result (several after one flag)")
	fs.Var(&headers, "header", "KEY=VALUE request header (several after one flag)")
	fs.Var(&loras, "lora-modules", "adapter names, each optionally NAME:WEIGHT, spread over the requests (several after one flag)")
	lora := fs.String("lora-assignment", "random", "random or round-robin")
	extra := fs.String("extra-body", "", "JSON object of fields added to every request")
	sampling := map[string]*float64{}
	for _, s := range samplingFlags {
		sampling[s.flag] = fs.Float64(s.flag, 0, "sampling parameter "+s.key+", sent when given")
	}
	logprobs := fs.Int("logprobs", 0, "completions: logprobs per token, sent when given")
	fs.BoolVar(&o.DisableProgress, "disable-tqdm", false, "no progress output")
	fs.StringVar(&o.RequestIDPrefix, "request-id-prefix", "", "x-request-id prefix (default bench-<random>-)")
	readyCheck := fs.Int("ready-check-timeout-sec", 0, "send the first request until it succeeds, for at most this many seconds, before the run (0: skip)")
	fs.IntVar(&o.NumWarmups, "num-warmups", 0, "send the first request this many times before the run")
	fs.BoolVar(&o.Insecure, "insecure", false, "skip TLS certificate verification")
	fs.StringVar(&o.DumpDataset, "dump-dataset", "", "write the dataset to this file as JSON lines and exit without sending (needs --model)")
	vllmOnly := vllmOnlyFlags(fs)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	norm, err := normalizeArgs(args, names)
	if err != nil {
		return nil, err
	}
	if err := fs.Parse(norm); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.Notices, err = vllmOnly(); err != nil {
		return nil, err
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
	o.PrefixRepetition.NoShuffle = *disableShuffle
	o.SharedPrefix.NoShuffle = *disableShuffle
	o.DatasetName = strings.ReplaceAll(o.DatasetName, "-", "_")
	// --ignore-eos=false (this tool's spelling before it followed vllm)
	// keeps meaning off.
	if set["ignore-eos"] && !*ignoreEOS {
		*noIgnoreEOS = true
	}
	if o.IgnoreEOS, o.EOSSemantics, err = resolveIgnoreEOS(o.DatasetName, *ignoreEOS, *noIgnoreEOS); err != nil {
		return nil, err
	}
	if o.PercentileMetrics, err = parseMetrics(*pm); err != nil {
		return nil, err
	}
	if o.MetricPercentiles, err = parsePercentiles(*mp); err != nil {
		return nil, err
	}
	if o.Goodput, err = ParseGoodput(goodput); err != nil {
		return nil, err
	}
	if o.Metadata, err = keyValues("--metadata", metadata); err != nil {
		return nil, err
	}
	o.Header = http.Header{}
	if key := os.Getenv("OPENAI_API_KEY"); key != "" {
		o.Header.Set("Authorization", "Bearer "+key) // as vllm bench does
	}
	hs, err := keyValues("--header", headers)
	if err != nil {
		return nil, err
	}
	for _, kv := range hs {
		o.Header.Set(kv[0], kv[1])
	}
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
	if o.NumPrompts < 1 {
		return nil, errors.New("--num-prompts must be at least 1")
	}
	if o.MaxConcurrency < 0 {
		return nil, errors.New("--max-concurrency must not be negative")
	}
	if *readyCheck < 0 || o.NumWarmups < 0 {
		return nil, errors.New("--ready-check-timeout-sec and --num-warmups must not be negative")
	}
	o.ReadyCheckTimeout = time.Duration(*readyCheck) * time.Second
	if o.Backend == "" {
		o.Backend = *endpointType
	}
	if err := o.checkBackend(); err != nil {
		return nil, err
	}
	// vllm merges the sampling flags under --extra-body (which wins);
	// its completions requests carry logprobs.
	o.ExtraBody = map[string]any{}
	for _, s := range samplingFlags {
		if set[s.flag] {
			o.ExtraBody[s.key] = *sampling[s.flag]
		}
	}
	if k := *sampling["top-k"]; set["top-k"] {
		if k != math.Trunc(k) {
			return nil, fmt.Errorf("--top-k %g: want an integer", k)
		}
		o.ExtraBody["top_k"] = int(k)
	}
	if set["logprobs"] && !o.Chat() {
		o.ExtraBody["logprobs"] = *logprobs
	}
	if *extra != "" {
		var body map[string]any
		if err := json.Unmarshal([]byte(*extra), &body); err != nil {
			return nil, fmt.Errorf("--extra-body: %w", err)
		}
		for k, v := range body {
			o.ExtraBody[k] = v
		}
	}
	if len(o.ExtraBody) == 0 {
		o.ExtraBody = nil
	}
	if o.RequestIDPrefix == "" {
		o.RequestIDPrefix = fmt.Sprintf("bench-%08x-", rand.Uint32())
	}
	return o, nil
}

func parseMetrics(list string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if !ValidMetric(s) {
			return nil, fmt.Errorf("--percentile-metrics: unknown metric %q", s)
		}
		out = append(out, s)
	}
	return out, nil
}

func parsePercentiles(list string) ([]float64, error) {
	var out []float64
	for _, s := range strings.Split(list, ",") {
		p, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || !(p >= 0 && p <= 100) {
			return nil, fmt.Errorf("--metric-percentiles: %q is not a percentile in 0..100", s)
		}
		out = append(out, p)
	}
	return out, nil
}

// keyValues splits KEY=VALUE items at the first "=", trimming both sides
// (vllm's --metadata and --header).
func keyValues(flagName string, items []string) ([][2]string, error) {
	var out [][2]string
	for _, kv := range items {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flagName, kv)
		}
		out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return out, nil
}

// checkBackend defaults the backend from the endpoint and checks that the
// two agree.
func (o *Options) checkBackend() error {
	switch o.Backend {
	case "":
		o.Backend = "openai"
		if strings.HasSuffix(o.Endpoint, "chat/completions") {
			o.Backend = "openai-chat"
		}
	case "openai", "vllm", "openai-chat":
	default:
		return fmt.Errorf("--backend %q: want openai, vllm or openai-chat", o.Backend)
	}
	if o.Backend == "openai-chat" && !strings.HasSuffix(o.Endpoint, "chat/completions") {
		return fmt.Errorf("--backend openai-chat needs an endpoint ending in chat/completions, not %q", o.Endpoint)
	}
	if o.Backend != "openai-chat" && (!strings.HasSuffix(o.Endpoint, "completions") || strings.HasSuffix(o.Endpoint, "chat/completions")) {
		return fmt.Errorf("--backend %s needs an endpoint ending in completions (not chat/completions), not %q", o.Backend, o.Endpoint)
	}
	return nil
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
