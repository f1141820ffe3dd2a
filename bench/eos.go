package bench

import "errors"

// resolveIgnoreEOS decides whether requests carry "ignore_eos": true, as
// vllm bench serve does today, and says why (the header prints it).
//
// vllm's history (vllm-project/vllm):
//   - benchmarks/benchmark_serving.py, and vllm bench serve until November
//     2025: sent ignore_eos only with --ignore-eos (argparse store_true), for
//     every dataset. Outputs then end where the model emits EOS.
//   - vllm bench serve since vllm-project/vllm#28227 (merged November 2025,
//     vllm/benchmarks/serve.py main_async): forces it for the random
//     datasets on the OpenAI-compatible backends (every backend here), so
//     every output runs to its sampled length; other datasets still need
//     --ignore-eos.
//
// --no-ignore-eos is this tool's own: it turns ignore_eos off for random too,
// to run what benchmark_serving.py ran.
func resolveIgnoreEOS(dataset string, ignoreEOS, noIgnoreEOS bool) (bool, string, error) {
	switch {
	case ignoreEOS && noIgnoreEOS:
		return false, "", errors.New("--ignore-eos and --no-ignore-eos contradict each other")
	case noIgnoreEOS:
		return false, "--no-ignore-eos: outputs may end at EOS, as benchmark_serving.py and vllm bench serve before November 2025 ran random", nil
	case ignoreEOS:
		return true, "--ignore-eos: every output runs to its length", nil
	case dataset == "random":
		return true, "vllm bench serve's default for random since November 2025; --no-ignore-eos for benchmark_serving.py's", nil
	default:
		return false, "vllm bench serve's default for " + dataset + ": outputs may end at EOS; --ignore-eos for fixed lengths", nil
	}
}
