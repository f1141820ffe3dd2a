package bench

import (
	"flag"
	"fmt"
	"strconv"
)

// The flags of vllm's benchmark that meshllm-bench takes but does not act
// on, so that a vllm command line runs unchanged. Read from
// vllm-project/vllm: vllm/benchmarks/serve.py add_cli_args (009e6d4a and
// def9ce85), vllm/benchmarks/datasets/arg_utils.py add_dataset_parser
// (237145ea), the older vllm/benchmarks/datasets.py add_dataset_parser, and
// benchmarks/benchmark_serving.py of early 2025 (0049e29c). Every other flag
// of those files is implemented (options.go).

// inertFlag is a vllm flag that has no effect here: given, it prints a
// one-line notice saying why.
type inertFlag struct {
	name   string
	isBool bool
	why    string
}

const (
	noTokenizer   = "no tokenizer is loaded: token counts are the server's usage"
	notADataset   = "only used by the %s dataset, which meshllm-bench does not have"
	noClientChats = "no dataset here renders a chat template on the client"
)

var inertFlags = []inertFlag{
	{"trust-remote-code", true, noTokenizer},
	{"tokenizer", false, noTokenizer},
	{"tokenizer-mode", false, noTokenizer},
	{"skip-tokenizer-init", true, noTokenizer},
	{"chat-template-kwargs", false, noClientChats + "; --extra-body '{\"chat_template_kwargs\": ...}' reaches the server's"},
	{"skip-chat-template", true, noClientChats},
	{"enable-multimodal-chat", true, "no dataset here is multimodal"},
	{"use-beam-search", true, "vllm bench serve does not use it either"},
	{"profile", true, "the server's profiler (/start_profile, /stop_profile) is not called"},
	{"plot-timeline", true, "no plots are drawn"},
	{"timeline-itl-thresholds", false, "no plots are drawn"},
	{"plot-dataset-stats", true, "no plots are drawn"},
	{"no-stream", true, fmt.Sprintf(notADataset, "hf")},
	{"no-oversample", true, "the synthetic datasets are never oversampled"},
	{"custom-output-len", false, fmt.Sprintf(notADataset, "custom")},
	{"spec-bench-output-len", false, fmt.Sprintf(notADataset, "spec_bench")},
	{"spec-bench-category", false, fmt.Sprintf(notADataset, "spec_bench")},
	{"sonnet-input-len", false, fmt.Sprintf(notADataset, "sonnet")},
	{"sonnet-output-len", false, fmt.Sprintf(notADataset, "sonnet")},
	{"sonnet-prefix-len", false, fmt.Sprintf(notADataset, "sonnet")},
	{"sharegpt-output-len", false, fmt.Sprintf(notADataset, "sharegpt")},
	{"blazedit-min-distance", false, fmt.Sprintf(notADataset, "hf (blazedit)")},
	{"blazedit-max-distance", false, fmt.Sprintf(notADataset, "hf (blazedit)")},
	{"asr-max-audio-len-sec", false, fmt.Sprintf(notADataset, "hf (ASR)")},
	{"asr-min-audio-len-sec", false, fmt.Sprintf(notADataset, "hf (ASR)")},
	{"hf-subset", false, fmt.Sprintf(notADataset, "hf")},
	{"hf-split", false, fmt.Sprintf(notADataset, "hf")},
	{"hf-name", false, fmt.Sprintf(notADataset, "hf")},
	{"hf-output-len", false, fmt.Sprintf(notADataset, "hf")},
	{"random-mm-base-items-per-request", false, fmt.Sprintf(notADataset, "random-mm")},
	{"random-mm-num-mm-items-range-ratio", false, fmt.Sprintf(notADataset, "random-mm")},
	{"random-mm-limit-mm-per-prompt", false, fmt.Sprintf(notADataset, "random-mm")},
	{"random-mm-bucket-config", false, fmt.Sprintf(notADataset, "random-mm")},
	{"no-reranker", true, fmt.Sprintf(notADataset, "random-rerank")},
}

// refusedFlag is a vllm flag that would change what is measured in a way
// meshllm-bench does not implement: given (with a value refuses says is
// not harmless), the command stops with this error instead of running a
// different benchmark.
type refusedFlag struct {
	name    string
	isBool  bool
	why     string
	refuses func(value string) bool // nil: any value
}

// notZero refuses any value but a zero number (vllm's default, harmless).
func notZero(v string) bool {
	f, err := strconv.ParseFloat(v, 64)
	return err != nil || f != 0
}

// notOne refuses any value but 1 (vllm's default).
func notOne(v string) bool { return v != "1" }

var refusedFlags = []refusedFlag{
	{"dataset-path", false, "file and Hugging Face datasets are not implemented (--dataset-name random, prefix_repetition, shared_prefix or multi_turn)", nil},
	{"ramp-up-strategy", false, "request-rate ramp-up is not implemented", nil},
	{"ramp-up-start-rps", false, "request-rate ramp-up is not implemented", nil},
	{"ramp-up-end-rps", false, "request-rate ramp-up is not implemented", nil},
	{"probe-request-rate", false, "probe requests are not implemented", notZero},
	{"self-timed", true, "only for the timed_trace dataset, which meshllm-bench does not have", nil},
	{"no-self-timed", true, "only for the timed_trace dataset, which meshllm-bench does not have", nil},
	{"common-prefix-len", false, "a prompt prefix common to all requests is --random-prefix-len here", nil},
	{"random-batch-size", false, "batched prompts (vllm's embeddings benchmark) are not implemented", notOne},
}

// rawFlag keeps a flag's text; IsBoolFlag lets the flag package take it
// without a value, as argparse's store_true.
type rawFlag struct {
	value  string
	isBool bool
}

func (r *rawFlag) String() string     { return r.value }
func (r *rawFlag) Set(s string) error { r.value = s; return nil }
func (r *rawFlag) IsBoolFlag() bool   { return r.isBool }

// vllmOnlyFlags registers the inert and refused flags on fs and returns a
// check that, after parsing, gives the notices for the inert flags given
// and an error for the first refused one.
func vllmOnlyFlags(fs *flag.FlagSet) func() ([]string, error) {
	values := map[string]*rawFlag{}
	for _, f := range inertFlags {
		values[f.name] = &rawFlag{isBool: f.isBool}
		fs.Var(values[f.name], f.name, "vllm bench serve flag, no effect here: "+f.why)
	}
	for _, f := range refusedFlags {
		values[f.name] = &rawFlag{isBool: f.isBool}
		fs.Var(values[f.name], f.name, "vllm bench serve flag, not supported: "+f.why)
	}
	return func() ([]string, error) {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, f := range refusedFlags {
			if set[f.name] && (f.refuses == nil || f.refuses(values[f.name].value)) {
				return nil, fmt.Errorf("--%s: not supported here (%s)", f.name, f.why)
			}
		}
		var notices []string
		for _, f := range inertFlags {
			if set[f.name] {
				notices = append(notices, fmt.Sprintf("--%s: accepted, has no effect here (%s)", f.name, f.why))
			}
		}
		return notices, nil
	}
}
